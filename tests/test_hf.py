"""Hugging Face datasets in (`--data hf:…`) and out (an images artifact read by `datasets` and torchvision)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import TINY_MODEL, framed_image, make_image_folder
from dcond.artifact import class_folder, image_files, open_artifact
from dcond.data import DataOptions, load_eval_split, open_source, reopen
from dcond.data.images import balanced_subset
from dcond.errors import DcondError
from test_cli import one_error_line

datasets = pytest.importorskip("datasets")
CLASSES = ["ant", "bee", "cat"]


@pytest.fixture(autouse=True)
def offline_cache(tmp_path, monkeypatch) -> Path:
    """`datasets`' cache in the test's folder (never ~/.cache), and no Hub: only what is cached loads."""
    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    return cache


def table(images: list[Image.Image], labels: list[int]) -> "datasets.Dataset":
    """A table of an Image column `image` and a ClassLabel column `label`."""
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=CLASSES)})
    return datasets.Dataset.from_dict({"image": images, "label": labels}, features=features)


def tiny_splits(root: Path, per_class: int = 8, test_per_class: int = 4) -> dict[str, "datasets.Dataset"]:
    """The learnable 12-pixel images of `make_image_folder` as tables: train, and test when `test_per_class`."""
    folder = make_image_folder(root, per_class=per_class, test_per_class=test_per_class)
    splits = {}
    for split in ["train", "test"] if test_per_class else [""]:
        paths = sorted((folder / split).glob("class_*/*.png"))
        splits[split or "train"] = table([Image.open(p) for p in paths],
                                         [int(p.parent.name.removeprefix("class_")) for p in paths])
    return splits


def saved(splits: dict[str, "datasets.Dataset"], layout: str, where: Path) -> Path:
    """`splits` as a folder of parquet files named by split, or a folder saved with save_to_disk."""
    if layout == "parquet":
        where.mkdir()
        for name, split in splits.items():
            split.to_parquet(where / f"{name}.parquet")
    else:
        datasets.DatasetDict(splits).save_to_disk(where)
    return where


@pytest.mark.parametrize("layout", ["parquet", "save_to_disk"])
def test_train_teacher_on_a_hugging_face_dataset(cli, tmp_path, layout):
    data = saved(tiny_splits(tmp_path / "src"), layout, tmp_path / "bugs")
    r = cli("train-teacher", "--data", f"hf:{data}", "--epochs", 1, "--batch-size", 8, "--subset", 12,
            *TINY_MODEL, "--out", tmp_path / "t")
    assert r.code == 0, r.stderr
    art = open_artifact(tmp_path / "t")
    spec = art.dataset
    assert (spec.name, spec.classes, spec.channels, spec.image_size) == ("bugs", tuple(CLASSES), 1, 12)
    assert spec.source == {"type": "hf", "path": str(data.resolve())}
    assert json.loads((tmp_path / "t" / "dcond.json").read_text())["dataset"]["source"]["path"] == f"../{data.name}"
    assert art.section["train_images"] == 12 and art.metrics["bugs:test"]["samples"] == 12
    r = cli("evaluate", tmp_path / "t")  # the data found again from what the artifact records
    assert r.code == 0, r.stderr


def test_a_dataset_without_test_split_holds_out_recorded_rows(cli, tmp_path):
    data = saved(tiny_splits(tmp_path / "src", per_class=10, test_per_class=0), "save_to_disk", tmp_path / "d")
    opts = DataOptions(f"hf:{data}", holdout=0.2)
    source = open_source(opts)
    train, held = source.split("train"), source.split("holdout")
    assert source.eval_split == "holdout" and torch.bincount(held.labels).tolist() == [2, 2, 2]
    held_rows = held.files.rows.tolist()
    assert len(train) == 24 and not set(train.files.rows.tolist()) & set(held_rows)
    assert source.spec.source["holdout"]["count"] == 6 and source.held_names == [str(i) for i in held_rows]
    assert len(balanced_subset(train, 6, 3).files.rows) == 6  # a subset is row numbers, not the images' bytes
    _, again = reopen(DataOptions(data=""), source.spec)
    assert again.spec == source.spec and torch.equal(again.split("holdout").files.rows, held.files.rows)


def test_images_are_decoded_at_their_size_or_cropped_to_image_size(tmp_path):
    rows = [Image.new("L", (12, 12), 50), Image.new("L", (16, 16), 200), Image.new("RGB", (20, 10), "red")]
    table(rows, [0, 1, 2]).save_to_disk(tmp_path / "mixed")
    with pytest.raises(DcondError, match=r"not all of one square size \(12×12 \(train row 0\), 16×16 \(train row 1\)"
                                         r"\): pass --image-size"):
        open_source(DataOptions(f"hf:{tmp_path / 'mixed'}", holdout=0))
    source = open_source(DataOptions(f"hf:{tmp_path / 'mixed'}", image_size=8, holdout=0))
    images, labels = source.split("train").__getitems__([0, 1, 2])
    assert source.spec.channels == 3 and images.shape == (3, 3, 8, 8) and labels.tolist() == [0, 1, 2]
    assert images[1].unique().tolist() == [200] and images[2, :, 4, 4].tolist() == [255, 0, 0]


def test_test_rows_of_imagenet_shaped_data_are_measured_on_their_centre_in_any_subset_of_them(tmp_path):
    rows = [framed_image(72, 3)] * 6  # larger than 64 pixels: ImageNet's test view
    datasets.DatasetDict({s: table(rows, [0, 1, 2] * 2) for s in ("train", "test")}).save_to_disk(tmp_path / "d")
    _, split, test = load_eval_split(DataOptions(f"hf:{tmp_path / 'd'}", subset=3))
    assert split == "test" and len(test) == 3 and test.crop == 224 / 256
    assert test.__getitems__(range(3))[0].max() == 0  # the white frame is outside the central 87.5 %
    assert test.take(torch.tensor([0, 2])).crop == test.crop


def test_columns_are_found_by_their_feature_or_named(tmp_path):
    two_labels = table([Image.new("L", (8, 8))] * 4, [0, 1, 2, 0]).add_column("kind", [0, 1, 1, 0]) \
        .cast_column("kind", datasets.ClassLabel(names=["small", "big"]))
    two_labels.save_to_disk(tmp_path / "two")
    with pytest.raises(DcondError, match=r"several ClassLabel columns \(its columns: image \(Image\), label "
                                         r"\(ClassLabel\), kind \(ClassLabel\)\); name the label column with "
                                         r"hf:…,label=COLUMN"):
        open_source(DataOptions(f"hf:{tmp_path / 'two'}"))
    assert open_source(DataOptions(f"hf:{tmp_path / 'two'},label=kind", holdout=0)).spec.classes == ("small", "big")
    with pytest.raises(DcondError, match="no ClassLabel column 'size'"):
        open_source(DataOptions(f"hf:{tmp_path / 'two'},label=size"))
    two_labels.remove_columns("image").save_to_disk(tmp_path / "no-images")
    with pytest.raises(DcondError, match="no Image columns"):
        open_source(DataOptions(f"hf:{tmp_path / 'no-images'}"))
    with pytest.raises(DcondError, match="'colour=red' is neither image=COLUMN nor label=COLUMN"):
        open_source(DataOptions(f"hf:{tmp_path / 'two'},colour=red"))


def test_a_hub_dataset_from_the_local_cache(offline_cache, tmp_path):
    """A Hub dataset as a download leaves it in the cache (`owner___name/config/version/hash`), read offline."""
    from datasets.packaged_modules.parquet.parquet import Parquet

    data = saved(tiny_splits(tmp_path / "src"), "parquet", tmp_path / "files")
    builder = Parquet(cache_dir=str(offline_cache), config_name="plain", hash="0", dataset_name="bugs",
                      data_files={split: str(data / f"{split}.parquet") for split in ("train", "test")})
    builder.download_and_prepare()
    (offline_cache / "someone___bugs").mkdir()
    Path(builder.cache_dir).parents[1].rename(offline_cache / "someone___bugs" / "plain")
    source = open_source(DataOptions("hf:someone/bugs:plain"))
    assert (source.spec.name, source.spec.classes, source.eval_split) == ("bugs", tuple(CLASSES), "test")
    assert source.spec.source == {"type": "hf", "name": "someone/bugs", "config": "plain"}
    assert len(source.split("test")) == 12
    with pytest.raises(DcondError, match="cannot load hf:someone/other: .*someone/other"):
        open_source(DataOptions("hf:someone/other"))


def test_without_the_datasets_package_one_line_says_what_to_install(cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` fails, as when it is not installed
    line = one_error_line(cli("train-teacher", "--data", "hf:someone/bugs", "--epochs", 1))
    assert line == "error: --data hf:… needs the Hugging Face `datasets` package: pip install 'dcond[hf]'"


def test_importing_dcond_does_not_import_datasets():
    code = "import sys, dcond.cli, dcond.data; sys.exit('datasets' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_an_images_artifact_is_an_image_folder_for_datasets_and_torchvision(shared_teacher_images):
    from torchvision.datasets import ImageFolder

    _, images = shared_teacher_images
    art = open_artifact(images)
    paths, labels = image_files(art)
    folders = [class_folder(c, name, art.dataset.num_classes) for c, name in enumerate(art.dataset.classes)]
    loaded = datasets.load_dataset("imagefolder", data_dir=str(images))
    assert list(loaded) == ["train"] and loaded["train"].features["label"].names == folders
    assert loaded["train"]["label"][:] == labels
    tv = ImageFolder(str(images / "images"))
    assert tv.classes == folders and tv.targets == labels and len(tv) == len(paths)
