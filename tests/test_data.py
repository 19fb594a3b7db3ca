import gzip
import multiprocessing

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as T

from conftest import framed_image, make_image_folder
from dcond.artifact import open_artifact
from dcond.config import available_cores
from dcond.data import (DataOptions, check_same_split, load_eval_split, load_split, open_source, reopen, to_input,
                        to_uint8)
from dcond.data import images as data_images
from dcond.data.augment import random_crop_flip, random_shift, shuffle_strips
from dcond.data.images import balanced_subset, decode_image, decode_threads
from dcond.engine import evaluate
from dcond.errors import DcondError


def write_idx(path, array: np.ndarray) -> None:
    magic = (0x0800 + array.ndim).to_bytes(4, "big")
    header = magic + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def fake_fashion_root(root, n=20):
    folder = root / "fashion-mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, count in (("train", n), ("t10k", n // 2)):
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 255, (count, 28, 28)))
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", np.arange(count) % 10)
    return root


def test_named_dataset_from_a_local_root(tmp_path):
    source = open_source(DataOptions("fashion-mnist", root=fake_fashion_root(tmp_path)))
    assert source.spec.num_classes == 10 and source.spec.classes[0] == "T-shirt/top"
    train = source.split("train")
    assert train.images.shape == (20, 1, 28, 28) and train.labels.tolist()[:3] == [0, 1, 2]
    assert len(source.split("test")) == 10


def test_missing_named_dataset_says_where_it_looked_and_how_to_get_it(tmp_path):
    with pytest.raises(DcondError, match=r"mnist not found: looked .*--download"):
        open_source(DataOptions("mnist", root=tmp_path))


def test_truncated_idx_file_is_reported(tmp_path):
    root = fake_fashion_root(tmp_path)
    path = root / "fashion-mnist" / "train-images-idx3-ubyte.gz"
    raw = gzip.open(path).read()
    with gzip.open(path, "wb") as f:
        f.write(raw[:-100])
    with pytest.raises(DcondError, match="truncated or malformed"):
        open_source(DataOptions("fashion-mnist", root=root)).split("train")


def test_unknown_dataset(tmp_path):
    with pytest.raises(DcondError, match="unknown dataset 'imagenet-9000'"):
        open_source(DataOptions("imagenet-9000"))


@pytest.mark.parametrize("rgb, channels", [(False, 1), (True, 3)])
def test_image_folder_channels_size_and_order(tmp_path, rgb, channels):
    root = make_image_folder(tmp_path / "f", classes=3, per_class=4, size=20, rgb=rgb, test_per_class=1)
    spec, data = load_split(DataOptions(str(root), image_size=16), "train")
    assert spec.channels == channels and spec.classes == ("class_0", "class_1", "class_2")
    images, labels = data.__getitems__(range(len(data)))
    assert images.shape == (12, channels, 16, 16) and images.dtype == torch.uint8
    assert labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4


def test_image_folder_keeps_its_own_size_and_is_named_by_the_folder_above_train(cli, tmp_path):
    make_image_folder(tmp_path / "shoes" / "train", per_class=4, size=28)
    source = open_source(DataOptions(str(tmp_path / "shoes" / "train")))
    assert source.spec.image_size == 28 and source.spec.name == "shoes"
    r = cli("train-teacher", "--data", tmp_path / "shoes", "--model", "convnet", "--model-opt", "width=4",
            "--epochs", 1, "--device", "cpu", "--out", tmp_path / "t")
    assert r.code == 0, r.stderr
    spec = open_artifact(tmp_path / "t").dataset
    assert spec.image_size == 28 and spec.name == "shoes"


def test_images_of_several_sizes_ask_for_image_size(tmp_path):
    root = make_image_folder(tmp_path / "mixed", per_class=2, size=20)
    make_image_folder(tmp_path / "other", classes=1, per_class=1, size=24)
    (tmp_path / "other" / "class_0" / "0.png").rename(root / "class_2" / "big.png")
    with pytest.raises(DcondError, match=r"not all of one square size \(20×20 \(0.png\), 24×24 \(big.png\)\): "
                                         "pass --image-size"):
        open_source(DataOptions(str(root)))
    assert open_source(DataOptions(str(root), image_size=16)).spec.image_size == 16


def test_image_folder_with_train_and_val_splits(tmp_path):
    make_image_folder(tmp_path / "d" / "train", per_class=4)
    make_image_folder(tmp_path / "d" / "val", per_class=2)
    source = open_source(DataOptions(str(tmp_path / "d"), image_size=12))
    assert source.eval_split == "val" and len(source.split("train")) == 12 and len(source.split("val")) == 6
    assert "holdout" not in source.spec.source


@pytest.mark.parametrize("layout", ["flat", "train-only"])
def test_a_folder_without_test_split_holds_out_a_recorded_balanced_share(tmp_path, layout):
    root = make_image_folder(tmp_path / "d" / ("train" if layout == "train-only" else ""), per_class=10)
    source = open_source(DataOptions(str(tmp_path / "d"), image_size=12, holdout=0.2))
    train, held = source.split("train"), source.split(source.eval_split)
    assert source.eval_split == "holdout" and torch.bincount(held.labels).tolist() == [2, 2, 2]
    assert len(train) == 24 and not set(train.files) & set(held.files)
    record = source.spec.source["holdout"]
    assert record["fraction"] == 0.2 and record["count"] == 6
    again = open_source(DataOptions(str(tmp_path / "d"), image_size=12, holdout=0.2))
    assert again.split("holdout").files == held.files and again.spec == source.spec
    (root / "class_0" / "extra.png").write_bytes((root / "class_0" / "0.png").read_bytes())
    changed = open_source(DataOptions(str(tmp_path / "d"), image_size=12, holdout=0.2))
    with pytest.raises(DcondError, match="the data changed, so the holdout split may hold images"):
        check_same_split(source.spec, changed.spec)


def test_reopening_a_folder_for_its_artifact_keeps_the_recorded_normalisation_without_decoding(tiny_folder,
                                                                                               monkeypatch):
    import dcond.data.folder as folder

    opts = DataOptions(str(tiny_folder), image_size=12)
    spec, _ = load_split(opts, "train")
    decoded = []
    monkeypatch.setattr(folder, "decode_image", lambda *a: decoded.append(a) or torch.zeros(1, 12, 12))
    reopened_opts, source = reopen(DataOptions(data=""), spec)
    assert decoded == [] and source.spec == spec and reopened_opts.data == str(tiny_folder.resolve())
    open_source(opts)  # opened afresh: the normalisation is estimated on (here all 24) training images
    assert len(decoded) == 24


def framed(path, side: int, frame: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    framed_image(side, frame).save(path)


def test_decoding_resizes_the_shorter_side_and_keeps_the_central_square_as_the_scripts_test(tmp_path):
    framed(tmp_path / "f.png", 32, 4)
    assert decode_image(tmp_path / "f.png", 1, 24, crop=0.75).max() == 0  # the frame is the outer eighth of a side
    assert decode_image(tmp_path / "f.png", 1, 24)[0, 0].min() == 255
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 41, 3), dtype=np.uint8))
    photo.save(tmp_path / "p.png")
    for crop, test_view in ((1.0, T.Compose([T.Resize(24), T.CenterCrop(24)])),
                            (0.75, T.Compose([T.Resize(32), T.CenterCrop(24)]))):  # ImageNet's is 256 -> 224
        assert torch.equal(decode_image(tmp_path / "p.png", 3, 24, crop=crop), T.PILToTensor()(test_view(photo)))


@pytest.mark.parametrize("size, crop", [(64, 1.0), (128, 224 / 256)])
def test_imagenet_shaped_data_is_measured_on_the_centre_of_its_test_and_validation_images(tmp_path, size, crop):
    for split in ("train", "test"):
        for c in range(2):
            for i in range(5):
                framed(tmp_path / "d" / split / f"class_{c}" / f"{i}.png", size, size // 20)
    opts = DataOptions(str(tmp_path / "d"))
    _, train = load_split(opts, "train")
    spec, split, test = load_eval_split(opts)
    assert split == "test" and test.crop == crop and train.crop == 1.0 and test.take(torch.tensor([1])).crop == crop
    assert train.__getitems__(range(10))[0][:, :, 0].min() == 255
    assert (test.__getitems__(range(10))[0][:, :, 0].min() == 255) == (crop == 1.0)  # the frame is cut off
    _, _, validation = load_eval_split(DataOptions(str(tmp_path / "d"), validation=0.2))
    assert validation.crop == crop
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(size * size, 2))
    assert evaluate(model, test, spec, torch.device("cpu"))["centre_crop"] == crop


def _decode_in_a_forked_child(files, expected, done):
    torch.set_num_threads(1)  # as a DataLoader worker does: the parent's OpenMP threads are not in the child
    done.value = torch.equal(files.__getitems__(range(len(files)))[0], expected)


@pytest.mark.parametrize("repeat", range(3))  # threads: what can race is repeated
def test_a_batch_of_files_is_decoded_by_threads_in_order_and_fails_on_a_damaged_file(tiny_folder, monkeypatch,
                                                                                    repeat):
    monkeypatch.setattr(data_images, "DECODE_THREADS", 2)
    monkeypatch.setattr(data_images, "_decoder_pools", {})
    _, train = load_split(DataOptions(str(tiny_folder), image_size=12), "train")
    serial = torch.stack([decode_image(f, 1, 12) for f in train.files])
    batch, labels = train.__getitems__(range(len(train)))
    assert data_images._decoder_pools and torch.equal(batch, serial) and torch.equal(labels, train.labels)
    # a child forked after the pool was made has the pool's object but none of its threads: it makes its own
    done = multiprocessing.get_context("fork").Value("b", False)
    child = multiprocessing.get_context("fork").Process(target=_decode_in_a_forked_child, args=(train, serial, done),
                                                        daemon=True)  # a hung child does not hold pytest's exit
    child.start()
    child.join(60)
    assert child.exitcode == 0 and done.value
    train.files[5].write_bytes(b"not an image")
    with pytest.raises(DcondError, match=f"cannot read image {train.files[5]}"):
        train.__getitems__(range(len(train)))


@pytest.mark.parametrize("omp, threads", [("3", 3), ("32", 8), ("1,1", 1), ("", None), ("many", None)])
def test_decoding_threads_are_the_process_share_of_the_cores(monkeypatch, omp, threads):
    monkeypatch.setenv("OMP_NUM_THREADS", omp)  # torchrun sets 1 for each of several processes
    assert decode_threads() == (threads or min(8, available_cores()))


def test_no_test_split_and_no_holdout_is_refused(tmp_path):
    root = make_image_folder(tmp_path / "d")
    with pytest.raises(DcondError, match="nothing to measure a model on that it was not trained on"):
        load_eval_split(DataOptions(str(root), image_size=12, holdout=0))


def test_malformed_image_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DcondError, match="no class folders"):
        open_source(DataOptions(str(tmp_path / "empty")))
    (tmp_path / "noimg" / "cat").mkdir(parents=True)
    with pytest.raises(DcondError, match="holds no images"):
        open_source(DataOptions(str(tmp_path / "noimg")))
    root = make_image_folder(tmp_path / "broken", per_class=2)
    (root / "class_1" / "0.png").write_bytes(b"not a png")
    with pytest.raises(DcondError, match="cannot read image"):
        open_source(DataOptions(str(root))).split("train").__getitems__(range(6))


def test_balanced_subset_takes_each_class_evenly(tiny_folder):
    spec, data = load_split(DataOptions(str(tiny_folder), image_size=12, subset=7), "train")
    assert torch.bincount(data.labels).tolist() == [3, 2, 2]
    assert len(balanced_subset(data, 100, 3)) == 7


def test_input_conversion_round_trips(tiny_folder):
    spec, data = load_split(DataOptions(str(tiny_folder), image_size=12), "train")
    images, _ = data.__getitems__(range(4))
    assert torch.equal(to_uint8(to_input(images, spec), spec), images)


def test_random_shift_translates_each_image_within_its_padding_and_fills_black():
    x = (torch.arange(36, dtype=torch.uint8) + 1).view(1, 1, 6, 6).repeat(40, 1, 1, 1)  # no pixel is black
    out = random_shift(x, 2, torch.Generator().manual_seed(0))
    framed = F.pad(x[0, 0], (2,) * 4)  # the image in a black frame: each shift is a 6×6 window of it
    offsets = [next((i, j) for i in range(5) for j in range(5) if torch.equal(o[0], framed[i:i + 6, j:j + 6]))
               for o in out]
    assert len(set(offsets)) > 10  # 40 images, 25 possible offsets: each image drew its own


def test_shuffled_strips_swap_halves_at_two_each_image_its_own_and_keep_an_uneven_remainder():
    x = torch.arange(36, dtype=torch.uint8).view(1, 1, 6, 6).repeat(40, 1, 1, 1)
    out = shuffle_strips(x, 2, torch.Generator().manual_seed(0))
    swaps = [lambda i: i, lambda i: i.roll(3, 2), lambda i: i.roll(3, 1), lambda i: i.roll((3, 3), (1, 2))]
    drawn = [next(k for k, swap in enumerate(swaps) if torch.equal(o, swap(x[0]))) for o in out]
    assert sorted(set(drawn)) == [0, 1, 2, 3]  # left-right and top-bottom swapped or not, per image
    small = x[0, :, :5, :5]  # strips of 2 and 3 pixels: the last keeps the remainder
    orders = [[0, 1, 2, 3, 4], [2, 3, 4, 0, 1]]
    uneven = shuffle_strips(x[:, :, :5, :5], 2, torch.Generator().manual_seed(1))
    drawn = [next((r[0], c[0]) for r in orders for c in orders if torch.equal(o, small[:, r][:, :, c])) for o in uneven]
    assert len(set(drawn)) == 4
    assert torch.equal(shuffle_strips(x, 1, torch.Generator()), x)


def test_random_crop_flip_moves_pixels_but_keeps_shape():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.uint8).view(2, 1, 6, 6)
    gen = torch.Generator().manual_seed(0)
    outs = [random_crop_flip(x, 2, gen) for _ in range(5)]
    assert all(o.shape == x.shape and o.dtype == torch.uint8 for o in outs)
    assert any(not torch.equal(o, x) for o in outs)
    flipped_only = random_crop_flip(x, 0, torch.Generator().manual_seed(1))
    assert all(torch.equal(f, i) or torch.equal(f, i.flip(2)) for f, i in zip(flipped_only, x))
