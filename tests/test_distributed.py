"""Every stage under PyTorch's own launcher: `torchrun --nproc-per-node 2 -m dcond …` on CPU with gloo.

Ranks share one output folder, so a stage whose ranks both write a file races; such races show up under
repetition: `pytest --stress 20 tests/test_distributed.py` runs every two-rank stage 20 times."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY_MODEL, content
from dcond.artifact import open_artifact, verify
from dcond.stages.relabel import RelabelConfig, relabel
from test_import_labels import write_sre2l_bank

pytestmark = pytest.mark.e2e


def run(*args, ranks: int = 2, script: str | None = None, cwd: Path) -> subprocess.CompletedProcess:
    target = [script] if script else ["-m", "dcond"]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}"] \
        if ranks > 1 else [sys.executable]
    # one intra-op thread, as torchrun gives each rank: sums split over other thread counts round differently
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    return subprocess.run([*launcher, *target, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=300, env=env)


def labels_of(images: Path, teacher: Path, out: Path) -> Path:
    return relabel(images, [teacher], RelabelConfig(epochs=3, batch_size=8), out)


def sre2l_folder(images: Path, teacher: Path, out: Path) -> Path:
    from dcond.data import load_all, to_input
    from dcond.data.folder import ArtifactImages
    from dcond.models import load_model

    data = load_all(ArtifactImages(images).split("train"))
    write_sre2l_bank(out, to_input(data.images, open_artifact(images).dataset),
                     load_model(open_artifact(teacher)).eval())
    return out


# each stage's command line without its input; TEACHER and IMAGES stand for the shared tiny artifacts
STAGES = {
    "select": ["select", "--method", "herding", "--ipc", 2],
    "synthesize-classwise": ["synthesize", "--method", "classwise", "--ipc", 2, "--iterations", 3],
    "synthesize-units": ["synthesize", "--method", "sre2l", "--ipc", 3, "--iterations", 3, "--per-unit", 1],
    "synthesize-generative": ["synthesize", "--method", "generative", "--iterations", 4, "--checkpoint-every", 2,
                              "--gen-width", 8, "--latent-dim", 8, "--gen-batch", 4, "--real-batch", 2],
    "relabel": ["relabel", "--teacher", "TEACHER", "--epochs", 3, "--batch-size", 8],
    "relabel-folder": ["relabel", "--teacher", "TEACHER", "--epochs", 2, "--batch-size", 8],
    "compress-labels": ["compress-labels", "--method", "prune+topk", "--keep", 0.5],
    "import-labels": ["import-labels", "--images", "IMAGES", "--input-size", 12],
}


def stage_input(stage: str, teacher: Path, images: Path, tmp_path: Path) -> Path:
    if stage == "relabel":
        return images
    if stage == "relabel-folder":
        return teacher.parent / "tiny" / "train"
    if stage == "compress-labels":
        return labels_of(images, teacher, tmp_path / "labels")
    if stage == "import-labels":
        return sre2l_folder(images, teacher, tmp_path / "fkd")
    return teacher


@pytest.mark.parametrize("stage", STAGES)
def test_two_ranks_make_the_same_artifact_as_one_every_time(stage, shared_teacher_images, stress, tmp_path):
    teacher, images = shared_teacher_images
    named = {"TEACHER": teacher, "IMAGES": images}
    command, *options = STAGES[stage]
    args = [command, stage_input(stage, teacher, images, tmp_path), *(named.get(a, a) for a in options)]
    one = run(*args, "--out", tmp_path / "one", ranks=1, cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    for i in range(stress):
        two = run(*args, "--out", tmp_path / f"two{i}", cwd=tmp_path)
        assert two.returncode == 0, f"run {i + 1} of {stress}: {two.stderr}"
        assert two.stdout.strip() == str(tmp_path / f"two{i}")  # one line: rank 0 reports
        assert content(tmp_path / f"two{i}") == content(tmp_path / "one") and verify(tmp_path / f"two{i}").intact
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_two_ranks_train_one_student_and_one_teacher(shared_teacher_images, stress, tmp_path):
    teacher, images = shared_teacher_images
    labels = labels_of(images, teacher, tmp_path / "labels")
    for i in range(stress):
        student = run("train-student", labels, *TINY_MODEL, "--epochs", 2, "--out", tmp_path / f"s{i}",
                      cwd=tmp_path)
        assert student.returncode == 0, student.stderr
        assert student.stdout.strip() == str(tmp_path / f"s{i}") and verify(tmp_path / f"s{i}").intact
        trained = run("train-teacher", "--data", teacher.parent / "tiny", "--image-size", 12, "--epochs", 1,
                      "--batch-size", 4, *TINY_MODEL, "--out", tmp_path / f"t{i}", cwd=tmp_path)
        assert trained.returncode == 0 and verify(tmp_path / f"t{i}").intact, trained.stderr
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_two_ranks_share_the_students_of_an_evaluation_and_agree_with_one(shared_teacher_images, stress, tmp_path):
    teacher, images = shared_teacher_images
    labels = labels_of(images, teacher, tmp_path / "labels")
    args = ["evaluate", labels, "--models", "convnet,tv:resnet18", "--seeds", 2, "--epochs", 1, "--json"]
    one = run(*args, ranks=1, cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    for i in range(stress):
        two = run(*args, cwd=tmp_path)
        assert two.returncode == 0, f"run {i + 1} of {stress}: {two.stderr}"
        assert json.loads(two.stdout)["students"] == json.loads(one.stdout)["students"]  # one line, rank 0's
        assert two.stderr.count("[rank 1] student epochs: 1/1") == 2  # rank 1 trained two of the four students
        assert two.stderr.count("students (last epoch)") == 1  # and rank 0 alone prints the table
    assert [k for k in open_artifact(labels).metrics if k.startswith("students:")] == \
        [f"students:{m}:{r['protocol_digest'][:12]}" for m, r in json.loads(one.stdout)["students"].items()]
    assert verify(labels).intact


def test_a_failing_rank_fails_the_run_and_leaves_work_to_resume(tiny_teacher, tmp_path):
    args = ["select", tiny_teacher, "--method", "random", "--ipc", 2, "--out", tmp_path / "s"]
    failed = run(*args, script=str(Path(__file__).parent / "fail_on_rank.py"), cwd=tmp_path)
    assert failed.returncode != 0 and "[rank 1] error: simulated failure on this rank" in failed.stderr
    assert not (tmp_path / "s").exists()
    resumed = run(*args, ranks=1, cwd=tmp_path)
    assert resumed.returncode == 0 and "resuming" in resumed.stderr and verify(tmp_path / "s").intact
