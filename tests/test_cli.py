import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from conftest import TINY_MODEL, make_image_folder, tree
from dcond.artifact import open_artifact, verify


def one_error_line(r) -> str:
    assert r.code != 0 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


def test_train_teacher_prints_only_the_path(tiny_teacher, tmp_path):
    art = open_artifact(tiny_teacher)
    assert tiny_teacher == tmp_path / "teacher" and art.kind == "model"
    assert {"model.safetensors", "stats.safetensors", "metrics.json", "README.md"} <= set(art.files)
    assert art.section["spec"]["options"] == {"width": 8, "depth": 2}
    stats = load_file(tiny_teacher / "stats.safetensors")
    assert stats["count"].tolist() == [8, 8, 8] and stats["1.class_mean"].shape == (3, 8)
    assert art.metrics["tiny:test"]["samples"] == 12 and art.section["evaluated_on"] == "test"


def test_default_out_is_a_new_folder_under_runs(cli, tiny_folder, tmp_path):
    args = ["train-teacher", "--data", tiny_folder, "--image-size", 12, "--epochs", 1, *TINY_MODEL]
    first, second = cli(*args), cli(*args)
    assert first.code == second.code == 0
    paths = [Path(r.stdout.strip()) for r in (first, second)]
    assert paths[0] != paths[1] and all(p.parent == Path("runs") and (tmp_path / p).is_dir() for p in paths)


def test_input_from_stdin_argument_dash_and_json(cli, tiny_teacher):
    for args, stdin in ((["evaluate"], f"{tiny_teacher}\n"), (["evaluate", "-"], f"{tiny_teacher}\n"),
                        (["evaluate"], json.dumps({"path": str(tiny_teacher)}) + "\n")):
        r = cli(*args, stdin=stdin)
        assert r.code == 0 and r.stdout == f"{tiny_teacher}\n", r.stderr


def test_json_output(cli, tiny_teacher):
    r = cli("evaluate", tiny_teacher, "--json")
    result = json.loads(r.stdout)
    assert result["path"] == str(tiny_teacher) and result["kind"] == "model"
    assert 0 <= result["metrics"]["top1"] <= 1 and set(result["metrics"]["per_class"]) == {"class_0", "class_1",
                                                                                           "class_2"}


def test_evaluate_records_metrics_and_stays_intact(cli, tiny_teacher, tmp_path):
    other = make_image_folder(tmp_path / "other", seed=1, test_per_class=2)
    assert cli("evaluate", tiny_teacher, "--data", other).code == 0
    art = open_artifact(tiny_teacher)
    assert {"tiny:test", "other:test"} <= set(art.metrics) and verify(tiny_teacher).intact


def test_inspect_and_verify_on_a_copy(cli, tiny_teacher, tmp_path):
    copy = shutil.copytree(tiny_teacher, tmp_path / "moved" / "t")
    r = cli("inspect", copy)
    assert r.code == 0 and "kind" in r.stdout and "model" in r.stdout and "tiny:test" in r.stdout
    assert "threads 1," in r.stdout  # the CPU threads it was made with: the tests' one
    printed = json.loads(cli("inspect", copy, "--json").stdout)
    assert printed["kind"] == "model" and printed["made_by"]["threads"] == 1
    r = cli("verify", copy)
    assert r.code == 0 and "intact" in r.stdout


@pytest.mark.parametrize("damage, label", [
    (lambda p: (p / "metrics.json").write_text("{}"), "mismatched: metrics.json"),
    (lambda p: (p / "stats.safetensors").unlink(), "missing: stats.safetensors"),
    (lambda p: (p / "notes.txt").write_text("x"), "extra: notes.txt"),
])
def test_verify_fails_on_damage(cli, tiny_teacher, damage, label):
    damage(tiny_teacher)
    r = cli("verify", tiny_teacher)
    assert r.code == 1 and label in r.stdout and "NOT intact" in r.stdout


def test_not_an_artifact(cli, tmp_path):
    assert "not a dcond artifact" in one_error_line(cli("inspect", tmp_path))


def test_truncated_safetensors(cli, tiny_teacher, tmp_path):
    weights = tiny_teacher / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    before = tree(tmp_path)
    assert "has 100 bytes; the manifest records" in one_error_line(cli("evaluate", tiny_teacher))
    assert tree(tmp_path) == before


def test_wrong_number_of_classes(cli, tiny_teacher, tmp_path):
    four = make_image_folder(tmp_path / "four", classes=4)
    before = tree(tmp_path)
    assert "4 classes" in one_error_line(cli("evaluate", tiny_teacher, "--data", four))
    assert tree(tmp_path) == before


def test_unknown_model(cli, tiny_folder, tmp_path):
    before = tree(tmp_path)
    line = one_error_line(cli("train-teacher", "--data", tiny_folder, "--model", "resnet9000", "--out", tmp_path / "x"))
    assert "unknown model 'resnet9000'" in line and tree(tmp_path) == before


def test_existing_output_without_force(cli, tiny_folder, tiny_teacher, tmp_path):
    before = tree(tmp_path)
    line = one_error_line(cli("train-teacher", "--data", tiny_folder, "--image-size", 12, "--epochs", 1,
                              *TINY_MODEL, "--out", tiny_teacher))
    assert "--force" in line and tree(tmp_path) == before
    r = cli("train-teacher", "--data", tiny_folder, "--image-size", 12, "--epochs", 1, *TINY_MODEL,
            "--out", tiny_teacher, "--force")
    assert r.code == 0 and verify(tiny_teacher).intact


@pytest.mark.parametrize("args, words", [(["--nope"], "No such option: --nope"),
                                         (["--epochs", "many"], "Invalid value for '--epochs'")])
def test_usage_errors_are_one_line_with_exit_code_2(cli, args, words):
    r = cli("train-teacher", *args)
    line = one_error_line(r)
    assert r.code == 2 and words in line and "DCOND_DEBUG" not in line and "train-teacher --help" in line


def test_relabel_needs_a_teacher_in_one_line(cli, images_artifact):
    line = one_error_line(cli("relabel", images_artifact))
    assert "Missing option '--teacher'" in line


@pytest.mark.parametrize("command", ["train-teacher", "synthesize", "select", "relabel", "compress-labels",
                                     "train-student", "evaluate"])
def test_help_shows_values_as_written_not_python_types(cli, monkeypatch, command):
    monkeypatch.setenv("COLUMNS", "200")
    r = cli(command, "--help")
    assert r.code == 0
    options = {line.lstrip("│ *").split()[0]: line for line in r.stdout.splitlines()
               if line.lstrip("│ *").startswith("--")}
    assert options and not [line for line in options.values() if re.search(r"<[a-z]|list\[|float,", line)]
    assert not re.search(r"<[a-z]", r.stdout)  # arguments too: `PATH`, not `<path>`
    assert options["--help"].split()[2] == "Show" and options["--json"].split()[2] == "Print"  # flags: no value
    if command == "relabel":
        assert options["--teacher"].lstrip("│ ").startswith("*") and "PATH (repeatable)" in options["--teacher"]


HEAVY = ("torch", "torchvision", "timm", "PIL", "numpy", "safetensors", "matplotlib", "datasets")


@pytest.mark.parametrize("args", [["--help"], ["relabel", "--help"], ["synthesize", "--help"],
                                  ["compress-labels", "--bogus"], ["select", "--method", "nope", "x"],
                                  ["verify", "ARTIFACT"], ["inspect", "ARTIFACT"]])
def test_help_argument_errors_inspect_and_verify_load_no_heavy_library(args, shared_teacher_images):
    """What answers without training anything starts without torch (the seconds of `dcond COMMAND --help`)."""
    args = [str(shared_teacher_images[0]) if a == "ARTIFACT" else a for a in args]
    code = ("import sys; from dcond.cli import main; sys.argv = ['dcond', *sys.argv[1:]]\n"
            "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))")
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip().splitlines()[-1] == "[]", r.stderr


def test_empty_stdin(cli):
    assert "no artifact path on stdin" in one_error_line(cli("evaluate"))


def test_debug_shows_the_traceback(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("DCOND_DEBUG", "1")
    with pytest.raises(Exception, match="not a dcond artifact"):
        cli("inspect", tmp_path)


def test_real_pipe_between_processes(tiny_folder, tmp_path):
    """`dcond train-teacher | dcond evaluate` through a shell pipe, as users write it."""
    dcond = Path(sys.executable).parent / "dcond"
    cmd = (f"{dcond} train-teacher --data {tiny_folder} --image-size 12 --epochs 1 {' '.join(TINY_MODEL)} "
           f"--out {tmp_path / 't'} | {dcond} evaluate | {dcond} verify")
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith(f"intact: {tmp_path / 't'} (4 files checked)")


def test_a_chain_names_no_folder_of_its_machine_and_runs_on_after_a_move(cli, tiny_teacher, tmp_path):
    images = cli("select", tiny_teacher, "--method", "random", "--ipc", 2, "--out", tmp_path / "images").stdout.strip()
    labels = cli("relabel", images, "--teacher", tiny_teacher, "--epochs", 2, "--out", tmp_path / "labels")
    assert labels.code == 0, labels.stderr
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    for name in ("tiny", "teacher", "images", "labels"):  # the data and the chain, together
        shutil.move(tmp_path / name, moved / name)
    for art in ("teacher", "images", "labels"):
        for card in ("dcond.json", "README.md"):
            text = (moved / art / card).read_text()
            assert str(tmp_path) not in text and str(Path.home()) not in text, f"{art}/{card}"
        assert verify(moved / art).intact
    # the recorded data (for selection) and teacher (for the full-data accuracy) are found where they went
    assert cli("select", moved / "teacher", "--method", "random", "--ipc", 1, "--out", moved / "again").code == 0
    r = cli("evaluate", moved / "labels", "--models", "convnet", "--seeds", 1, "--epochs", 1, "--baseline", "random",
            "--json")
    assert r.code == 0, r.stderr
    assert json.loads(r.stdout)["students"]["convnet"]["baseline"]["full_data_top1"] is not None
    shutil.move(moved / "tiny", tmp_path / "tiny")  # the data apart from the chain: named, found with --data
    r = cli("select", moved / "teacher", "--method", "random", "--ipc", 1, "--out", moved / "apart")
    assert "dataset 'tiny' is no longer where the artifact records it" in one_error_line(r) and "--data" in r.stderr
    assert cli("select", moved / "teacher", "--data", tmp_path / "tiny", "--method", "random", "--ipc", 1, "--out",
               moved / "apart").code == 0
