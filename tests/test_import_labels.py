import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import BatchSampler, RandomSampler

from dcond.artifact import open_artifact
from dcond.bank import open_bank
from dcond.data import load_all, to_input
from dcond.data.folder import ArtifactImages
from dcond.engine import ensemble_logits
from dcond.errors import DcondError
from dcond.models import load_model
from dcond.stages.compress import CompressConfig, compress_labels
from dcond.stages.import_labels import ImportConfig, import_labels
from dcond.stages.student import Replay, StudentConfig, train_student

SIZE, EPOCHS, BATCH = 12, 3, 10  # 24 images: batches of 10, 10 and 4
CUT = (2, 5, 9, 8)  # rows 2…9, columns 5…8: a tall box, so a swap of rows and columns would show
CPU = torch.device("cpu")


def crop(image, top, left, height, width):
    """The box (in pixels) resized to SIZE × SIZE: a bilinear sample at the centre of each output pixel."""
    ys, xs = ((start + (torch.arange(SIZE) + 0.5) * side / SIZE) / SIZE * 2 - 1 for start, side in
              ((top, height), (left, width)))
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1)[None]
    return F.grid_sample(image[None], grid, mode="bilinear", padding_mode="border", align_corners=False)[0]


def write_sre2l_bank(folder, images, teacher):
    """A bank as the SRe2L relabel script writes one: batches from a RandomSampler seeded 42; views cropped by
    (top, left, height, width), flipped, then mixed (epoch 0 CutMix on rows r1:r2 and columns c1:c2, epoch 1
    Mixup, epoch 2 none); one torch.save'd list per batch, the CutMix box as numpy integers."""
    gen = torch.Generator().manual_seed(0)
    batches = BatchSampler(RandomSampler(range(len(images)), generator=torch.Generator().manual_seed(42)), BATCH,
                           drop_last=False)
    for e in range(EPOCHS):
        (folder / f"epoch_{e}").mkdir(parents=True)
        for b, idx in enumerate(batches):
            n = len(idx)
            h, w = torch.randint(4, SIZE + 1, (2, n), generator=gen)
            top, left = ((torch.rand(n, generator=gen) * (SIZE - side + 1)).long() for side in (h, w))
            views = torch.stack([crop(images[i], *box) for i, *box in zip(idx, top, left, h, w)])
            flips = torch.rand(n, generator=gen) < 0.5
            views = torch.where(flips[:, None, None, None], views.flip(3), views)
            perm, lam, cut = torch.randperm(n, generator=gen), 0.6, None
            if e == 0:
                r1, c1, r2, c2 = CUT
                views[:, :, r1:r2, c1:c2] = views[perm, :, r1:r2, c1:c2]
                cut = [np.int64(v) for v in CUT]
            elif e == 1:
                views = lam * views + (1 - lam) * views[perm]
            else:
                perm, lam = None, None
            coords = torch.stack([top / SIZE, left / SIZE, h / SIZE, w / SIZE], 1)
            with torch.no_grad():
                logits = teacher(views).half()
            torch.save([coords, flips, perm, lam, cut, logits], folder / f"epoch_{e}" / f"batch_{b}.tar")


@pytest.fixture
def sre2l_bank(shared_teacher_images, tmp_path):
    """A SRe2L bank of the shared images, labelled by the shared teacher; returns its folder."""
    teacher, images = shared_teacher_images
    data = load_all(ArtifactImages(images).split("train"))
    write_sre2l_bank(tmp_path / "fkd", to_input(data.images, open_artifact(images).dataset),
                     load_model(open_artifact(teacher)).eval())
    return tmp_path / "fkd"


def test_imported_sre2l_bank_replays_the_views_it_was_made_on(sre2l_bank, shared_teacher_images, tmp_path):
    teacher_path, images_path = shared_teacher_images
    data = load_all(ArtifactImages(images_path).split("train"))
    images = to_input(data.images, open_artifact(images_path).dataset)
    teacher = load_model(open_artifact(teacher_path)).eval()
    out = import_labels(sre2l_bank, images_path, ImportConfig(input_size=SIZE), tmp_path / "imported")
    info = open_artifact(out).section["bank"]
    assert (info["encoding"], info["epochs"], info["batch_size"], info["num_images"], info["views"]) == \
        ("dense", EPOCHS, BATCH, 24, None)
    replay = Replay(open_bank(open_artifact(out)), images, data.labels, StudentConfig(epochs=EPOCHS), CPU)
    for e in range(EPOCHS):
        for x, stored, _ in replay.epoch(e):
            torch.testing.assert_close(ensemble_logits([teacher], x, CPU), stored, atol=2e-2, rtol=2e-3)
    small = compress_labels(out, CompressConfig(method="prune+topk", keep=0.5, k=1), tmp_path / "small")
    assert (small / "bank/views-00000.safetensors").exists()  # no seed draws an imported bank's views again
    train_student(small, StudentConfig(model_options={"width": 8, "depth": 2}, epochs=2, evaluate=False),
                  tmp_path / "student")


def test_cli_import_labels(cli, sre2l_bank, shared_teacher_images, tmp_path):
    _, images = shared_teacher_images
    args = ["import-labels", sre2l_bank, "--images", images, "--temperature", 20, "--dtype", "float32"]
    r = cli(*args, "--input-size", SIZE, "--out", tmp_path / "l")
    assert r.code == 0 and r.stdout.strip() == str(tmp_path / "l"), r.stderr
    info = open_artifact(tmp_path / "l").section["bank"]
    assert (info["temperature"], info["dtype"], info["imported"]["input_size"]) == (20, "float32", SIZE)
    r = cli(*args, "--out", tmp_path / "m")  # --input-size is required: it gives the CutMix box its unit
    assert r.code == 2 and "--input-size" in r.stderr and not (tmp_path / "m").exists()


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_import_refuses_pickled_code_and_broken_layouts(shared_teacher_images, tmp_path):
    _, images = shared_teacher_images
    (tmp_path / "evil/epoch_0").mkdir(parents=True)
    torch.save([RunsCode(tmp_path / "ran")], tmp_path / "evil/epoch_0/batch_0.tar")
    (tmp_path / "gap/epoch_1").mkdir(parents=True)
    for folder, error in (("evil", "not a readable SRe2L batch file"), ("gap", "without gaps")):
        with pytest.raises(DcondError, match=error):
            import_labels(tmp_path / folder, images, ImportConfig(input_size=SIZE), tmp_path / "out")
    assert not (tmp_path / "ran").exists() and not (tmp_path / "out").exists()
