"""`train-student --recipe`: a method's authors' student protocol, filled in from the condensed set at hand, with
every flag given winning; and the pieces those protocols need (schedules, weight-decay groups, RandAugment,
the best evaluation of the last epochs kept apart from the last)."""

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from conftest import TINY_MODEL, content
from dcond.artifact import open_artifact
from dcond.config import StudentConfig
from dcond.data import InputImages, to_input
from dcond.data.folder import ArtifactImages
from dcond.data.images import load_all
from dcond.engine import decay_groups, lr_factor, make_optimizer
from dcond.errors import DcondError
from dcond.models import ModelSpec, create_model
from dcond.spec import DatasetSpec
from dcond.stages import student
from dcond.stages.student import FreshViews, student_config, train_student
from dcond.student_recipes import STUDENT_RECIPES, CondensedSet
from test_cli import one_error_line

TINY = {"width": 8, "depth": 2}


def test_rded_and_edc_students_follow_the_released_scripts_for_small_data(shared_teacher_images):
    teacher, images = shared_teacher_images  # 3 classes × 8 images of 12 pixels: the CIFAR-10 shape
    rded = student_config(images, "rded", teachers=[teacher])
    assert (rded.epochs, rded.batch_size, rded.loss, rded.temperature, rded.schedule, rded.zeta) == \
        (300, 24, "kl", 20.0, "smoothing", 2.0)  # batch 50 at IPC ≤ 10, capped at the 24 images
    assert not rded.decay_norm and rded.best_of_last == 0.2 and rded.views.crop_scale == (1.0, 1.0)
    assert rded.strips == 1  # factor 1: no stitching, nothing to shuffle
    edc = student_config(images, "edc", teachers=[teacher])
    assert (edc.epochs, edc.batch_size, edc.loss, edc.ce_weight, edc.ema, edc.schedule, edc.milestones) == \
        (1000, 10, "mse-ce", 0.025, 0.99, "multistep", (0.8, 0.9, 0.95))
    assert edc.randaugment and edc.views.crop_scale == (0.08, 1.0)
    assert student_config(images, "rded", teachers=[teacher], epochs=7, views={"flip": 0.0}).epochs == 7
    assert student_config(images, "dcond").epochs == 300 and student_config(images, "dcond").decay_norm


def test_rded_student_on_stitched_images_shuffles_their_strips_before_a_crop_of_a_cell_or_more():
    imagenet = DatasetSpec("in", tuple(map(str, range(1000))), 3, 224, (0.5,) * 3, (0.25,) * 3)
    stitched = STUDENT_RECIPES.get("rded")(CondensedSet(imagenet, 10, False, 2))
    assert (stitched["strips"], stitched["views"].crop_scale, stitched["batch_size"]) == (2, (0.5, 1.0), 100)


def test_edc_student_follows_the_train_script_of_each_shape():
    def spec(classes: int, size: int) -> DatasetSpec:
        return DatasetSpec("d", tuple(map(str, range(classes))), 3, size, (0.5,) * 3, (0.25,) * 3)

    def edc(classes: int, size: int, has_bank: bool = False) -> dict:
        return STUDENT_RECIPES.get("edc")(CondensedSet(spec(classes, size), 10, has_bank, 1))

    cifar100, tiny, imagenet = edc(100, 32), edc(200, 64), edc(1000, 224, True)
    sgd = {"optimizer": "sgd", "lr": 0.1, "momentum": 0.875, "nesterov": False, "weight_decay": 5e-4}
    assert cifar100.items() >= (sgd | {"epochs": 1000, "batch_size": 50, "schedule": "two-piece", "zeta": 2.0}).items()
    assert tiny.items() >= (sgd | {"epochs": 300, "batch_size": 100, "schedule": "smoothing", "zeta": 2.0}).items()
    assert cifar100["views"].crop_scale == tiny["views"].crop_scale == (0.5, 1.0)
    assert cifar100["online"] and tiny["randaugment"] and cifar100["ema"] == tiny["ema"] == 0.99
    assert (edc(10, 32)["optimizer"], edc(10, 32)["views"].crop_scale) == ("adamw", (0.08, 1.0))
    assert (imagenet["optimizer"], imagenet["schedule"], "views" in imagenet) == ("adamw", "linear", False)
    sgd_optimizer = make_optimizer("sgd", [torch.zeros(2, requires_grad=True)], 0.1, 5e-4, 0.875, nesterov=False)
    assert sgd_optimizer.defaults["momentum"] == 0.875 and not sgd_optimizer.defaults["nesterov"]


def test_sre2l_student_follows_its_cifar_script_on_small_data_and_its_fkd_script_on_imagenet(shared_teacher_images):
    teacher, images = shared_teacher_images
    small = student_config(images, "sre2l", teachers=[teacher])
    assert (small.epochs, small.batch_size, small.temperature, small.schedule, small.shift) == (400, 24, 30.0,
                                                                                                "cosine", 4)
    assert (small.views.mix, small.views.mix_alpha, small.views.crop_scale, small.decay_norm) == \
        ("mixup", 0.8, (1.0, 1.0), True)
    assert student_config(images, "sre2l", teachers=[teacher], shift=0).shift == 0
    imagenet = DatasetSpec("in", tuple(map(str, range(1000))), 3, 224, (0.5,) * 3, (0.25,) * 3)
    assert STUDENT_RECIPES.get("sre2l")(CondensedSet(imagenet, 10, True, 1)) == {
        "optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.01, "schedule": "cosine", "loss": "kl", "epochs": 300,
        "temperature": 20.0, "decay_norm": False, "schedule_step": "epoch"}
    with pytest.raises(DcondError, match="replays a soft-label bank"):
        STUDENT_RECIPES.get("sre2l")(CondensedSet(imagenet, 10, False, 1))
    tiny = STUDENT_RECIPES.get("sre2l")(CondensedSet(replace(imagenet, classes=imagenet.classes[:200],
                                                             image_size=64), 50, False, 1))
    assert tiny.items() >= {"optimizer": "sgd", "lr": 0.2, "momentum": 0.9, "nesterov": False, "weight_decay": 1e-4,
                            "schedule": "cosine", "warmup_epochs": 5, "loss": "kl-t2", "temperature": 20.0,
                            "epochs": 100, "batch_size": 256, "online": True}.items()
    assert (tiny["views"].crop_scale, tiny["views"].mix, "decay_norm" in tiny) == ((0.08, 1.0), "none", False)


def test_sre2l_student_shifts_and_mixes_online_and_a_bank_refuses_what_it_did_not_store(cli, shared_teacher_images,
                                                                                       tmp_path):
    teacher, images = shared_teacher_images
    r = cli("train-student", images, "--recipe", "sre2l", "--teacher", teacher, "--epochs", 2, *TINY_MODEL,
            "--out", tmp_path / "s")
    assert r.code == 0, r.stderr
    config = open_artifact(tmp_path / "s").producer["config"]
    assert (config["recipe"], config["shift"], config["views"]["mix"]) == ("sre2l", 4, "mixup")
    labels = cli("relabel", images, "--teacher", teacher, "--epochs", 1, "--out", tmp_path / "l").stdout.strip()
    line = one_error_line(cli("train-student", labels, "--epochs", 1, "--shift", 2, "--out", tmp_path / "bad"))
    assert "a bank replays the views it stored: --randaugment, --shift and --strips are for online" in line
    assert not (tmp_path / "bad").exists()


def _first_epoch_views(images, recipe: str, **settings) -> tuple[torch.Tensor, torch.Tensor, DatasetSpec]:
    """The views of epoch 0 as `recipe` draws them online, unflipped and unmixed, with the uint8 images they
    come from and their dataset."""
    art, data = open_artifact(images), load_all(ArtifactImages(images).split("train"))
    cfg = student_config(images, recipe, views={"flip": 0.0, "mix": "none"}, **settings)
    fresh = FreshViews(InputImages(data.images, art.dataset), data.labels, cfg, torch.device("cpu"), [],
                       art.dataset, data.images)
    return torch.cat([batch for batch, _, _ in fresh.epoch(0)]), data.images, art.dataset


def test_shifted_views_are_windows_of_the_images_in_a_black_frame(shared_teacher_images):
    teacher, images = shared_teacher_images
    x, raw, spec = _first_epoch_views(images, "sre2l", teachers=[teacher])
    framed = to_input(F.pad(raw, (4,) * 4), spec)  # black (0) before normalising, as torchvision
    offsets = [next((i, j) for i in range(9) for j in range(9) for f in framed
                    if torch.allclose(view, f[:, i:i + 12, j:j + 12], atol=1e-5)) for view in x]
    assert len(x) == 24 and len(set(offsets)) > 5


def test_strip_shuffled_views_are_the_images_with_halves_swapped(shared_teacher_images):
    teacher, images = shared_teacher_images
    x, raw, spec = _first_epoch_views(images, "rded", teachers=[teacher], strips=2)
    arrangements = [to_input(raw.roll(shifts, dims), spec)
                    for shifts, dims in [(0, 2), (6, 3), (6, 2), ((6, 6), (2, 3))]]  # 12 pixels: halves of 6
    drawn = [next(k for k, a in enumerate(arrangements) for image in a if torch.allclose(view, image, atol=1e-5))
             for view in x]
    assert len(x) == 24 and len(set(drawn)) == 4


@pytest.mark.parametrize("recipe", ["rded", "edc", "sre2l"])
def test_a_recipe_that_labels_online_needs_a_teacher(cli, shared_teacher_images, recipe):
    _, images = shared_teacher_images
    line = one_error_line(cli("train-student", images, "--recipe", recipe, "--epochs", 1))
    assert f"the {recipe} student labels every batch with its teachers online: pass --teacher" in line


def test_rded_records_its_best_of_the_last_epochs_apart_from_the_last(shared_teacher_images, tmp_path):
    teacher, images = shared_teacher_images
    cfg = student_config(images, "rded", teachers=[teacher], epochs=20, model_options=TINY)
    metrics = open_artifact(train_student(images, cfg, tmp_path / "s")).metrics
    best = metrics["tiny:test:best-of-last-20%"]
    assert set(metrics) == {"tiny:test", "tiny:test:best-of-last-20%"} and best["from_epoch"] == 17
    assert best["epoch"] in (20,) and best["top1"] == metrics["tiny:test"]["top1"]  # one evaluation: the last


def test_edc_student_trains_with_randaugment_online_teachers_and_ema(cli, shared_teacher_images, tmp_path):
    teacher, images = shared_teacher_images
    r = cli("train-student", images, "--recipe", "edc", "--teacher", teacher, "--teacher", teacher, "--epochs", 2,
            "--optimizer", "sgd", "--lr", 0.1, "--momentum", 0.875, "--no-nesterov", *TINY_MODEL,
            "--out", tmp_path / "s")
    assert r.code == 0, r.stderr
    config = open_artifact(tmp_path / "s").producer["config"]
    assert config["recipe"] == "edc" and config["randaugment"] and config["ema"] == 0.99
    assert (config["optimizer"], config["momentum"], config["nesterov"]) == ("sgd", 0.875, False)  # as EDC's CIFAR-100


def test_an_interrupted_student_resumes_to_the_result_of_an_uninterrupted_one(shared_teacher_images, tmp_path,
                                                                             monkeypatch):
    """What the later epochs depend on carries over: RandAugment's random state, the EMA of the weights, the
    optimiser and the schedule's step, and the best evaluation so far (epoch 10, before the interruption)."""
    teacher, images = shared_teacher_images
    cfg = student_config(images, "edc", teachers=[teacher], epochs=20, batch_size=8, best_of_last=0.6,
                         model_options=TINY, checkpoint_seconds=0)
    real_save, real_resume, best_saved, best_resumed = student.save_checkpoint, student._resume, [], []

    def save_then_die(path, model, optimizer, progress, extra):
        real_save(path, model, optimizer, progress, extra)
        if progress["epoch"] == 12:
            best_saved.append(progress["best"])
            raise KeyboardInterrupt

    def resume(*args):
        start = real_resume(*args)
        best_resumed.append([args[4].top1, args[4].epoch])
        return start

    monkeypatch.setattr(student, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_student(images, cfg, tmp_path / "resumed")
    assert not (tmp_path / "resumed").exists() and len(list(tmp_path.glob(".train-student-*.partial"))) == 1
    saved_after = []
    monkeypatch.setattr(student, "save_checkpoint", lambda *args: saved_after.append(args[3]["epoch"]))  # progress
    monkeypatch.setattr(student, "_resume", resume)
    train_student(images, cfg, tmp_path / "resumed")
    assert saved_after == list(range(13, 20))  # only epochs 13-20 ran again; nothing is saved after the last
    assert best_resumed == best_saved and best_saved[0][1] == 9  # the evaluation after epoch 10 counts
    monkeypatch.setattr(student, "save_checkpoint", real_save)
    assert content(tmp_path / "resumed") == content(train_student(images, cfg, tmp_path / "straight"))
    assert not list(tmp_path.glob(".train-student-*.partial"))  # committed: the work folder became the artifact


def test_the_ema_is_edcs_average_of_parameters_from_the_start_evaluated_with_live_batchnorm_statistics():
    model = create_model(ModelSpec("convnet", 1, 3, 12, TINY))
    ema = student._ema(model, 0.9)
    start = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    model(torch.randn(4, 1, 12, 12)).square().mean().backward()  # in training mode: BatchNorm's buffers move
    optimizer.step()
    ema.update_parameters(model)
    evaluated = ema.module
    for averaged, before, after in zip(evaluated.parameters(), start, model.parameters()):
        torch.testing.assert_close(averaged, 0.9 * before + 0.1 * after)
    assert all(torch.equal(mine, live) for mine, live in zip(evaluated.buffers(), model.buffers()))
    assert any(not torch.equal(a, b) for a, b in zip(evaluated.parameters(), model.parameters()))


@pytest.mark.parametrize("recipe", ["rded", "edc", "sre2l"])
def test_a_methods_student_steps_its_schedule_once_an_epoch_as_its_script_does(shared_teacher_images, tmp_path,
                                                                                monkeypatch, recipe):
    teacher, images = shared_teacher_images
    rates = []
    monkeypatch.setattr(student, "set_lr", lambda optimizer, lr: rates.append(lr))
    for step_by in (None, "batch"):  # the recipe's clock, then dcond's
        cfg = student_config(images, recipe, teachers=[teacher], epochs=4, batch_size=8, schedule="cosine",
                             model_options=TINY, schedule_step=step_by, evaluate=False)
        train_student(images, cfg, tmp_path / f"{recipe}-{step_by}")
    per_epoch, per_batch = rates[:12], rates[12:]  # 24 images in batches of 8: 3 batches an epoch
    lr = student_config(images, recipe, teachers=[teacher]).lr
    assert per_epoch == [lr * lr_factor("cosine", e, 4) for e in range(4) for _ in range(3)]
    assert per_batch == [lr * lr_factor("cosine", s, 12) for s in range(12)]
    assert student_config(images, "dcond").schedule_step == "batch"


def test_a_warm_up_then_cosine_once_an_epoch_is_torchvisions_sequence_as_sre2ls_tiny_imagenet_student_runs_it():
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.2)
    torchvision_like = torch.optim.lr_scheduler.SequentialLR(optimizer, [
        torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.01, total_iters=5),
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=95)], milestones=[5])
    rates = []
    for _ in range(100):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        torchvision_like.step()
    assert [0.2 * lr_factor("cosine", e, 100, warmup=5) for e in range(100)] == pytest.approx(rates, abs=1e-9)


def test_kl_t2_is_the_kl_loss_times_the_temperature_squared():
    out, teacher, targets = torch.randn(6, 4), torch.randn(6, 4), torch.eye(4)[[0, 1, 2, 3, 0, 1]]
    kl, kl_t2 = (student.student_loss(StudentConfig(loss=name), out, teacher, targets, 20.0)
                 for name in ("kl", "kl-t2"))
    assert kl_t2 == pytest.approx(400 * kl) and kl > 0


def test_schedules_and_weight_decay_groups():
    assert [lr_factor("multistep", s, 100, milestones=(0.8, 0.9)) for s in (0, 79, 80, 90, 99)] == \
        [1, 1, 0.5, 0.25, 0.25]
    assert lr_factor("linear", 50, 100, zeta=2.0) == 0.75
    edc_cifar10 = {"milestones": (0.8, 0.9, 0.95)}  # under either clock: a step falls at the first batch of its epoch
    assert [lr_factor("multistep", e * 7 + b, 1000 * 7, **edc_cifar10) for e in range(1000) for b in range(7)] == \
        [lr_factor("multistep", e, 1000, **edc_cifar10) for e in range(1000) for b in range(7)]
    cut = 0.5 * (1 + math.cos(math.pi * 5 / 12))  # EDC's "cos2" at 5/6 of the run, ζ = 2
    assert lr_factor("two-piece", 0, 600) == 1 and lr_factor("two-piece", 500, 600) == pytest.approx(cut)
    assert lr_factor("two-piece", 501, 600) == pytest.approx(cut * 99 / 600)  # a drop to about a sixth
    assert lr_factor("two-piece", 600, 600) == 0
    model = create_model(ModelSpec("convnet", 1, 3, 12, TINY))
    decayed, kept = decay_groups(model, 0.01, norms_too=False)
    assert all(p.ndim > 1 for p in decayed["params"]) and all(p.ndim == 1 for p in kept["params"])
    assert kept["weight_decay"] == 0 and len(decayed["params"]) + len(kept["params"]) == len(list(model.parameters()))
    with pytest.raises(DcondError, match="unknown student recipe 'kd'"):
        student_config(None, "kd")
