import json
import multiprocessing
import shutil
from pathlib import Path

import pytest
import torch

from conftest import content
from dcond.artifact import (ArtifactWriter, content_digest, image_files, open_artifact, portable, save_images,
                            update_metrics, verify)
from dcond.spec import DatasetSpec
from dcond.errors import DcondError

SPEC = DatasetSpec("toy", ("a/b", "c", "d"), 1, 8, (0.5,), (0.25,), {"type": "builtin", "name": "toy"})


def write(out: Path, **kw) -> Path:
    with ArtifactWriter(out, "images", SPEC, stage="test", config={"seed": 3}, **kw) as w:
        w.save_tensors("t.safetensors", {"x": torch.arange(6.0).view(2, 3)})
        w.write_json("info.json", {"a": 1})
        w.section = {"note": "x"}
        w.metrics = {"toy:test": {"top1": 0.5}}
    return w.out


def test_round_trip(tmp_path):
    path = write(tmp_path / "art")
    art = open_artifact(path)
    assert art.kind == "images" and art.dataset == SPEC and art.section == {"note": "x"}
    assert torch.equal(art.tensors("t.safetensors")["x"], torch.arange(6.0).view(2, 3))
    assert art.json("info.json") == {"a": 1} and art.metrics["toy:test"]["top1"] == 0.5
    assert set(art.files) == {"README.md", "info.json", "metrics.json", "t.safetensors"}
    assert art.producer["config"] == {"seed": 3} and art.digest == content_digest(art.manifest)
    card = (path / "README.md").read_text()
    assert card.startswith("---\n") and 'dcond_kind: "images"' in card
    assert verify(path).intact


def test_the_card_sums_up_each_folder_in_one_line(tmp_path):
    with ArtifactWriter(tmp_path / "art", "images", SPEC, stage="test", config={}) as w:
        for i in range(50):
            w.save_tensors(f"bank/epoch_{i:05d}.safetensors", {"x": torch.zeros(4)})
        w.write_json("info.json", {"a": 1})
    card = (w.out / "README.md").read_text()
    size = sum((w.out / f).stat().st_size for f in open_artifact(w.out).files if f.startswith("bank/"))
    assert f"| `bank/` | 50 | {size:,} |" in card and "| `info.json` | 1 |" in card and "epoch_00001" not in card


def test_same_content_written_twice_is_the_same_content(tmp_path):
    assert content(write(tmp_path / "a")) == content(write(tmp_path / "b"))


def test_copy_to_another_path_still_verifies(tmp_path):
    path = write(tmp_path / "art")
    copy = shutil.copytree(path, tmp_path / "elsewhere" / "copy")
    assert verify(copy).intact
    assert open_artifact(copy).digest == open_artifact(path).digest


@pytest.mark.parametrize("damage, field", [
    (lambda p: (p / "info.json").write_text('{"a": 2}'), "mismatched"),
    (lambda p: (p / "info.json").unlink(), "missing"),
    (lambda p: (p / "stray.txt").write_text("hi"), "extra"),
])
def test_verify_reports_each_problem_separately(tmp_path, damage, field):
    path = write(tmp_path / "art")
    damage(path)
    report = verify(path)
    assert not report.intact
    problems = {"missing": report.missing, "extra": report.extra, "mismatched": report.mismatched}
    assert {k for k, v in problems.items() if v} == {field}


@pytest.mark.parametrize("edit", [
    lambda m: m["dataset"]["classes"].__setitem__(0, "renamed"),
    lambda m: m["producer"].__setitem__("seed", 7),
    lambda m: m["producer"]["argv"].append("--lr=9"),
    lambda m: m["lineage"].append({"digest": "sha256:forged", "kind": "model", "stage": "train-teacher"}),
    lambda m: m["parents"].append({"role": "teacher", "digest": "sha256:forged", "kind": "model"}),
    lambda m: m.__setitem__("created", "2020-01-01T00:00:00+00:00"),
])
def test_the_digest_seals_the_whole_manifest(tmp_path, edit):
    path = write(tmp_path / "art")
    manifest = json.loads((path / "dcond.json").read_text())
    edit(manifest)
    (path / "dcond.json").write_text(json.dumps(manifest))
    report = verify(path)
    assert not report.digest_ok and not report.intact
    with pytest.raises(DcondError, match="manifest was edited after the artifact was made"):
        open_artifact(path)


def test_corrupted_tensor_file_is_refused(tmp_path):
    path = write(tmp_path / "art")
    data = (path / "t.safetensors").read_bytes()
    (path / "t.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(DcondError, match="corrupted"):
        open_artifact(path).tensors("t.safetensors")


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with ArtifactWriter(tmp_path / "art", "images", SPEC, stage="test", config={}) as w:
            w.write_json("info.json", {})
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_resumable_write_keeps_partial_work(tmp_path):
    with pytest.raises(RuntimeError):
        with ArtifactWriter(tmp_path / "art", "images", SPEC, stage="test", config={}, resume_key="k" * 20) as w:
            (w.scratch / "unit0").write_text("done")
            raise RuntimeError("killed")
    assert not (tmp_path / "art").exists()
    with ArtifactWriter(tmp_path / "art", "images", SPEC, stage="test", config={}, resume_key="k" * 20) as w:
        assert (w.scratch / "unit0").read_text() == "done"
    assert verify(tmp_path / "art").intact and "unit0" not in str(open_artifact(tmp_path / "art").files)
    assert [p.name for p in tmp_path.iterdir()] == ["art"]


def test_existing_output_needs_force(tmp_path):
    path = write(tmp_path / "art")
    before = (path / "dcond.json").read_text()
    with pytest.raises(DcondError, match="--force"):
        write(path)
    assert (path / "dcond.json").read_text() == before
    write(path, force=True)
    assert verify(path).intact


def test_force_never_replaces_a_folder_that_is_not_an_artifact(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "precious.txt").write_text("keep")
    with pytest.raises(DcondError, match="not a dcond artifact"):
        write(tmp_path / "mine", force=True)
    assert (tmp_path / "mine" / "precious.txt").read_text() == "keep"


def test_open_rejects_non_artifacts_and_wrong_kinds(tmp_path):
    with pytest.raises(DcondError, match="not a dcond artifact"):
        open_artifact(tmp_path)
    with pytest.raises(DcondError, match="does not exist"):
        open_artifact(tmp_path / "nope")
    (tmp_path / "dcond.json").write_text("{not json")
    with pytest.raises(DcondError, match="not valid JSON"):
        open_artifact(tmp_path)
    path = write(tmp_path / "art")
    with pytest.raises(DcondError, match="is a images artifact; this needs a model artifact"):
        open_artifact(path, kinds=("model",))


def test_manifest_paths_cannot_escape(tmp_path):
    path = write(tmp_path / "art")
    manifest = json.loads((path / "dcond.json").read_text())
    manifest["files"]["../outside"] = {"size": 1, "sha256": "0"}
    (path / "dcond.json").write_text(json.dumps(manifest))
    with pytest.raises(DcondError, match="outside the artifact"):
        open_artifact(path)


def test_update_metrics_keeps_artifact_intact_and_identity(tmp_path):
    path = write(tmp_path / "art")
    art = open_artifact(path)
    digest = art.digest
    update_metrics(art, "toy:other", {"top1": 0.75})
    again = open_artifact(path)
    assert again.metrics == {"toy:test": {"top1": 0.5}, "toy:other": {"top1": 0.75}}
    assert again.digest == digest and verify(path).intact
    assert "0.7500" in (path / "README.md").read_text()


def _record(path: Path, worker: int, count: int) -> None:
    art = open_artifact(path)  # opened once, as an evaluation does, and long before it records
    for i in range(count):
        update_metrics(art, f"toy:worker{worker}-{i}", {"top1": i / count})
        assert verify(path).intact  # never a new metrics.json seen under the old manifest


def test_processes_recording_in_one_artifact_at_once_lose_nothing(tmp_path):
    path = write(tmp_path / "art")
    workers, count = 6, 15
    ctx = multiprocessing.get_context("fork")
    processes = [ctx.Process(target=_record, args=(path, w, count)) for w in range(workers)]
    for p in processes:
        p.start()
    for p in processes:
        p.join()
    assert [p.exitcode for p in processes] == [0] * workers
    recorded = open_artifact(path).metrics
    assert len(recorded) == 1 + workers * count and verify(path).intact


def test_images_round_trip_exactly(tmp_path):
    images = torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    with ArtifactWriter(tmp_path / "imgs", "images", SPEC, stage="test", config={}) as w:
        save_images(w, images, labels)
    art = open_artifact(w.out)
    assert art.section["per_class"] == [2, 2, 2]
    paths, read_labels = image_files(art)
    assert read_labels == labels.tolist()
    assert paths[0].parent.name == "000_a_b"  # class order kept, unsafe characters replaced
    from dcond.data.images import decode_image

    assert torch.equal(torch.stack([decode_image(p, 1, 8) for p in paths]), images)


def test_written_files_are_readable_by_others(tmp_path):
    path = write(tmp_path / "art")
    assert all(p.stat().st_mode & 0o044 for p in [path, *path.iterdir()])


def test_recorded_paths_are_relative_to_the_artifact():
    out = Path("/data/runs/labels")
    recorded = portable({"argv": ["dcond", "--teacher", "/data/runs/teacher", "--out=/data/runs/labels"],
                         "config": {"data": "/data/imagenet/train", "root": "/opt/cache", "seed": 1, "name": "cifar"}},
                        out)
    assert recorded == {"argv": ["dcond", "--teacher", "../teacher", "--out=."],
                        "config": {"data": "../../imagenet/train", "root": "cache", "seed": 1, "name": "cifar"}}
