"""What differs on a GPU (skipped without one): banks and students on CUDA against the CPU, bf16 autocast against
fp32, channels-last checkpoints, seeded reruns, and torchrun with NCCL on one GPU.

Tolerances, as relative errors ‖a − b‖ / ‖b‖: a CUDA bank against the CPU's 5e-3 (fp16 storage, TF32
convolutions); bf16 autocast against fp32 logits 3e-2 (bf16 keeps 8 bits of mantissa)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import CUDA_AVAILABLE, HAS_CUDA, TINY_MODEL
from dcond.artifact import open_artifact, verify
from dcond.bank import epoch_file, open_bank
from dcond.data import DataOptions, load_all, to_input
from dcond.data.augment import apply_views
from dcond.data.folder import ArtifactImages
from dcond.models import load_model
from dcond.stages.evaluate import EvalConfig, evaluate_artifact
from dcond.stages.relabel import RelabelConfig, relabel
from dcond.stages.student import StudentConfig, student_loss, train_student

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")]
TINY = {"width": 8, "depth": 2}
VIEW_KEYS = ("order", "boxes", "flips", "mix_perm", "mix_lam", "mix_box")


@pytest.fixture(autouse=True)
def gpu_visible(monkeypatch):
    """Lift the suite's CPU pinning (conftest) for these tests and their subprocesses."""
    monkeypatch.setattr(torch.cuda, "is_available", CUDA_AVAILABLE)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def bank_tensors(labels: Path, epoch: int) -> dict[str, torch.Tensor]:
    return open_artifact(labels).tensors(epoch_file(epoch))


def relabel_on(device: str, amp: bool, images: Path, teacher: Path, out: Path) -> Path:
    return relabel(images, [teacher], RelabelConfig(epochs=2, batch_size=8, device=device, amp=amp), out)


@pytest.mark.parametrize("amp, tolerance", [(False, 5e-3), (True, 3e-2)])
def test_a_cuda_bank_equals_the_cpu_bank_within_tolerance(amp, tolerance, shared_teacher_images, tmp_path):
    teacher, images = shared_teacher_images
    cpu = relabel_on("cpu", True, images, teacher, tmp_path / "cpu")
    gpu = relabel_on("cuda", amp, images, teacher, tmp_path / "gpu")
    for e in range(2):
        a, b = bank_tensors(gpu, e), bank_tensors(cpu, e)
        for key in VIEW_KEYS:  # the views are drawn on the host from the seed: the same on any device
            assert torch.equal(a[key], b[key]), key
        assert rel_err(a["logits"], b["logits"]) < tolerance
        assert (a["logits"].argmax(1) == b["logits"].argmax(1)).float().mean() > 0.9


def bank_loss(model_dir: Path, labels: Path) -> float:
    """The student's mean KL to the teacher over the bank's first epoch, computed in fp32 on the CPU."""
    model = load_model(open_artifact(model_dir)).eval()
    art = open_artifact(labels)
    bank = open_bank(art)
    data = load_all(ArtifactImages(labels).split("train"))
    images = to_input(data.images, art.dataset)
    cfg = StudentConfig()
    with torch.no_grad():
        losses = [student_loss(cfg, model(apply_views(images, b.views)), b.logits, None, bank.info["temperature"])
                  for b in bank.epoch(0)]
    return float(torch.stack(losses).mean())


@pytest.fixture
def cpu_bank(shared_teacher_images, tmp_path) -> Path:
    teacher, images = shared_teacher_images
    return relabel(images, [teacher], RelabelConfig(epochs=6, batch_size=8, device="cpu"), tmp_path / "labels")


def student_on(bank: Path, out: Path, **settings) -> Path:
    cfg = StudentConfig(**({"model_options": TINY, "epochs": 6, "lr": 1e-2, "device": "cuda"} | settings))
    return train_student(bank, cfg, out)


def test_bf16_student_training_matches_fp32(cpu_bank, tmp_path):
    untrained = bank_loss(student_on(cpu_bank, tmp_path / "s0", lr=1e-12), cpu_bank)
    amp = bank_loss(student_on(cpu_bank, tmp_path / "amp", amp=True), cpu_bank)
    fp32 = bank_loss(student_on(cpu_bank, tmp_path / "fp32", amp=False), cpu_bank)
    assert amp < 0.7 * untrained and fp32 < 0.7 * untrained  # both learned
    assert abs(amp - fp32) < 0.1 * fp32


def test_seeded_student_on_cuda_is_reproducible_run_to_run(cpu_bank, tmp_path):
    a, b = (open_artifact(student_on(cpu_bank, tmp_path / name, seed=3)) for name in "ab")
    wa, wb = a.tensors(a.section["weights"]), b.tensors(b.section["weights"])
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=1e-4, atol=1e-5, msg=key)
    assert a.metrics == b.metrics


def test_channels_last_teacher_and_student_checkpoint_on_cuda(cli, tiny_folder, tmp_path):
    """On CUDA every model runs channels-last: the checkpoints written every epoch and the weights must save."""
    r = cli("train-teacher", "--data", tiny_folder, "--image-size", 12, "--epochs", 2, "--batch-size", 8,
            *TINY_MODEL, "--device", "cuda", "--out", tmp_path / "teacher")
    assert r.code == 0, r.stderr
    teacher = Path(r.stdout.strip())
    r = cli("select", teacher, "--method", "random", "--ipc", 4, "--relabel-epochs", 3, "--device", "cuda",
            "--out", tmp_path / "labels")
    assert r.code == 0, r.stderr
    r = cli("train-student", tmp_path / "labels", *TINY_MODEL, "--epochs", 3, "--ema", 0.9, "--device", "cuda",
            "--out", tmp_path / "student")
    assert r.code == 0, r.stderr
    for art in (teacher, tmp_path / "labels", tmp_path / "student"):
        assert verify(art).intact
    gpu_top1 = open_artifact(tmp_path / "student").metrics["tiny:test"]["top1"]
    cpu_top1 = evaluate_artifact(tmp_path / "student", DataOptions(data=""), EvalConfig(device="cpu"))["top1"]
    assert abs(cpu_top1 - gpu_top1) <= 1 / 12 + 1e-9  # bf16 on the GPU may flip one of the 12 test images


def torchrun(*args, procs: int, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}", "-m", "dcond",
           *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=300,
                          env=os.environ | {"OMP_NUM_THREADS": "1"})


def test_torchrun_with_nccl_on_one_gpu(shared_teacher_images, tmp_path):
    teacher, images = shared_teacher_images
    r = torchrun("relabel", images, "--teacher", teacher, "--epochs", 2, "--batch-size", 8, "--device", "cuda",
                 "--out", tmp_path / "labels", procs=1, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    alone = relabel_on("cuda", True, images, teacher, tmp_path / "alone")
    for e in range(2):
        a, b = bank_tensors(tmp_path / "labels", e), bank_tensors(alone, e)
        assert torch.equal(a["order"], b["order"]) and rel_err(a["logits"], b["logits"]) < 1e-2
    r = torchrun("train-student", tmp_path / "labels", *TINY_MODEL, "--epochs", 2, "--device", "cuda",
                 "--out", tmp_path / "student", procs=1, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert verify(tmp_path / "student").intact


@pytest.mark.skipif(HAS_CUDA and torch.cuda.device_count() > 1, reason="needs a machine with one GPU")
def test_more_processes_than_gpus_is_one_clear_error(shared_teacher_images, tmp_path):
    teacher, images = shared_teacher_images
    r = torchrun("relabel", images, "--teacher", teacher, "--epochs", 2, "--device", "cuda",
                 "--out", tmp_path / "labels", procs=2, cwd=tmp_path)
    assert r.returncode != 0
    assert "more processes on this machine than it has GPUs" in r.stderr
    assert not (tmp_path / "labels").exists()
