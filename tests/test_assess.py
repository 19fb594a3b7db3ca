"""evaluate of a condensed set: students of several architectures and seeds, under one recorded protocol."""

import json

import pytest

from dcond.artifact import open_artifact, verify
from dcond.stages.relabel import RelabelConfig, relabel


@pytest.fixture
def bank(images_artifact, tiny_teacher, tmp_path):
    return relabel(images_artifact, [tiny_teacher], RelabelConfig(epochs=2, batch_size=6), tmp_path / "labels")


def students(cli, source, *options) -> dict:
    r = cli("evaluate", source, "--models", "convnet,tv:resnet18", "--seeds", 2, "--epochs", 2,
            "--device", "cpu", "--json", *options)
    assert r.code == 0, r.stderr
    return json.loads(r.stdout)["students"]


@pytest.mark.parametrize("source", ["bank", "images_artifact"])
def test_each_model_gets_a_mean_a_std_and_its_runs_reproducibly(source, cli, request):
    path = request.getfixturevalue(source)
    first = students(cli, path)
    assert set(first) == {"convnet", "tv:resnet18"}
    for record in first.values():
        assert len(record["runs"]) == 2 and all(0 <= v <= 1 for v in record["runs"])
        assert record["top1_mean"] == pytest.approx(sum(record["runs"]) / 2)
        assert record["top1_std"] >= 0 and record["split"] == "tiny:test"
        assert record["protocol"]["epochs"] == 2 and record["protocol"]["labels"] == open_artifact(path).digest
    assert students(cli, path) == first  # same protocol and seeds: the same numbers on the CPU
    art = open_artifact(path)
    assert verify(path).intact
    assert {f"students:{m}:{r['protocol_digest'][:12]}" for m, r in first.items()} <= set(art.metrics)


def test_a_changed_protocol_is_recorded_apart(cli, bank):
    two = students(cli, bank)["convnet"]
    one = students(cli, bank, "--epochs", 1)["convnet"]  # the later --epochs wins
    assert one["protocol"]["epochs"] == 1 and one["protocol_digest"] != two["protocol_digest"]
    keys = [k for k in open_artifact(bank).metrics if k.startswith("students:convnet:")]
    assert len(keys) == 2


def test_bad_model_list_is_one_line(cli, bank):
    r = cli("evaluate", bank, "--models", "convnet,,", "--device", "cpu")
    assert r.code != 0 and "--models" in r.stderr
