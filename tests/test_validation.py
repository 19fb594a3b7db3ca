"""Damaged or edited artifacts are refused before any work, with one line naming the file and the field; a
stage never re-seals an input. Each case here was once accepted, laundered or failed late."""

import json
import shutil
import zlib
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from conftest import TINY_MODEL, reseal, tree
from dcond.artifact import verify
from dcond.stages.relabel import RelabelConfig, relabel
from test_cli import one_error_line


@pytest.fixture
def labels(shared_teacher_images, tmp_path, capsys) -> Path:
    teacher, images = shared_teacher_images
    path = relabel(images, [teacher], RelabelConfig(epochs=3, batch_size=8), tmp_path / "labels")
    capsys.readouterr()  # its progress lines are not the command's under test
    return path


@pytest.fixture
def teacher_copy(shared_teacher_images, tmp_path) -> Path:
    """A copy of the shared teacher beside a copy of its data (the manifest finds the data relative to it)."""
    teacher = shared_teacher_images[0]
    shutil.copytree(teacher.parent / "tiny", tmp_path / "tiny")
    return Path(shutil.copytree(teacher, tmp_path / "teacher"))


def edit_manifest(path: Path, edit, sealed: bool) -> None:
    manifest = json.loads((path / "dcond.json").read_text())
    edit(manifest)
    (path / "dcond.json").write_text(json.dumps(manifest))
    if sealed:
        reseal(path)


def edit_tensors(path: Path, edit) -> None:
    """Change a safetensors file of an artifact and re-seal it, so only the content checks stand in the way."""
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path)
    reseal(path.parent if (path.parent / "dcond.json").exists() else path.parent.parent)


def test_evaluate_refuses_an_edited_manifest_and_leaves_it_as_it_was(cli, teacher_copy):
    def forge(m):
        m["dataset"]["classes"][0], m["model"]["train_images"] = "HACKED", 5

    edit_manifest(teacher_copy, forge, sealed=False)
    before = {p: p.read_bytes() for p in teacher_copy.rglob("*")}
    line = one_error_line(cli("evaluate", teacher_copy))
    assert "manifest was edited after the artifact was made" in line
    assert {p: p.read_bytes() for p in teacher_copy.rglob("*")} == before and not verify(teacher_copy).intact


@pytest.mark.parametrize("sealed", [False, True])
def test_a_bank_missing_its_last_epoch_fails_before_the_first_step(cli, labels, sealed):
    (labels / "bank" / "epoch_00002.safetensors").unlink()
    if sealed:
        reseal(labels)
    r = cli("train-student", labels, *TINY_MODEL, "--epochs", 3)
    assert "epoch_00002.safetensors" in one_error_line(r) and "student epochs" not in r.stderr


@pytest.mark.parametrize("edit, words", [
    (lambda t: t["order"].__setitem__(0, -5), "tensor 'order' holds image indices outside 0 … 23"),
    (lambda t: t["order"].__setitem__(0, 10**6), "tensor 'order' holds image indices outside 0 … 23"),
    (lambda t: t["logits"].fill_(float("nan")), "tensor 'logits' holds NaN or infinite values"),
    (lambda t: t["boxes"].__setitem__(0, 1e9), "tensor 'boxes' holds values outside [0, 1]"),
    (lambda t: t["mix_perm"].__setitem__(0, 9), "tensor 'mix_perm' holds values outside [0, 7]"),
    (lambda t: t.pop("logits"), "holds no tensor 'logits'"),
])
def test_bank_tensors_out_of_their_range_are_refused_naming_file_and_field(cli, labels, edit, words):
    edit_tensors(labels / "bank" / "epoch_00000.safetensors", edit)
    line = one_error_line(cli("train-student", labels, *TINY_MODEL, "--epochs", 1))
    assert "epoch_00000.safetensors" in line and words in line


@pytest.mark.parametrize("edit, words", [
    (lambda t: t["0.weight"].view(-1).__setitem__(0, float("nan")), "tensor '0.weight' holds NaN"),
    (lambda t: t["1.running_var"].__setitem__(0, -1.0), "tensor '1.running_var' holds values outside [0, None]"),
])
def test_broken_weights_are_refused_naming_file_and_field(cli, teacher_copy, edit, words):
    edit_tensors(teacher_copy / "model.safetensors", edit)
    line = one_error_line(cli("evaluate", teacher_copy))
    assert "model.safetensors" in line and words in line


@pytest.mark.parametrize("edit, words", [
    (lambda m: m["dataset"].__setitem__("std", [0.0]), "dataset.std = [0.0] is not 1 number(s) in (0, 1]"),
    (lambda m: m["dataset"].__setitem__("image_size", 2**63), "dataset.image_size = 9223372036854775808 is out of"),
    (lambda m: m["dataset"].__setitem__("source", "abc"), "dataset.source is 'abc', not an object"),
    (lambda m: m["model"]["spec"].__setitem__("num_classes", 10**9), "model.spec.num_classes = 1000000000 is out"),
    (lambda m: m["model"]["spec"]["options"].__setitem__("width", 10**6), "do not fit the model"),
    (lambda m: m["files"].__setitem__("../teacher/model.safetensors", {}), "points outside the artifact"),
    (lambda m: m["files"].__setitem__("/etc/hostname", {}), "points outside the artifact"),
])
def test_resealed_manifests_out_of_bounds_are_refused_naming_the_field(cli, teacher_copy, edit, words):
    edit_manifest(teacher_copy, edit, sealed=True)
    assert words in one_error_line(cli("evaluate", teacher_copy))


def test_a_png_that_declares_a_huge_image_is_refused(cli, shared_teacher_images, tmp_path):
    images = Path(shutil.copytree(shared_teacher_images[1], tmp_path / "images"))
    png = next((images / "images").rglob("*.png"))
    data = bytearray(png.read_bytes())
    data[16:24] = (60000).to_bytes(4, "big") * 2  # IHDR width and height, with the chunk's CRC to match
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    png.write_bytes(bytes(data))
    reseal(images)
    line = one_error_line(cli("train-student", images, *TINY_MODEL, "--epochs", 1))
    assert png.name in line and ("60000×60000" in line or "decompression bomb" in line)  # PIL's check or ours


def test_a_file_linked_from_outside_the_artifact_is_not_read(cli, teacher_copy, tmp_path):
    outside = tmp_path / "elsewhere.safetensors"
    shutil.move(teacher_copy / "model.safetensors", outside)
    (teacher_copy / "model.safetensors").symlink_to(outside)
    assert "link to a file outside the artifact" in one_error_line(cli("evaluate", teacher_copy))
    assert not verify(teacher_copy).intact


def test_inspect_shows_a_tampered_artifact_then_fails(cli, teacher_copy):
    edit_manifest(teacher_copy, lambda m: m["producer"].__setitem__("seed", 99), sealed=False)
    r = cli("inspect", teacher_copy)
    assert r.code == 1 and "kind" in r.stdout
    assert "is damaged: the manifest was edited" in r.stderr.strip().splitlines()[-1]


def test_an_unexpected_exception_is_one_line_marked_internal(cli, teacher_copy, monkeypatch):
    import dcond.stages.evaluate as evaluate_stage

    monkeypatch.setattr(evaluate_stage, "evaluate", lambda *a, **k: 1 / 0)
    before = tree(teacher_copy)
    line = one_error_line(cli("evaluate", teacher_copy))
    assert line.startswith("error: internal error: ZeroDivisionError") and tree(teacher_copy) == before


@pytest.mark.parametrize("key", ["dataset", "files", "producer", "kind", "digest"])
def test_a_manifest_missing_a_section_is_one_line_naming_it(cli, teacher_copy, key):
    edit_manifest(teacher_copy, lambda m: m.pop(key), sealed=False)
    for command in ("verify", "inspect", "evaluate"):
        line = one_error_line(cli(command, teacher_copy))
        assert key in line and "internal error" not in line
