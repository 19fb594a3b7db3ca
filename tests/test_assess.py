"""evaluate of a condensed set: students of several architectures and seeds, under one recorded protocol, and
DD-Ranking's scores against random real images."""

import json
import math

import pytest

from conftest import images_artifact_of

from dcond.artifact import open_artifact, verify
from dcond.stages import assess
from dcond.stages.relabel import RelabelConfig, relabel


def relabelled(images, teacher, out):
    return relabel(images, [teacher], RelabelConfig(epochs=2, batch_size=6), out)


@pytest.fixture
def bank(images_artifact, tiny_teacher, tmp_path):
    return relabelled(images_artifact, tiny_teacher, tmp_path / "labels")


@pytest.fixture
def selected(cli, tiny_teacher, tmp_path):
    """Images chosen with the teacher (so their teacher's accuracy is the full-data one); hard labels."""
    r = cli("select", tiny_teacher, "--method", "herding", "--ipc", 4, "--out", tmp_path / "selected")
    assert r.code == 0, r.stderr
    return tmp_path / "selected"


def students(cli, source, *options, models: str = "convnet,tv:resnet18", seeds: int = 2) -> dict:
    r = cli("evaluate", source, "--models", models, "--seeds", seeds, "--epochs", 2, "--device", "cpu", "--json",
            *options)
    assert r.code == 0, r.stderr
    return json.loads(r.stdout)["students"]


@pytest.mark.parametrize("source", ["bank", "selected"])
def test_each_model_gets_mean_std_runs_baseline_and_scores_reproducibly(source, cli, request, tiny_teacher):
    path = request.getfixturevalue(source)
    result = students(cli, path, "--baseline", "random")
    full = open_artifact(tiny_teacher).metrics["tiny:test"]["top1"]
    assert set(result) == {"convnet", "tv:resnet18"}
    for record in result.values():
        assert len(record["runs"]) == 2 and all(0 <= v <= 1 for v in record["runs"])
        assert record["top1_mean"] == pytest.approx(sum(record["runs"]) / 2) and record["top1_std"] >= 0
        assert record["split"] == "tiny:test" and record["protocol"]["epochs"] == 2
        assert record["protocol"]["labels"] == open_artifact(path).digest
        base, scores = record["baseline"], record["scores"]
        assert len(base["random"]["runs"]) == 2 and len(base["hard_labels"]["runs"]) == 2
        assert base["full_data_top1"] == full
        assert scores["ior"] == pytest.approx(record["top1_mean"] - base["random"]["top1_mean"])
        assert scores["hlr"] == pytest.approx(full - base["hard_labels"]["top1_mean"])
        alpha = 0.5 * scores["ior"] - 0.5 * scores["hlr"]
        assert scores["lrs"] == pytest.approx((math.exp(alpha) - math.exp(-1)) / (math.e - math.exp(-1)))
        plain = base["set_without_augmentation"]["top1_mean"] - base["random_without_augmentation"]["top1_mean"]
        beta = 0.5 * scores["ior"] + 0.5 * plain
        assert scores["ars"] == pytest.approx((math.exp(beta) - math.exp(-1)) / (math.e - math.exp(-1)))
        assert base["set_without_augmentation"]["protocol_digest"] != record["protocol_digest"]
        if source == "selected":  # its own students already learn from hard labels
            assert base["hard_labels"]["runs"] == record["runs"]
    assert students(cli, path, "--baseline", "random") == result  # same protocol and seeds: the same numbers
    assert verify(path).intact
    recorded = open_artifact(path).metrics
    assert {f"students:{m}:{r['protocol_digest'][:12]}" for m, r in result.items()} <= set(recorded)


def test_a_changed_protocol_is_recorded_apart(cli, bank):
    two = students(cli, bank, models="convnet", seeds=1)["convnet"]
    one = students(cli, bank, "--epochs", 1, models="convnet", seeds=1)["convnet"]  # the later --epochs wins
    assert one["protocol"]["epochs"] == 1 and one["protocol_digest"] != two["protocol_digest"]
    assert len([k for k in open_artifact(bank).metrics if k.startswith("students:convnet:")]) == 2


def test_a_cache_resumes_and_sets_made_alike_share_their_random_baseline(cli, bank, tiny_teacher, tiny_folder,
                                                                         tmp_path, monkeypatch):
    trained = []
    train = assess.train_student
    monkeypatch.setattr(assess, "train_student", lambda source, *rest: trained.append(source) or train(source, *rest))
    cache = tmp_path / "cache"
    first = students(cli, bank, "--baseline", "random", "--cache", cache, models="convnet")
    assert len(trained) == len(list(cache.iterdir())) == 10  # 2 seeds of: the set, random, hard labels, both plain
    trained.clear()
    assert students(cli, bank, "--baseline", "random", "--cache", cache, models="convnet") == first
    assert trained == []
    # the same images made again, labelled alike: a set of its own, but random images of it are those of the first
    alike = relabelled(images_artifact_of(tiny_folder, tiny_teacher, tmp_path / "alike"), tiny_teacher,
                       tmp_path / "alike-labels")
    second = students(cli, alike, "--baseline", "random", "--cache", cache, models="convnet")["convnet"]["baseline"]
    assert len(trained) == 6 and len(list(cache.iterdir())) == 16  # its own three, random's four taken
    for name in ("random", "random_without_augmentation"):
        assert second[name] == first["convnet"]["baseline"][name]
    for kept in cache.iterdir():
        kept.write_text("{")
    r = cli("evaluate", bank, "--models", "convnet", "--seeds", 2, "--epochs", 2, "--device", "cpu", "--baseline",
            "random", "--cache", cache)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert r.code != 0 and len(errors) == 1 and errors[0].endswith("delete it") and str(cache) in errors[0]


def test_bad_model_list_is_one_line(cli, bank):
    r = cli("evaluate", bank, "--models", "convnet,,", "--device", "cpu")
    assert r.code != 0 and "--models" in r.stderr
