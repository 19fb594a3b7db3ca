import pytest
import torch
from safetensors.torch import load_file

import dcond.stages.teacher as teacher
from conftest import make_image_folder
from dcond.artifact import open_artifact
from dcond.bnstats import class_bn_statistics
from dcond.data import DataOptions, load_all, load_split, to_input
from dcond.data.sources import load_for_teacher
from dcond.models import ModelSpec, create_model
from dcond.stages.teacher import TeacherConfig, train_teacher

TINY = {"width": 8, "depth": 2}


def test_class_bn_statistics_match_a_direct_computation(tiny_folder):
    spec, files = load_split(DataOptions(str(tiny_folder), image_size=12), "train")
    data = load_all(files)
    model = create_model(ModelSpec("convnet", 1, 3, 12, TINY)).eval()
    stats = class_bn_statistics(model, data, spec, torch.device("cpu"), batch_size=5)
    with torch.no_grad():
        first_conv = model[0](to_input(data.images, spec)).double()
    for c in range(3):
        x = first_conv[data.labels == c].transpose(0, 1).flatten(1)
        torch.testing.assert_close(stats["1.mean"][c], x.mean(1).float(), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(stats["1.var"][c], x.var(1, unbiased=False).float(), rtol=1e-4, atol=1e-5)
    assert stats["count"].tolist() == [8, 8, 8]


def test_interrupted_training_resumes_to_the_same_weights(tiny_folder, tmp_path, monkeypatch):
    data = DataOptions(str(tiny_folder), image_size=12)
    cfg = TeacherConfig(model_options=TINY, epochs=3, batch_size=8)
    real_save = teacher.save_checkpoint

    def save_then_die(path, model, optimizer, progress):
        real_save(path, model, optimizer, progress)
        if progress["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(teacher, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_teacher(data, cfg, tmp_path / "resumed")
    assert not (tmp_path / "resumed").exists() and len(list(tmp_path.glob(".train-teacher-*.partial"))) == 1
    resumed_epochs = []
    monkeypatch.setattr(teacher, "save_checkpoint", lambda p, m, o, progress: resumed_epochs.append(progress["epoch"]))
    train_teacher(data, cfg, tmp_path / "resumed")
    assert resumed_epochs == [3]  # only the unfinished epoch ran again
    monkeypatch.setattr(teacher, "save_checkpoint", real_save)
    train_teacher(data, cfg, tmp_path / "straight")
    a, b = (load_file(tmp_path / d / "model.safetensors") for d in ("resumed", "straight"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not list(tmp_path.glob(".*"))


def test_a_network_without_batchnorm_stores_no_statistics(tiny_folder, tmp_path):
    out = train_teacher(DataOptions(str(tiny_folder), image_size=12),
                        TeacherConfig(model_options=TINY | {"norm": "instance"}, epochs=1), tmp_path / "t")
    assert not (out / "bn_stats.safetensors").exists()


def test_import_outside_weights_with_zero_epochs(tiny_folder, tmp_path):
    net = create_model(ModelSpec("convnet", 1, 3, 12, TINY))
    torch.save(net.state_dict(), tmp_path / "w.pth")
    out = train_teacher(DataOptions(str(tiny_folder), image_size=12),
                        TeacherConfig(model_options=TINY, epochs=0, weights=tmp_path / "w.pth"), tmp_path / "t")
    stored = load_file(out / "model.safetensors")
    assert torch.equal(stored["0.weight"], net.state_dict()["0.weight"])


def test_a_folder_without_test_split_is_measured_on_held_out_images_only(tmp_path):
    """`--data root/train` once reported training accuracy as "test": now a recorded held-out share is
    measured, named as such, and no later stage trains on it."""
    folder = make_image_folder(tmp_path / "flat", per_class=10)
    out = train_teacher(DataOptions(str(folder), image_size=12), TeacherConfig(model_options=TINY, epochs=1),
                        tmp_path / "t")
    art = open_artifact(out)
    held = art.json("holdout.json")
    assert set(art.metrics) == {"flat:holdout"} and art.metrics["flat:holdout"]["samples"] == len(held) == 3
    assert art.section["evaluated_on"] == "holdout" and art.section["train_images"] == 27
    assert load_file(out / "bn_stats.safetensors")["count"].tolist() == [9, 9, 9]
    _, _, train = load_for_teacher(DataOptions(""), art.dataset)  # what select and synthesize draw from
    assert not {p.relative_to(folder).as_posix() for p in train.paths} & set(held)
