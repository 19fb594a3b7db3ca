"""dcond run: a condensation experiment as one TOML file, with content-addressed caching and reports.

A pipeline names dcond commands in order with their arguments, and may sweep values as a matrix:

    [matrix]
    ipc = [1, 10]
    # or values that go together, one row per table and seed:
    # budget = [{ipc = 1, epochs = 2000}, {ipc = 10, epochs = 1000}]
    # seed = [0, 1, 2]

    [[stage]]
    name = "teacher"
    run = "train-teacher"
    epochs = 6

    [[stage]]
    name = "images"
    run = "select"          # input: the previous stage's output unless `input` says otherwise
    ipc = "${ipc}"

    [[stage]]
    run = "relabel"
    teacher = "@teacher"    # @name: the output of an earlier stage

A stage's output lives in the cache under a key made of its command, its arguments, the digests of the
artifacts it reads and the dcond version; a stage whose key is already there is not run again.
"""

import itertools
import json
import os
import re
import subprocess
import sys
import time
import tomllib
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from typer.core import TyperCommand, TyperOption

from dcond import __version__
from dcond.artifact import MANIFEST, config_key, open_artifact
from dcond.config import available_cores
from dcond.errors import DcondError
from dcond.log import info

RESERVED = {"name", "run", "input"}
RUNNER_OWNED = {"out", "force", "json"}
_VAR = re.compile(r"\$\{(\w+)\}")


@dataclass
class Stage:
    name: str
    run: str
    input: Any
    args: dict[str, Any]
    line: int  # of its [[stage]] header, for error messages
    key_lines: dict[str, int] = field(default_factory=dict)


@dataclass
class Pipeline:
    path: Path
    name: str
    matrix: dict[str, list[Any]]
    stages: list[Stage]

    def rows(self) -> list[dict[str, Any]]:
        """Every combination of the matrix's values; a table's keys become variables of their own, set together."""
        rows = []
        for values in itertools.product(*self.matrix.values()):
            row: dict[str, Any] = {}
            for name, value in zip(self.matrix, values):
                row.update(value if isinstance(value, dict) else {name: value})
            rows.append(row)
        return rows


def load_pipeline(path: Path, commands: dict[str, TyperCommand]) -> Pipeline:
    """Parse and check a pipeline file: unknown stages, unknown arguments and missing inputs are reported
    with their line, before anything runs."""
    if not path.is_file():
        raise DcondError(f"pipeline file {path} does not exist")
    text = path.read_text()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise DcondError(f"{path}: {e}") from None
    lines = text.splitlines()
    headers = [i + 1 for i, line in enumerate(lines) if line.strip() == "[[stage]]"]
    matrix = data.get("matrix", {})
    _check_matrix(path, matrix)
    raw = data.get("stage", [])
    if not raw:
        raise DcondError(f"{path}: no [[stage]] tables")
    pipe = Pipeline(path, str(data.get("pipeline", {}).get("name", path.stem)), matrix, [])
    variables = _variables(matrix)
    for i, table in enumerate(raw):
        header = headers[i] if i < len(headers) else 0
        end = headers[i + 1] if i + 1 < len(headers) else len(lines) + 1
        key_lines = {m.group(1): n for n in range(header, end) if (m := re.match(r"\s*([\w-]+)\s*=", lines[n - 1]))}
        stage = Stage(str(table.get("name", table.get("run", f"stage{i}"))), str(table.get("run", "")),
                      table.get("input"), {k: v for k, v in table.items() if k not in RESERVED}, header, key_lines)
        _check_stage(path, stage, commands, [s.name for s in pipe.stages], variables)
        pipe.stages.append(stage)
    return pipe


def _check_matrix(path: Path, matrix: Any) -> None:
    if not isinstance(matrix, dict) or not all(isinstance(v, list) and v for v in matrix.values()):
        raise DcondError(f"{path}: [matrix] must map names to non-empty lists of values")
    for name, values in matrix.items():
        tables = [v for v in values if isinstance(v, dict)]
        if tables and (len(tables) < len(values) or any(t.keys() != tables[0].keys() or not t for t in tables)):
            raise DcondError(f"{path}: [matrix] {name}: either plain values or tables, all with the same keys")
    names = _variables(matrix)
    if twice := sorted({n for n in names if names.count(n) > 1}):
        raise DcondError(f"{path}: [matrix] sets {', '.join(twice)} in more than one place")


def _variables(matrix: dict[str, list]) -> list[str]:
    """The names a stage may use as ${name}: a plain entry's name, a list of tables' keys."""
    return [n for name, values in matrix.items() for n in (values[0] if isinstance(values[0], dict) else [name])]


def _check_stage(path: Path, stage: Stage, commands: dict[str, TyperCommand], earlier: list[str],
                 variables: list[str]) -> None:
    def fail(why: str, key: str | None = None) -> DcondError:
        return DcondError(f"{path}:{stage.key_lines.get(key, stage.line)}: stage '{stage.name}': {why}")

    if stage.run not in commands or stage.run == "run":
        raise fail(f"unknown stage '{stage.run}' (known: {', '.join(sorted(set(commands) - {'run'}))})", "run")
    if stage.name in earlier:
        raise fail("another stage has this name; give each a unique `name`", "name")
    options = _options(commands[stage.run])
    for key in stage.args:
        if key in RUNNER_OWNED or f"--{key.replace('_', '-')}" not in options:
            raise fail(f"{stage.run} has no argument '{key}'", key)
    for key, value in [("input", stage.input), *stage.args.items()]:
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                for var in _VAR.findall(item):
                    if var not in variables:
                        raise fail(f"'${{{var}}}' is not a [matrix] variable", key)
                if item.startswith("@") and item[1:] not in earlier:
                    raise fail(f"'{item}' names no earlier stage", key)
    if isinstance(stage.input, str) and not stage.input.startswith("@") and not _VAR.search(stage.input) \
            and not Path(stage.input).exists():
        raise fail(f"input {stage.input} does not exist", "input")
    takes_input = _takes_input(commands[stage.run])
    if stage.input is not None and not takes_input:
        raise fail(f"{stage.run} takes no input", "input")
    if takes_input and stage.input is None and not earlier:
        raise fail(f"{stage.run} needs an input, and no stage comes before it", "input")


def _options(command: TyperCommand) -> dict[str, TyperOption]:
    return {opt: p for p in command.params if p.param_type_name == "option" for opt in p.opts + p.secondary_opts}


def _takes_input(command: TyperCommand) -> bool:
    return any(p.param_type_name == "argument" for p in command.params)


def _substitute(value: Any, row: dict[str, Any]) -> Any:
    if isinstance(value, list):
        return [_substitute(v, row) for v in value]
    if not isinstance(value, str):
        return value
    whole = _VAR.fullmatch(value)
    if whole:
        return row[whole.group(1)]  # keeps the matrix value's type
    return _VAR.sub(lambda m: str(row[m.group(1)]), value)


def _argv(command: TyperCommand, args: dict[str, Any]) -> list[str]:
    """Command-line words for `args`: booleans as --x/--no-x, lists as repeated options or one n-ary one."""
    options, words = _options(command), []
    for key, value in args.items():
        flag = f"--{key.replace('_', '-')}"
        param = options[flag]
        if isinstance(value, bool):
            words.append(flag if value else (param.secondary_opts or [f"--no-{key}"])[0])
        elif isinstance(value, list) and not param.multiple:
            words += [flag, *map(str, value)]
        elif isinstance(value, list):
            words += [w for v in value for w in (flag, str(v))]
        else:
            words += [flag, str(value)]
    return words


def _resolve(value: Any, outputs: dict[str, Path]) -> Any:
    if isinstance(value, list):
        return [_resolve(v, outputs) for v in value]
    return str(outputs[value[1:]]) if isinstance(value, str) and value.startswith("@") else value


def _digest_of(value: Any) -> Any:
    """What a resolved argument contributes to a key: an artifact's content digest, else the value."""
    if isinstance(value, list):
        return [_digest_of(v) for v in value]
    if isinstance(value, str) and (Path(value) / MANIFEST).is_file():
        return open_artifact(value).digest
    return value


@dataclass
class StageRun:
    """What the report says of one stage of one matrix row."""

    name: str
    run: str
    key: str
    path: str
    cached: bool
    seconds: float
    peak_rss_mb: float
    bytes: int = 0
    label_bytes: int = 0  # of the soft-label bank this stage's artifact holds
    metrics: dict[str, float] = field(default_factory=dict)
    input: str | None = None  # the artifact it read


@dataclass
class _Task:
    """One stage of one matrix row, its matrix variables substituted."""

    stage: Stage
    source: str | None  # its input, None where the command takes none; may be an @-reference
    args: dict[str, Any]  # may hold @-references
    needs: list["_Task"]  # the tasks of its row whose outputs it reads
    future: Future | None = None  # once started


def run_pipeline(pipe: Pipeline, commands: dict[str, TyperCommand], cache: Path,
                 jobs: int = 1) -> list[dict[str, Any]]:
    """Run every row of the matrix; returns, per row, its matrix values and its stages' runs. With `jobs` > 1,
    up to that many stages whose inputs are ready run side by side (the rows of the matrix; the students of one
    set of images): small networks leave a GPU mostly idle, so several processes share it."""
    if jobs < 1:
        raise DcondError("--jobs must be at least 1")
    cache.mkdir(parents=True, exist_ok=True)
    rows, tasks = [], []
    for row in pipe.rows():
        label = ", ".join(f"{k}={v}" for k, v in row.items()) or "all"
        info(f"pipeline {pipe.name}: {label}")
        of_row: dict[str, _Task] = {}
        for i, stage in enumerate(pipe.stages):
            source = stage.input if stage.input is not None else (f"@{pipe.stages[i - 1].name}" if i else None)
            source = _substitute(source, row) if _takes_input(commands[stage.run]) else None
            args = {k: _substitute(v, row) for k, v in stage.args.items()}
            needs = [of_row[name] for name in sorted(_references([source, *args.values()]))]
            of_row[stage.name] = _Task(stage, source, args, needs)
        tasks += of_row.values()
        rows.append((row, label, list(of_row.values())))
    _dispatch(tasks, commands, cache, jobs)
    return [{"matrix": row, "label": label, "stages": [t.future.result().__dict__ for t in row_tasks]}
            for row, label, row_tasks in rows]


def _dispatch(tasks: list[_Task], commands: dict[str, TyperCommand], cache: Path, jobs: int) -> None:
    """Start tasks, at most `jobs` at a time, each as soon as the stages it reads are done, the earliest queued
    first (so one job runs them in file order). A stage that another row is running with the same key (a shared
    teacher, say) waits for it and is then taken from the cache. The first failure (or Ctrl-C) ends the run:
    nothing starts after it, and the stages running then are left to finish."""
    pending, running = list(tasks), {}  # running: future -> stage key
    env = _stage_env(jobs)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        while pending or running:
            for task in list(pending):
                if len(running) >= jobs:
                    break
                if not all(n.future is not None and n.future.done() for n in task.needs):
                    continue
                outputs = {n.stage.name: Path(n.future.result().path) for n in task.needs}
                input_path = _resolve(task.source, outputs)
                args = {k: _resolve(v, outputs) for k, v in task.args.items()}
                key = _key(task.stage, input_path, args)
                if key in running.values():
                    continue
                pending.remove(task)
                task.future = pool.submit(_run_task, task.stage, commands[task.stage.run], input_path, args, cache,
                                          key, env)
                running[task.future] = key
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                del running[future]
                future.result()  # raises a failed stage's error


def _stage_env(jobs: int) -> dict[str, str] | None:
    """The environment of the stages' processes. Side by side, each takes its share of the CPU's cores: by default
    torch gives every process a thread per core, and `jobs` processes contending for the same cores made students
    several times slower (docs/benchmarks.md, "dcond run --jobs on a CPU"). A thread count the user set is kept."""
    if jobs == 1 or "OMP_NUM_THREADS" in os.environ:
        return None
    return os.environ | {"OMP_NUM_THREADS": str(max(1, available_cores() // jobs))}


def _run_task(stage: Stage, command: TyperCommand, input_path: str | None, args: dict[str, Any], cache: Path,
              key: str, env: dict[str, str] | None) -> "StageRun":
    run = _cached_or_run(stage, command, input_path, args, cache, key, env)
    run.input = input_path
    return run


def _references(value: Any) -> set[str]:
    """The stage names an argument refers to as @name."""
    if isinstance(value, list):
        return set().union(*map(_references, value)) if value else set()
    return {value[1:]} if isinstance(value, str) and value.startswith("@") else set()


def _key(stage: Stage, input_path: str | None, args: dict[str, Any]) -> str:
    """A stage's cache key: its command, its arguments and the digests of the artifacts it reads."""
    return config_key({"dcond": __version__, "run": stage.run, "input": _digest_of(input_path),
                       "args": _digest_of(args)})


def _cached_or_run(stage: Stage, command: TyperCommand, input_path: str | None, args: dict[str, Any],
                   cache: Path, key: str, env: dict[str, str] | None) -> StageRun:
    evaluates = stage.run == "evaluate"  # evaluate records metrics in its input; it writes no artifact
    out = Path(input_path) if evaluates else cache / f"{stage.name}-{key[:16]}"
    record = cache / f"{stage.name}-{key[:16]}.json"
    if record.is_file() and (out / MANIFEST).is_file():
        saved = json.loads(record.read_text())
        info(f"  {stage.name}: cached ({out})")
        return _describe(stage, key, out, True, saved["seconds"], saved["peak_rss_mb"], saved.get("metrics"))
    argv = [sys.executable, "-m", "dcond", stage.run, *([input_path] if input_path else []), *_argv(command, args)]
    argv += ["--json"] if evaluates else ["--out", str(out), "--force"]
    info(f"  {stage.name}: {' '.join(argv[3:])}")
    seconds, peak, stdout = _timed(argv, env)
    metrics = _flat_metrics(_evaluation(json.loads(stdout)), "") if evaluates else None
    record.write_text(json.dumps({"key": key, "argv": argv[3:], "seconds": seconds, "peak_rss_mb": peak,
                                  "metrics": metrics}, indent=2) + "\n")
    return _describe(stage, key, out, False, seconds, peak, metrics)


def _timed(argv: list[str], env: dict[str, str] | None) -> tuple[float, float, str]:
    """Run a stage as its own process (in `env`, or this one's); its wall time, peak resident memory (MB) and
    stdout."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise DcondError(f"stage failed (exit {proc.returncode}): dcond {' '.join(argv[3:])}")
    return time.perf_counter() - t0, usage.ru_maxrss / 1024, stdout


def _evaluation(printed: dict[str, Any]) -> dict[str, Any]:
    """What `evaluate --json` printed: a model's metrics, or a condensed set's students per architecture."""
    return printed["metrics"] if "metrics" in printed else printed["students"]


def _flat_metrics(metrics: dict[str, Any], prefix: str) -> dict[str, float]:
    flat = {}
    for k, v in metrics.items():
        if isinstance(v, dict):
            flat |= _flat_metrics(v, f"{prefix}{k}/")
        elif isinstance(v, (int, float)) and not isinstance(v, bool) or k == "protocol_digest":
            flat[prefix + k] = v  # (a student record's protocol: what --check compares results under)
    return flat


def _describe(stage: Stage, key: str, out: Path, cached: bool, seconds: float, peak: float,
              metrics: dict[str, float] | None) -> StageRun:
    art = open_artifact(out)
    files = art.files
    return StageRun(stage.name, stage.run, key, str(out), cached, round(seconds, 2), round(peak, 1),
                    sum(e["size"] for e in files.values()),
                    sum(e["size"] for n, e in files.items() if n.startswith("bank/")),
                    metrics if metrics is not None else _flat_metrics(art.metrics, ""))


def flat_results(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Every metric as `row label/stage/metric`, the names --check compares."""
    return {f"{row['label']}/{s['name']}/{m}": v
            for row in rows for s in row["stages"] for m, v in s["metrics"].items()}


def check(current: dict[str, Any], baseline: dict[str, Any], tolerance: float) -> list[str]:
    """The accuracy metrics (`…/topK`, and students' `…/topK_mean`) of the baseline that fell by more than
    `tolerance`, are missing, or were measured under another protocol (then they are not comparable)."""
    changed = {name.rsplit("/", 1)[0] for name, digest in baseline.items()
               if name.endswith("/protocol_digest") and current.get(name) != digest}
    fallen = []
    for name, old in sorted(baseline.items()):
        if not re.search(r"/top\d+(_mean)?$", name):
            continue
        new = current.get(name)
        if name.rsplit("/", 1)[0] in changed:
            fallen.append(f"{name} (not comparable: measured under another protocol)")
        elif new is None:
            fallen.append(f"{name} (missing; baseline {old:.4f})")
        elif new < old - tolerance:
            fallen.append(f"{name} ({old:.4f} → {new:.4f})")
    return fallen
