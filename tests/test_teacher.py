from pathlib import Path
from urllib.error import URLError

import pytest
import torch
from safetensors.torch import load_file

import dcond.stages.teacher as teacher
from conftest import make_image_folder
from dcond.artifact import open_artifact
from dcond.data import DataOptions, load_all, load_split, to_input
from dcond.data.sources import load_for_teacher
from dcond.errors import DcondError
from dcond.models import ModelSpec, create_model, load_model
from dcond.realstats import real_statistics, stat_layers
from dcond.stages.teacher import TeacherConfig, train_teacher

TINY = {"width": 8, "depth": 2}


def test_statistics_of_real_data_match_a_direct_computation(tiny_folder, monkeypatch):
    """Per class, the mean over its images of each image's own statistics (so the variance is the mean of
    per-image spatial variances); at Conv2d inputs also 4×4-patch statistics and whole-set statistics."""
    import dcond.realstats

    spec, files = load_split(DataOptions(str(tiny_folder), image_size=12), "train")
    data = load_all(files)
    model = create_model(ModelSpec("convnet", 1, 3, 12, TINY)).eval()
    monkeypatch.setattr(dcond.realstats, "BATCH_BYTES", 40_000)  # batches of 2 images at this size: many batches
    assert dcond.realstats._batch_size(model, [m for _, m in stat_layers(model)], data, spec, "cpu") == 2
    stats = real_statistics(model, data, spec, torch.device("cpu"))
    with torch.no_grad():
        pixels = to_input(data.images, spec).double()
        first_conv = model[0](pixels.float()).double()
    for c in range(3):
        mine = data.labels == c
        x = first_conv[mine]  # the BN layer's input
        torch.testing.assert_close(stats["1.class_mean"][c], x.mean((0, 2, 3)).float(), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(stats["1.class_var"][c], x.var((2, 3), unbiased=False).mean(0).float(),
                                   rtol=1e-4, atol=1e-5)
        tiles = pixels[mine].unfold(2, 4, 4).unfold(3, 4, 4)  # images × 1 × 3 × 3 × 4 × 4
        torch.testing.assert_close(stats["0.class_patch_mean"][c], tiles.mean((1, 4, 5)).flatten(1).mean(0).float(),
                                   rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(stats["0.var"], pixels.var((0, 2, 3), unbiased=False).float(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(stats["0.patch_mean"], pixels.unfold(2, 4, 4).unfold(3, 4, 4).mean((0, 1, 4, 5))
                               .flatten().float(), rtol=1e-4, atol=1e-5)
    assert stats["count"].tolist() == [8, 8, 8] and "1.patch_mean" not in stats  # BN: running buffers instead


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


def test_a_network_without_batchnorm_stores_convolution_statistics_only(tiny_folder, tmp_path):
    out = train_teacher(DataOptions(str(tiny_folder), image_size=12),
                        TeacherConfig(model_options=TINY | {"norm": "instance"}, epochs=1), tmp_path / "t")
    stats = load_file(out / "stats.safetensors")
    assert "0.class_patch_var" in stats and "0.var" in stats and not open_artifact(out).section["bn_layers"]


def test_import_outside_weights_with_zero_epochs(tiny_folder, tmp_path):
    net = create_model(ModelSpec("convnet", 1, 3, 12, TINY))
    torch.save(net.state_dict(), tmp_path / "w.pth")
    out = train_teacher(DataOptions(str(tiny_folder), image_size=12),
                        TeacherConfig(model_options=TINY, epochs=0, weights=tmp_path / "w.pth"), tmp_path / "t")
    stored = load_file(out / "model.safetensors")
    assert torch.equal(stored["0.weight"], net.state_dict()["0.weight"])


@pytest.mark.parametrize("options, message", [
    ({"epochs": 0}, "--epochs 0 only makes sense with --weights or --pretrained"),
    ({"pretrained": True, "weights": Path("w.pth")}, "--weights and --pretrained both give the starting weights"),
])
def test_a_teacher_starts_from_one_set_of_weights(options, message):
    with pytest.raises(DcondError, match=message):
        TeacherConfig(**options)


def _cache_published_resnet18(torch_home: Path) -> dict[str, torch.Tensor]:
    """Stand-in weights where torch.hub keeps the file torchvision's ResNet-18 weights download to."""
    import torchvision

    published = torchvision.models.resnet18().state_dict()
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    (torch_home / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(published, torch_home / "hub" / "checkpoints" / url.rsplit("/", 1)[1])
    return published


def test_pretrained_torchvision_network_becomes_a_teacher_without_training(cli, tiny_folder, tmp_path, monkeypatch):
    """The ImageNet workflow: `--pretrained --epochs 0` measures the published network and collects its
    statistics. The body is the published one, the head new for the data's 3 classes, and the artifact holds
    it all: loading it later needs no hub."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    published = _cache_published_resnet18(tmp_path / "torch")
    r = cli("train-teacher", "--data", tiny_folder, "--model", "tv:resnet18", "--pretrained", "--epochs", 0,
            "--out", tmp_path / "t")
    assert r.code == 0, r.stderr
    assert "new 3-class head (the published one has 1000 classes)" in r.stderr
    stored = load_file(tmp_path / "t" / "model.safetensors")  # grayscale data: the network is wrapped
    assert all(torch.equal(stored[f"net.{k}"], published[k]) for k in published if not k.startswith("fc."))
    assert stored["net.fc.weight"].shape == (3, 512) and (tmp_path / "t" / "stats.safetensors").is_file()
    art = open_artifact(tmp_path / "t")
    assert art.section["pretrained"] == "ResNet18_Weights.IMAGENET1K_V1" and "tiny:test" in art.metrics
    assert str(tmp_path / "torch") not in (tmp_path / "t" / "dcond.json").read_text()
    assert "with the published weights ResNet18_Weights.IMAGENET1K_V1, not trained further" in \
        (tmp_path / "t" / "README.md").read_text()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "elsewhere"))
    assert torch.equal(load_model(art).state_dict()["net.conv1.weight"], published["conv1.weight"])


def test_pretrained_weights_neither_cached_nor_downloadable_fail_in_one_line(cli, tiny_folder, tmp_path,
                                                                           monkeypatch):
    def offline(url, *args, **kwargs):
        raise URLError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    r = cli("train-teacher", "--data", tiny_folder, "--model", "tv:resnet18", "--pretrained", "--epochs", 0,
            "--out", tmp_path / "t")
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert r.code == 1 and r.stderr.count("\n") == 1 and not (tmp_path / "t").exists()
    assert f"pretrained weights for tv:resnet18 are not in the torch hub cache ({expected}) and could not be " \
           "downloaded: <urlopen error no network>" in r.stderr


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
    assert load_file(out / "stats.safetensors")["count"].tolist() == [9, 9, 9]
    _, _, train = load_for_teacher(DataOptions(""), art.dataset)  # what select and synthesize draw from
    assert not {p.relative_to(folder).as_posix() for p in train.files} & set(held)


def test_a_validation_split_is_measured_on_in_place_of_the_test_split_and_kept_by_the_whole_chain(tiny_folder,
                                                                                                  tmp_path):
    """`--validation F` holds a class-balanced share of the training images out of the teacher and every later
    stage, measures on it, never on the test split, and refuses to mix chains with other validation splits."""
    from dcond.stages.relabel import RelabelConfig, relabel
    from dcond.stages.select import SelectConfig, select

    opts = DataOptions(str(tiny_folder), image_size=12, validation=0.25)
    out = train_teacher(opts, TeacherConfig(model_options=TINY, epochs=1), tmp_path / "t")
    art = open_artifact(out)
    assert set(art.metrics) == {"tiny:validation"} and art.metrics["tiny:validation"]["samples"] == 6
    assert art.section["evaluated_on"] == "validation" and art.section["train_images"] == 18
    record = art.dataset.source["validation"]
    assert record["fraction"] == 0.25 and record["count"] == 6

    _, _, train = load_for_teacher(DataOptions(""), art.dataset)  # what select and synthesize draw from
    _, whole = load_split(DataOptions(str(tiny_folder), image_size=12), "train")
    _, held = load_split(DataOptions(str(tiny_folder), image_size=12, validation=0.25), "validation")
    assert torch.bincount(held.labels).tolist() == [2, 2, 2]
    assert sorted(map(str, train.files + held.files)) == sorted(map(str, whole.files))
    assert not set(train.files) & set(held.files)
    with pytest.raises(DcondError, match="split for validation: only its train and validation splits"):
        load_split(DataOptions(str(tiny_folder), image_size=12, validation=0.25), "test")

    images = select(out, DataOptions(""), SelectConfig(method="random", ipc=2), tmp_path / "s")
    assert open_artifact(images).dataset.source["validation"] == record
    plain = train_teacher(DataOptions(str(tiny_folder), image_size=12), TeacherConfig(model_options=TINY, epochs=1),
                          tmp_path / "plain")
    with pytest.raises(DcondError, match="hold out different validation splits"):
        relabel(images, [plain], RelabelConfig(epochs=1), tmp_path / "l")
    assert not (tmp_path / "l").exists()
    extra = tiny_folder / "train" / "class_0" / "extra.png"  # the data changed: other images would be held out
    extra.write_bytes((tiny_folder / "train" / "class_0" / "0.png").read_bytes())
    with pytest.raises(DcondError, match="the data changed, so the validation split may hold images"):
        load_for_teacher(DataOptions(""), art.dataset)
