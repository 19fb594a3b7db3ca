"""The pipeline command: run."""

import json as jsonlib
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.main import get_command

from dcond.errors import DcondError
from dcond.pipeline import check, flat_results, load_pipeline, run_pipeline
from dcond.report import results_table, write_report


def run_cmd(
    pipeline: Annotated[Path, typer.Argument(help="Pipeline file (TOML).", show_default=False)],
    cache: Annotated[Path, typer.Option(help="Where stage outputs are kept, keyed by their inputs.")] = Path(
        "runs/cache"),
    out: Annotated[Optional[Path], typer.Option(help="Report folder (default: runs/<pipeline name>).")] = None,
    check_against: Annotated[Optional[Path], typer.Option(
        "--check", help="A baseline report.json: fail if an accuracy fell by more than --tolerance.")] = None,
    tolerance: Annotated[float, typer.Option(help="Allowed fall of an accuracy, absolute (0.01 = 1 point).")] = 0.01,
    jobs: Annotated[int, typer.Option(min=1, help="Stages run side by side when their inputs are ready (rows of "
                                                  "the matrix, students of one set of images), each with its share "
                                                  "of the CPU cores unless OMP_NUM_THREADS is set; on a GPU, 4 or "
                                                  "more keep it busy.")] = 1,
) -> None:
    """Run a whole pipeline file; stages whose inputs and arguments are unchanged are taken from the cache."""
    from dcond.cli import app

    commands = get_command(app).commands
    pipe = load_pipeline(pipeline, commands)
    baseline = _baseline(check_against) if check_against else None
    t0 = time.perf_counter()
    rows = run_pipeline(pipe, commands, cache, jobs)
    report_dir = out or Path("runs") / pipe.name
    write_report(report_dir, pipe.name, rows, time.perf_counter() - t0)
    print(results_table(rows), file=sys.stderr)
    print(report_dir, flush=True)
    if baseline is not None:
        fallen = check(flat_results(rows), baseline, tolerance)
        if fallen:
            raise DcondError(f"{len(fallen)} metric(s) fell by more than {tolerance}: {'; '.join(fallen)}")


def _baseline(path: Path) -> dict[str, float]:
    """A report.json of an earlier run, or a flat {"row/stage/metric": value} object."""
    try:
        data = jsonlib.loads(path.read_text())
    except (OSError, jsonlib.JSONDecodeError) as e:
        raise DcondError(f"cannot read baseline {path}: {e}") from None
    return flat_results(data["rows"]) if isinstance(data, dict) and "rows" in data else data
