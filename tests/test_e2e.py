"""End-to-end runs of the installed `dcond` command on a Fashion-MNIST subset, as a user would type them."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
DCOND = Path(sys.executable).parent / "dcond"


def sh(cmd: str, cwd: Path) -> str:
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True, cwd=cwd)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_teacher_on_fashion_mnist_subset(fmnist, tmp_path):
    out = sh(f"{DCOND} train-teacher --subset 3000 --epochs 2 --model-opt width=16 "
             f"| {DCOND} evaluate --subset 2000 --json", tmp_path)
    result = json.loads(out)
    teacher = tmp_path / result["path"]
    assert result["metrics"]["top1"] > 0.7 and result["metrics"]["samples"] == 2000
    copy = shutil.copytree(teacher, tmp_path / "colleague" / "teacher")
    assert "intact" in sh(f"{DCOND} verify {copy}", tmp_path)
    summary = json.loads(sh(f"{DCOND} inspect {copy} --json", tmp_path))
    assert summary["dataset"]["name"] == "fashion-mnist" and summary["dataset"]["classes"] == 10
    assert {"fashion-mnist:test", "fashion-mnist:test:subset2000"} <= set(summary["metrics"])
