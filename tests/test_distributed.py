"""Every stage under PyTorch's own launcher: `torchrun --nproc-per-node 2 -m dcond …` on CPU with gloo."""

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY_MODEL
from dcond.artifact import open_artifact, verify

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent


def run(*args, ranks: int = 2, script: str | None = None, cwd: Path) -> subprocess.CompletedProcess:
    target = [script] if script else ["-m", "dcond"]
    launcher = [str(BIN / "torchrun"), "--standalone", f"--nproc-per-node={ranks}"] if ranks > 1 else \
        [sys.executable]
    return subprocess.run([*launcher, *target, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def content(path: Path) -> dict:
    """The files and checksums that make up an artifact's content (the card records the command line)."""
    art = open_artifact(path)
    return {"digest": art.digest, "files": {k: v for k, v in art.files.items() if k != "README.md"}}


@pytest.mark.parametrize("stage", [
    ["select", "--method", "herding", "--ipc", 2],
    ["synthesize", "--method", "classwise", "--ipc", 2, "--iterations", 3],
    ["synthesize", "--method", "sre2l", "--ipc", 3, "--iterations", 3, "--per-unit", 1],
])
def test_two_ranks_make_the_same_artifact_as_one(stage, tiny_teacher, tmp_path):
    one = run(*stage, tiny_teacher, "--out", tmp_path / "one", ranks=1, cwd=tmp_path)
    two = run(*stage, tiny_teacher, "--out", tmp_path / "two", cwd=tmp_path)
    assert one.returncode == 0 and two.returncode == 0, two.stderr
    assert two.stdout.strip() == str(tmp_path / "two")  # one line: rank 0 reports
    assert content(tmp_path / "one") == content(tmp_path / "two") and verify(tmp_path / "two").intact


def test_two_ranks_relabel_the_same_bank(tiny_teacher, tiny_folder, tmp_path):
    args = ["relabel", tiny_folder, "--teacher", tiny_teacher, "--epochs", 3, "--batch-size", 8]
    assert run(*args, "--out", tmp_path / "one", ranks=1, cwd=tmp_path).returncode == 0
    two = run(*args, "--out", tmp_path / "two", cwd=tmp_path)
    assert two.returncode == 0, two.stderr
    assert content(tmp_path / "one") == content(tmp_path / "two")


def test_two_ranks_train_one_student_and_one_teacher(tiny_teacher, tiny_folder, tmp_path):
    labels = run("relabel", tiny_folder, "--teacher", tiny_teacher, "--epochs", 2, "--batch-size", 8,
                 "--out", tmp_path / "labels", ranks=1, cwd=tmp_path)
    assert labels.returncode == 0, labels.stderr
    student = run("train-student", tmp_path / "labels", *TINY_MODEL, "--epochs", 2, "--out", tmp_path / "s",
                  cwd=tmp_path)
    assert student.returncode == 0, student.stderr
    assert student.stdout.strip() == str(tmp_path / "s") and open_artifact(tmp_path / "s").kind == "model"
    teacher = run("train-teacher", "--data", tiny_folder, "--image-size", 12, "--epochs", 1, "--batch-size", 4,
                  *TINY_MODEL, "--out", tmp_path / "t", cwd=tmp_path)
    assert teacher.returncode == 0 and verify(tmp_path / "t").intact, teacher.stderr
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_failing_rank_fails_the_run_and_leaves_work_to_resume(tiny_teacher, tmp_path):
    args = ["select", tiny_teacher, "--method", "random", "--ipc", 2, "--out", tmp_path / "s"]
    failed = run(*args, script=str(Path(__file__).parent / "fail_on_rank.py"), cwd=tmp_path)
    assert failed.returncode != 0 and "[rank 1] error: simulated failure on this rank" in failed.stderr
    assert not (tmp_path / "s").exists()
    resumed = run(*args, ranks=1, cwd=tmp_path)
    assert resumed.returncode == 0 and "resuming" in resumed.stderr and verify(tmp_path / "s").intact
