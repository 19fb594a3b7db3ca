import os

import pytest
import torch
from safetensors.torch import load_file

import dcond.stages.relabel as relabel_stage
from conftest import TINY_MODEL, content
from dcond.artifact import open_artifact, verify
from dcond.bank import open_bank
from dcond.data import load_all, to_input
from dcond.data.augment import ViewConfig
from dcond.data.folder import ArtifactImages
from dcond.engine import ensemble_logits
from dcond.errors import DcondError
from dcond.models import load_model
from dcond.stages.relabel import RelabelConfig, relabel
from dcond.stages.student import Replay, StudentConfig, train_student

TINY = {"width": 8, "depth": 2}


@pytest.fixture
def bank(images_artifact, tiny_teacher, tmp_path):
    return relabel(images_artifact, [tiny_teacher], RelabelConfig(epochs=3, batch_size=5), tmp_path / "labels")


def test_bank_layout_and_manifest(bank, images_artifact):
    art = open_artifact(bank, kinds=("labels",))
    info = art.section["bank"]
    assert info | {"views": None, "teachers": None} == {
        "encoding": "dense", "epochs": 3, "batch_size": 5, "num_images": 24, "num_classes": 3,
        "temperature": 4.0, "views": None, "seed": 0, "dtype": "float16", "teachers": None}
    epoch = load_file(bank / "bank" / "epoch_00002.safetensors")
    assert epoch["logits"].dtype == torch.float16 and epoch["logits"].shape == (24, 3)
    assert epoch["boxes"].shape == (24, 4) and epoch["mix_lam"].shape == (5,)
    assert verify(bank).intact and art.parents[0]["role"] == "images"


def test_labels_artifact_carries_its_images_as_hard_links(bank, images_artifact):
    src = sorted((images_artifact / "images").rglob("*.png"))
    dst = sorted((bank / "images").rglob("*.png"))
    assert [p.relative_to(images_artifact) for p in src] == [p.relative_to(bank) for p in dst]
    assert all(os.path.samefile(a, b) for a, b in zip(src, dst))


def test_replay_shows_the_student_exactly_the_views_the_teacher_labelled(bank, tiny_teacher):
    """Teacher outputs recomputed on the views the student trains on equal the stored ones."""
    art = open_artifact(bank)
    data = load_all(ArtifactImages(bank).split("train"))
    teacher = load_model(open_artifact(tiny_teacher))
    images = to_input(data.images, art.dataset)
    replay = Replay(open_bank(art), images, data.labels, StudentConfig(epochs=3), torch.device("cpu"))
    batches = 0
    for e in range(3):
        for x, stored, _ in replay.epoch(e):
            recomputed = ensemble_logits([teacher], x, torch.device("cpu"))
            torch.testing.assert_close(recomputed, stored, atol=2e-2, rtol=2e-3)  # fp16 storage
            batches += 1
    assert batches == 3 * 5


def test_same_seed_same_bank_and_resume_after_interruption(images_artifact, tiny_teacher, tmp_path, monkeypatch):
    cfg = RelabelConfig(epochs=4, batch_size=6, seed=7)
    straight = relabel(images_artifact, [tiny_teacher], cfg, tmp_path / "a")
    real_write = relabel_stage.write_epoch
    calls = []

    def die_after_two(w, epoch, views, logits, dtype):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(epoch)
        real_write(w, epoch, views, logits, dtype)

    monkeypatch.setattr(relabel_stage, "write_epoch", die_after_two)
    with pytest.raises(KeyboardInterrupt):
        relabel(images_artifact, [tiny_teacher], cfg, tmp_path / "b")
    assert not (tmp_path / "b").exists()
    calls.clear()
    monkeypatch.setattr(relabel_stage, "write_epoch", lambda *a: (calls.append(a[1]), real_write(*a)))
    resumed = relabel(images_artifact, [tiny_teacher], cfg, tmp_path / "b")
    assert calls == [2, 3]
    assert content(straight) == content(resumed)


def test_two_teachers_average_their_logits(images_artifact, tiny_teacher, tmp_path, cli, tiny_folder):
    r = cli("train-teacher", "--data", tiny_folder, "--image-size", 12, "--epochs", 1, "--seed", 1, *TINY_MODEL,
            "--out", tmp_path / "teacher2")
    assert r.code == 0
    cfg = RelabelConfig(epochs=1, batch_size=24, views=ViewConfig(mix="none"))
    one = [load_file(relabel(images_artifact, [t], cfg, tmp_path / f"l{i}") / "bank/epoch_00000.safetensors")
           ["logits"].float() for i, t in enumerate((tiny_teacher, tmp_path / "teacher2"))]
    both = load_file(relabel(images_artifact, [tiny_teacher, tmp_path / "teacher2"], cfg, tmp_path / "l2")
                     / "bank/epoch_00000.safetensors")["logits"].float()
    torch.testing.assert_close(both, (one[0] + one[1]) / 2, atol=2e-2, rtol=2e-3)


@pytest.mark.parametrize("mode", ["bank", "online-teacher", "hard"])
def test_student_trains_from_each_label_source(mode, bank, images_artifact, tiny_teacher, tmp_path):
    source = images_artifact if mode == "hard" else bank
    teachers = [tiny_teacher] if mode == "online-teacher" else []
    out = train_student(source, StudentConfig(model_options=TINY, epochs=3, teachers=teachers), tmp_path / "s")
    art = open_artifact(out, kinds=("model",))
    assert art.section["labels"] == mode and art.metrics["tiny:test"]["samples"] == 12
    assert {p["role"] for p in art.parents} == {"labels" if mode != "hard" else "images"} | \
        ({"teacher"} if teachers else set())


def test_student_learns_the_tiny_task_from_the_bank(bank, tmp_path):
    out = train_student(bank, StudentConfig(model_options=TINY, epochs=3, lr=1e-2), tmp_path / "s")
    assert open_artifact(out).metrics["tiny:test"]["top1"] > 0.6


def test_fewer_bank_epochs_than_asked_is_an_error_unless_wrapping(bank, tmp_path):
    with pytest.raises(DcondError, match="holds 3 epochs but --epochs is 5"):
        train_student(bank, StudentConfig(model_options=TINY, epochs=5), tmp_path / "s")
    assert not (tmp_path / "s").exists()
    train_student(bank, StudentConfig(model_options=TINY, epochs=5, wrap=True, evaluate=False), tmp_path / "s")


def test_corrupted_bank_file_is_caught(bank, tmp_path):
    f = bank / "bank" / "epoch_00001.safetensors"
    f.write_bytes(f.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(DcondError, match="corrupted"):
        train_student(bank, StudentConfig(model_options=TINY, epochs=3), tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_no_teacher_is_a_clear_error(images_artifact, tmp_path):
    with pytest.raises(DcondError, match="no teacher given"):
        relabel(images_artifact, [], RelabelConfig(epochs=1), tmp_path / "l")


def test_relabel_an_image_folder_of_someone_elses_images(tiny_folder, tiny_teacher, tmp_path):
    out = relabel(tiny_folder / "train", [tiny_teacher], RelabelConfig(epochs=1), tmp_path / "l")
    art = open_artifact(out)
    assert art.section["count"] == 24 and not art.parents[0]["role"] == "images"


def test_cli_chain_relabel_then_train_student(cli, images_artifact, tiny_teacher, tmp_path):
    r = cli("relabel", images_artifact, "--teacher", tiny_teacher, "--epochs", 2, "--mix", "mixup",
            "--crop-scale", 0.5, 1, "--out", tmp_path / "l")
    assert r.code == 0 and r.stdout.strip() == str(tmp_path / "l"), r.stderr
    views = open_artifact(tmp_path / "l").section["bank"]["views"]
    assert views["mix"] == "mixup" and views["crop_scale"] == [0.5, 1.0]
    r = cli("train-student", *TINY_MODEL, "--epochs", 2, "--ema", 0.9, stdin=r.stdout)
    assert r.code == 0 and open_artifact(r.stdout.strip()).kind == "model", r.stderr


@pytest.mark.parametrize("views", [ViewConfig(mix="none"), ViewConfig(mix_prob=0.5)])
def test_a_bank_with_unmixed_batches_replays(views, images_artifact, tiny_teacher, tmp_path):
    """Unmixed batches store each view as its own partner, by its position in the batch (the reader refuses
    partners beyond the batch)."""
    labels = relabel(images_artifact, [tiny_teacher], RelabelConfig(epochs=2, batch_size=5, views=views),
                     tmp_path / "labels")
    out = train_student(labels, StudentConfig(model_options=TINY, epochs=2, evaluate=False), tmp_path / "s")
    assert verify(out).intact
