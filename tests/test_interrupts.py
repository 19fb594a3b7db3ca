"""Kill a stage at a random moment (SIGKILL, SIGINT as Ctrl-C sends, or SIGTERM as a batch scheduler does), run
the same command again, and get the artifact an uninterrupted run makes, bit for bit; in between, nothing
half-written is accepted, and a stage that was told to stop leaves no work folder it cannot resume.

`pytest --stress 20 tests/test_interrupts.py` kills every stage 20 times at different moments."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TINY_MODEL, content
from dcond.artifact import verify
from dcond.errors import DcondError

pytestmark = pytest.mark.e2e
ENV = os.environ | {"OMP_NUM_THREADS": "1"}  # one thread, as the in-process reference run uses

# each stage's command line without --out; TEACHER, IMAGES, LABELS and FOLDER stand for the shared inputs
STAGES = {
    "train-teacher": ["train-teacher", "--data", "FOLDER", "--image-size", 12, "--epochs", 6, "--batch-size", 4,
                      *TINY_MODEL],
    "select": ["select", "TEACHER", "--method", "herding", "--ipc", 4],
    "synthesize": ["synthesize", "TEACHER", "--method", "sre2l", "--ipc", 4, "--iterations", 40, "--per-unit", 1],
    "synthesize-generative": ["synthesize", "TEACHER", "--method", "generative", "--iterations", 60,
                              "--checkpoint-every", 5, "--gen-width", 8, "--latent-dim", 8],
    "relabel": ["relabel", "IMAGES", "--teacher", "TEACHER", "--epochs", 40, "--batch-size", 4],
    "compress-labels": ["compress-labels", "LABELS", "--method", "prune+lowrank+quantize", "--keep", 0.5,
                        "--rank", 2],
    "train-student": ["train-student", "IMAGES", "--recipe", "edc", "--teacher", "TEACHER", "--epochs", 30,
                      "--batch-size", 4, "--best-of-last", 0.5, "--checkpoint-seconds", 0, *TINY_MODEL],
}


@pytest.fixture(scope="module")
def inputs(shared_teacher_images, tmp_path_factory) -> dict[str, Path]:
    from dcond.stages.relabel import RelabelConfig, relabel

    teacher, images = shared_teacher_images
    labels = relabel(images, [teacher], RelabelConfig(epochs=4, batch_size=4),
                     tmp_path_factory.mktemp("interrupts") / "labels")
    return {"TEACHER": teacher, "IMAGES": images, "LABELS": labels, "FOLDER": teacher.parent / "tiny"}


@pytest.fixture(scope="module")
def start_s() -> float:
    """Seconds a dcond process takes to start (imports) before its stage does any work."""
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-c", "import dcond.cli"], check=True, env=ENV)
    return time.monotonic() - t0


def start(argv: list[str], **kwargs) -> subprocess.Popen:
    """A dcond process that Ctrl-C would stop: a process started in the background (as CI may run the suite)
    inherits SIGINT ignored, and Python then never raises KeyboardInterrupt."""
    return subprocess.Popen(argv, env=ENV, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **kwargs)


def command(stage: str, inputs: dict[str, Path], out: Path) -> list[str]:
    return [sys.executable, "-m", "dcond", *(str(inputs.get(a, a)) for a in STAGES[stage]), "--out", str(out)]


@pytest.mark.parametrize("stage", STAGES)
def test_a_killed_stage_run_again_makes_the_uninterrupted_artifact(stage, inputs, start_s, stress, tmp_path):
    reference = tmp_path / "reference"
    t0 = time.monotonic()
    done = subprocess.run(command(stage, inputs, reference), capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr
    work_s = max(0.1, time.monotonic() - t0 - start_s)
    rng = random.Random(stage)
    for attempt in range(stress):
        out = tmp_path / f"run{attempt}"
        how = rng.choice([signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
        process = start(command(stage, inputs, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(start_s + rng.uniform(0, 1) * work_s)  # a moment of the stage's work, not of its imports
        process.send_signal(how)
        process.wait(timeout=60)
        if out.exists():  # the kill came after the artifact was complete
            assert verify(out).intact
        assert_no_half_written_artifact(tmp_path)
        if how != signal.SIGKILL:
            assert not work_folders(tmp_path), f"{how.name} at attempt {attempt}"
        again = subprocess.run(command(stage, inputs, out), capture_output=True, text=True, env=ENV, timeout=300)
        assert again.returncode == 0 or "already exists" in again.stderr, again.stderr
        assert content(out) == content(reference), f"after {how.name} at attempt {attempt}"


def work_folders(root: Path) -> list[Path]:
    """The work folders of writers that cannot resume (`.<name>.<random>.tmp`)."""
    return [p for p in root.glob(".*.tmp") if p.is_dir()]


@pytest.mark.parametrize("how, code, said", [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")])
def test_a_stage_told_to_stop_says_so_and_keeps_only_what_it_can_resume(how, code, said, inputs, tmp_path):
    out = tmp_path / "student"
    process = start([sys.executable, "-m", "dcond", "train-student", str(inputs["IMAGES"]), *TINY_MODEL,
                     "--epochs", "1000000", "--checkpoint-seconds", "0", "--out", str(out)],
                    stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    try:
        while not checkpoints(tmp_path):  # until the student trains: it has saved an epoch
            assert process.poll() is None and time.monotonic() < deadline, "the student did not start"
            time.sleep(0.05)
        process.send_signal(how)
        _, stderr = process.communicate(timeout=60)  # read as it comes: a full pipe would block the unwinding
    finally:
        process.kill()  # nothing, once it has exited
    assert process.returncode == code, stderr
    assert stderr.strip().splitlines()[-1].endswith(f"error: {said}")
    assert not work_folders(tmp_path) and not out.exists()
    assert len(checkpoints(tmp_path)) == 1  # the resumable work folder stays, for the same command to continue


def checkpoints(root: Path) -> list[Path]:
    """The training checkpoints in resumable work folders (`.<stage>-<key>.partial`)."""
    return list(root.glob(".*.partial/.scratch/checkpoint.safetensors"))


def assert_no_half_written_artifact(root: Path) -> None:
    """Every folder a killed run left that looks like an artifact is a whole one: verify and a reader accept it
    only if it is intact, and refuse it otherwise."""
    from dcond.artifact import open_artifact

    for manifest in root.glob("**/dcond.json"):
        folder = manifest.parent
        report = verify(folder)
        try:
            open_artifact(folder)
            assert report.intact, folder
        except DcondError:
            assert not report.intact, folder
