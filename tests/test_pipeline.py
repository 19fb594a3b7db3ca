import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dcond.pipeline import check, flat_results
from dcond.report import results_table, write_report
from test_plot import drawn_by_matplotlib

TEACHER_ONLY = """\
[pipeline]
name = "tiny"

[[stage]]
name = "teacher"
run = "train-teacher"
data = "{data}"
image-size = 12
epochs = 1
model-opt = ["width=8", "depth=2"]
"""
PIPELINE = TEACHER_ONLY + """
[[stage]]
name = "images"
run = "select"
ipc = {ipc}

[[stage]]
name = "student"
run = "train-student"
epochs = 2
model-opt = ["width=8", "depth=2"]
"""


def stages_run(report_dir: Path) -> list[str]:
    report = json.loads((report_dir / "report.json").read_text())
    return [s["name"] for row in report["rows"] for s in row["stages"] if not s["cached"]]


@pytest.fixture
def pipeline_file(tiny_folder, tmp_path):
    def write(ipc: int = 2) -> Path:
        path = tmp_path / "p.toml"
        path.write_text(PIPELINE.format(data=tiny_folder, ipc=ipc))
        return path
    return write


def test_cache_reruns_only_what_changed(cli, pipeline_file, tmp_path):
    first = cli("run", pipeline_file(), "--cache", tmp_path / "cache")
    assert first.code == 0, first.stderr
    report = Path(first.stdout.strip())
    assert stages_run(report) == ["teacher", "images", "student"]
    assert "| student top1 |" in (report / "report.md").read_text()
    assert str(tmp_path) not in (report / "report.json").read_text()  # artifacts named relative to the report
    assert cli("run", pipeline_file(), "--cache", tmp_path / "cache").code == 0
    assert stages_run(report) == []
    assert cli("run", pipeline_file(ipc=3), "--cache", tmp_path / "cache").code == 0
    assert stages_run(report) == ["images", "student"]
    baseline = json.loads((report / "report.json").read_text())
    accuracy = next(k for k in _flat(baseline) if k.endswith("student/tiny:test/top1"))
    (tmp_path / "good.json").write_text(json.dumps({accuracy: _flat(baseline)[accuracy] + 0.005}))
    (tmp_path / "bad.json").write_text(json.dumps({accuracy: _flat(baseline)[accuracy] + 0.5}))
    assert cli("run", pipeline_file(ipc=3), "--cache", tmp_path / "cache", "--check", tmp_path / "good.json").code == 0
    r = cli("run", pipeline_file(ipc=3), "--cache", tmp_path / "cache", "--check", tmp_path / "bad.json")
    assert r.code == 1 and accuracy in r.stderr and "fell by more than 0.01" in r.stderr


MATRIX = PIPELINE.replace('name = "tiny"', 'name = "tiny"\n\n[matrix]\nipc = [2, 3]') \
    .replace("ipc = {ipc}", 'ipc = "${{ipc}}"') + \
    """
[[stage]]
name = "student-hard"
run = "train-student"
input = "@images"
epochs = 2
model-opt = ["width=8", "depth=2"]
"""


def test_jobs_run_ready_stages_side_by_side_with_the_results_of_one_job(cli, tiny_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # kept at any --jobs: CPU sums differ with the thread count
    (tmp_path / "m.toml").write_text(MATRIX.format(data=tiny_folder))
    reports = {}
    for jobs in (3, 1):
        r = cli("run", tmp_path / "m.toml", "--cache", tmp_path / f"cache{jobs}", "--jobs", jobs, "--out",
                tmp_path / f"report{jobs}")
        assert r.code == 0, r.stderr
        reports[jobs] = json.loads((tmp_path / f"report{jobs}" / "report.json").read_text())["rows"]
    # which row runs a stage that two rows share (the teacher) and which finds it cached may vary; what runs may not
    assert sorted(stages_run(tmp_path / "report3")) == sorted(stages_run(tmp_path / "report1")) == \
        sorted(["teacher", "images", "student", "student-hard", "images", "student", "student-hard"])
    for three, one in zip(reports[3], reports[1]):  # (keys differ: they hold digests, which seal creation times)
        assert [(s["name"], s["metrics"]) for s in three["stages"]] == \
            [(s["name"], s["metrics"]) for s in one["stages"]]
    assert drawn_by_matplotlib(tmp_path / "report1" / "accuracy-vs-ipc.png")


def test_stages_side_by_side_share_the_cores_unless_the_user_set_the_threads(cli, tiny_folder, tmp_path,
                                                                             monkeypatch):
    from dcond.pipeline import _stage_env

    # one stage is enough: a stage's share is the cores over --jobs, whatever runs beside it
    teacher_only = tmp_path / "teacher.toml"
    teacher_only.write_text(TEACHER_ONLY.format(data=tiny_folder))

    def threads(jobs: int) -> list[int]:
        cache = tmp_path / f"cache-{jobs}"
        assert cli("run", teacher_only, "--cache", cache, "--jobs", jobs, "--out", tmp_path / f"r{jobs}").code == 0
        return sorted({json.loads(p.read_text())["producer"]["threads"] for p in cache.glob("*/dcond.json")})

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    default = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                             capture_output=True, text=True, check=True).stdout
    assert threads(1) == [int(default)]
    assert threads(2) == [max(1, len(os.sched_getaffinity(0)) // 2)]
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert _stage_env(2) is None  # the stages inherit the user's setting


def test_a_failed_stage_ends_the_run_before_anything_queued_starts(cli, tiny_folder, tmp_path):
    (tmp_path / "m.toml").write_text(MATRIX.format(data=tiny_folder).replace("ipc = [2, 3]", "ipc = [99, 2]"))
    r = cli("run", tmp_path / "m.toml", "--cache", tmp_path / "cache", "--jobs", 1)
    assert r.code == 1 and "stage failed" in r.stderr
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "cache").glob("*.json")) == ["teacher"]


def _flat(report: dict) -> dict:
    return flat_results(report["rows"])


def test_check_names_each_fallen_accuracy_and_ignores_other_metrics():
    baseline = {"a/s/x:test/top1": 0.80, "b/s/x:test/top1": 0.80, "a/s/x:test/loss": 0.1, "c/s/x:test/top5": 0.9}
    current = {"a/s/x:test/top1": 0.795, "b/s/x:test/top1": 0.70, "a/s/x:test/loss": 9.0}
    assert check(current, baseline, 0.01) == ["b/s/x:test/top1 (0.8000 → 0.7000)",
                                             "c/s/x:test/top5 (missing; baseline 0.9000)"]


def test_check_refuses_to_compare_students_under_another_protocol():
    baseline = {"a/e/convnet/top1_mean": 0.8, "a/e/convnet/protocol_digest": "p1", "a/e/convnet/top1_std": 0.01,
                "a/e/mlp/top1_mean": 0.5, "a/e/mlp/protocol_digest": "p1"}
    current = {"a/e/convnet/top1_mean": 0.9, "a/e/convnet/protocol_digest": "p2", "a/e/convnet/top1_std": 0.01,
               "a/e/mlp/top1_mean": 0.3, "a/e/mlp/protocol_digest": "p1"}
    assert check(current, baseline, 0.01) == ["a/e/convnet/top1_mean (not comparable: measured under another "
                                              "protocol)", "a/e/mlp/top1_mean (0.5000 → 0.3000)"]


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace('run = "select"', 'run = "distill"'), r"p.toml:14: stage 'images': unknown stage 'distill'"),
    (lambda t: t.replace("ipc = 2", "ipcs = 2"), r"p.toml:15: stage 'images': select has no argument 'ipcs'"),
    (lambda t: t.replace('run = "train-student"', 'run = "train-student"\ninput = "nowhere/labels"'),
     r"p.toml:20: stage 'student': input nowhere/labels does not exist"),
    (lambda t: t.replace('run = "train-student"', 'run = "train-student"\ninput = "@labels"'),
     r"p.toml:20: stage 'student': '@labels' names no earlier stage"),
    (lambda t: t.replace("ipc = 2", 'ipc = "${ipc}"'), r"p.toml:15: stage 'images': '\$\{ipc\}' is not a \[matrix\]"),
    (lambda t: t.replace('name = "tiny"', 'name = "tiny"\n[matrix]\nb = [{ipc = 2, epochs = 1}, {ipc = 3}]'),
     r"p.toml: \[matrix\] b: either plain values or tables, all with the same keys"),
    (lambda t: t.replace('name = "tiny"', 'name = "tiny"\n[matrix]\nipc = [2]\nb = [{ipc = 3, epochs = 1}]'),
     r"p.toml: \[matrix\] sets ipc in more than one place"),
])
def test_bad_pipelines_are_refused_before_anything_runs(cli, pipeline_file, tmp_path, edit, message):
    path = pipeline_file()
    path.write_text(edit(path.read_text()))
    r = cli("run", path, "--cache", tmp_path / "cache")
    assert r.code == 1 and r.stdout == ""
    assert re.search(message, r.stderr), r.stderr
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("example", sorted((Path(__file__).parent.parent / "examples").glob("*.toml")))
def test_bundled_example_pipelines_are_valid(example):
    from typer.main import get_command

    from dcond.cli import app
    from dcond.pipeline import load_pipeline

    pipe = load_pipeline(example, get_command(app).commands)
    assert pipe.stages and pipe.rows()


def test_a_matrix_of_tables_sets_their_values_together(pipeline_file):
    from typer.main import get_command

    from dcond.cli import app
    from dcond.pipeline import load_pipeline

    path = pipeline_file()
    text = path.read_text().replace("ipc = 2", 'ipc = "${ipc}"').replace("epochs = 2", 'epochs = "${epochs}"')
    path.write_text(text.replace('name = "tiny"', 'name = "tiny"\n[matrix]\nbudget = [{ipc = 1, epochs = 20}, '
                                 '{ipc = 10, epochs = 5}]\nseed = [0, 1]'))
    pipe = load_pipeline(path, get_command(app).commands)
    assert pipe.rows() == [{"ipc": 1, "epochs": 20, "seed": 0}, {"ipc": 1, "epochs": 20, "seed": 1},
                           {"ipc": 10, "epochs": 5, "seed": 0}, {"ipc": 10, "epochs": 5, "seed": 1}]


def _stage(name: str, path: str, input: str | None = None, label_bytes: int = 0, top1: float | None = None):
    return {"name": name, "run": name, "key": "k" * 16, "path": path, "input": input, "cached": False,
            "seconds": 1.0, "peak_rss_mb": 1.0, "bytes": 1, "label_bytes": label_bytes,
            "metrics": {} if top1 is None else {"d:test/top1": top1}}


def test_report_pairs_each_student_with_the_bank_it_read(tmp_path):
    rows = [{"matrix": {"ipc": ipc}, "label": f"ipc={ipc}", "stages": [
        _stage("labels", f"L{ipc}", label_bytes=1000 * ipc),
        _stage("compressed", f"C{ipc}", input=f"L{ipc}", label_bytes=20 * ipc),
        _stage("student", f"S{ipc}", input=f"L{ipc}", top1=0.8),
        _stage("student-compressed", f"T{ipc}", input=f"C{ipc}", top1=0.79),
        _stage("student-hard", f"H{ipc}", input="images", top1=0.6)]} for ipc in (1, 10)]
    table = results_table(rows).splitlines()
    assert table[0] == ("| ipc | student top1 | student-compressed top1 | student-hard top1 | labels bytes | "
                        "compressed bytes | time (s) |")
    assert table[3] == "| 10 | 80.00% | 79.00% | 60.00% | 10,000 | 200 | 5 |"
    write_report(tmp_path, "p", rows, 1.0)
    assert drawn_by_matplotlib(tmp_path / "accuracy-vs-label-bytes.png")
    assert drawn_by_matplotlib(tmp_path / "accuracy-vs-ipc.png")
    hard_only = [{**row, "stages": [s for s in row["stages"] if s["name"] in ("labels", "student-hard")]}
                 for row in rows]
    write_report(tmp_path / "hard", "p", hard_only, 1.0)  # a bank no student read gives no accuracy-vs-bytes plot
    assert not (tmp_path / "hard" / "accuracy-vs-label-bytes.png").exists()


def test_a_stage_waiting_for_its_inputs_leaves_its_job_to_a_ready_stage_and_a_shared_key_runs_once(monkeypatch,
                                                                                                   tmp_path):
    import threading
    import time
    from collections import Counter

    from dcond import pipeline
    from dcond.pipeline import Stage, StageRun, _dispatch, _Task

    started, active, most = {}, Counter(), Counter()  # stages running per key, and the most at once
    lock = threading.Lock()

    def fake_run(stage, command, input_path, args, cache, key, env):
        with lock:
            started.setdefault(stage.name, threading.Event()).set()
            active[key] += 1
            most[key] = max(most[key], active[key])
        if stage.name == "slow":  # a student that needs it waits; the other row's stage must start meanwhile
            assert started.setdefault("free", threading.Event()).wait(30), "a ready stage did not start"
        time.sleep(0.2)
        with lock:
            active[key] -= 1
        return StageRun(stage.name, stage.run, key, str(tmp_path / stage.name), False, 0.0, 0.0)

    monkeypatch.setattr(pipeline, "_run_task", fake_run)
    teacher = [_Task(Stage("teacher", "x", None, {}, 1), None, {}, []) for _ in range(2)]  # one key, two rows
    slow = _Task(Stage("slow", "x", None, {"n": 1}, 2), "@teacher", {"n": 1}, [teacher[0]])
    waiting = _Task(Stage("waiting", "x", None, {}, 3), "@slow", {}, [slow])
    free = _Task(Stage("free", "x", None, {"n": 2}, 2), "@teacher", {"n": 2}, [teacher[1]])
    _dispatch([teacher[0], slow, waiting, teacher[1], free], {"x": None}, tmp_path, jobs=2)
    assert [t.future.result().name for t in (slow, waiting, free)] == ["slow", "waiting", "free"]
    assert most[teacher[0].future.result().key] == 1  # the second row's teacher waited for the first
