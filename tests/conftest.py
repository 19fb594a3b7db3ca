import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dcond.artifact import ArtifactWriter, content_digest, open_artifact, save_images, sha256_file
from dcond.cli import main
from dcond.data import DataOptions, load_all, load_split
from dcond.stages.teacher import TeacherConfig, train_teacher

FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
TINY_MODEL = ["--model-opt", "width=8", "--model-opt", "depth=2"]


def pytest_addoption(parser):
    parser.addoption("--stress", type=int, default=1, metavar="N",
                     help="repeat each test that looks for races between processes N times (torchrun stages)")


HAS_CUDA = torch.cuda.is_available()
CUDA_AVAILABLE = torch.cuda.is_available


@pytest.fixture(scope="session", autouse=True)
def cpu_unless_marked_cuda():
    """Tests not marked `cuda` assert CPU behaviour bit for bit (resumed equals straight, two ranks equal one), so
    on a GPU machine they run on its CPU, subprocesses too; the `cuda` tests (test_cuda.py) lift this and check what
    differs on the GPU, with tolerances."""
    patch = pytest.MonkeyPatch()
    patch.setattr(torch.cuda, "is_available", lambda: False)
    patch.setenv("CUDA_VISIBLE_DEVICES", "")
    yield
    patch.undo()


@pytest.fixture
def stress(request) -> int:
    """How many times a race-hunting test repeats its runs: a race shows up under repetition, not in one run."""
    return request.config.getoption("--stress")


@pytest.fixture(autouse=True)
def one_thread():
    """The tests' networks and batches are tiny: a second intra-op thread only adds waiting, which on a shared
    2-core machine made them several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_image_folder(root: Path, classes: int = 3, per_class: int = 8, size: int = 12, rgb: bool = False,
                      seed: int = 0, test_per_class: int = 0) -> Path:
    """Class c is a bright square at a class-specific place plus noise: learnable by a tiny network. With
    `test_per_class`, root/train/<class> and root/test/<class> (drawn with another seed), else root/<class>."""
    if test_per_class:
        make_image_folder(root / "train", classes, per_class, size, rgb, seed)
        make_image_folder(root / "test", classes, test_per_class, size, rgb, seed + 1000)
        return root
    rng = np.random.default_rng(seed)
    for c in range(classes):
        folder = root / f"class_{c}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 60, (size, size, 3 if rgb else 1), dtype=np.uint8)
            q = c * size // classes
            img[q: q + size // classes, :, :] = 220
            Image.fromarray(img if rgb else img[..., 0]).save(folder / f"{i}.png")
    return root


def framed_image(side: int, frame: int) -> Image.Image:
    """A black grayscale square in a white frame `frame` pixels wide: whether a view keeps the frame shows how much
    of the image's edge it cuts off."""
    img = np.full((side, side), 255, np.uint8)
    img[frame:-frame, frame:-frame] = 0
    return Image.fromarray(img)


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    """24 training images (root/train) and 12 test images (root/test) of 3 classes."""
    return make_image_folder(tmp_path / "tiny", test_per_class=4)


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys, monkeypatch, tmp_path):
    """Run `dcond ARGS` in-process, in a scratch working directory, with the given text on stdin."""
    monkeypatch.chdir(tmp_path)

    def run(*args: str, stdin: str = "") -> Result:
        monkeypatch.setattr(sys, "argv", ["dcond", *map(str, args)])
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = 0
        try:
            main()
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


@pytest.fixture
def tiny_teacher(cli, tiny_folder, tmp_path) -> Path:
    r = cli("train-teacher", "--data", tiny_folder, "--image-size", 12, "--epochs", 2, "--batch-size", 8,
            *TINY_MODEL, "--out", tmp_path / "teacher")
    assert r.code == 0, r.stderr
    return Path(r.stdout.strip())


def images_artifact_of(folder: Path, teacher: Path, out: Path) -> Path:
    """An images artifact of a tiny folder's images, as synthesize or select would write one."""
    _, data = load_split(DataOptions(str(folder), image_size=12), "train")
    data = load_all(data)
    with ArtifactWriter(out, "images", open_artifact(teacher).dataset, stage="test", config={}) as w:
        save_images(w, data.images, data.labels)
    return w.out


@pytest.fixture
def images_artifact(tiny_teacher, tiny_folder, tmp_path) -> Path:
    return images_artifact_of(tiny_folder, tiny_teacher, tmp_path / "images")


@pytest.fixture(scope="session")
def shared_teacher_images(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny teacher and an images artifact of its folder, made once for the tests that only read them."""
    root = tmp_path_factory.mktemp("shared")
    folder = make_image_folder(root / "tiny", test_per_class=4)
    cfg = TeacherConfig(epochs=2, batch_size=8, model_options={"width": 8, "depth": 2})
    teacher = train_teacher(DataOptions(str(folder), image_size=12), cfg, root / "teacher")
    return teacher, images_artifact_of(folder, teacher, root / "images")


def content(path: Path) -> dict:
    """What an artifact holds: its content files with their checksums, dataset and kind section. (Its digest
    also seals when and by which command line it was made, so two runs never share it.)"""
    art = open_artifact(path)
    return {"files": {k: v for k, v in art.files.items() if k != "README.md"}, "dataset": art.manifest["dataset"],
            "section": art.section}


def reseal(root: Path) -> None:
    """Make the checksums and the digest agree with whatever the folder now holds, as someone who edits an
    artifact on purpose would: the damage then reaches the parsers instead of the checksums."""
    try:
        manifest = json.loads((root / "dcond.json").read_text())
        files = manifest["files"]
        for name in list(files):
            path = root / name
            if path.is_file():
                files[name] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
            else:
                del files[name]
        manifest["digest"] = content_digest(manifest)
    except (ValueError, KeyError, TypeError, AttributeError, OSError):
        return  # a manifest too broken to re-seal stays as it is
    (root / "dcond.json").write_text(json.dumps(manifest))


def tree(root: Path) -> dict[str, int]:
    """Every file under root with its size: to show that a failed command changed nothing."""
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def interrupt_units(monkeypatch):
    """Make image-writing stages die (as on Ctrl-C) after `n` class writes; returns a function that undoes it."""
    import dcond.units as units

    real = units.save_class_images

    def arm(n: int):
        written = []

        def write_then_die(w, c, images, start=0):
            if len(written) == n:
                raise KeyboardInterrupt
            written.append(c)
            real(w, c, images, start)

        monkeypatch.setattr(units, "save_class_images", write_then_die)
        return lambda: monkeypatch.setattr(units, "save_class_images", real)

    return arm


@pytest.fixture(scope="session")
def fmnist() -> Path:
    if not FMNIST_DIR.is_dir() and not os.environ.get("DCOND_DATA_ROOT"):
        pytest.fail("Fashion-MNIST is missing: apt-get install -y dataset-fashion-mnist (.ci/run does this)")
    return FMNIST_DIR
