"""The report of a pipeline run: report.json for machines, report.md with a results table and PNG plots."""

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dcond import __version__
from dcond.plot import line_plot


def accuracy_columns(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(stage, metric) pairs of every top-1 accuracy any row reports, in stage order."""
    columns: list[tuple[str, str]] = []
    for row in rows:
        for s in row["stages"]:
            columns += [(s["name"], m) for m in s["metrics"] if m.endswith("top1") and (s["name"], m) not in columns]
    return columns


def _value(row: dict[str, Any], stage: str, metric: str) -> float | None:
    return next((s["metrics"].get(metric) for s in row["stages"] if s["name"] == stage), None)


def _label_bytes(row: dict[str, Any]) -> int:
    """The soft labels a student of this row learns from: the last stage that holds a bank."""
    return next((s["label_bytes"] for s in reversed(row["stages"]) if s["label_bytes"]), 0)


def results_table(rows: list[dict[str, Any]]) -> str:
    columns = accuracy_columns(rows)
    matrix = list(rows[0]["matrix"]) if rows else []
    head = [*matrix, *(f"{stage} {m.split('/')[-1]}" for stage, m in columns), "label bytes", "time (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [str(row["matrix"][k]) for k in matrix]
        cells += [f"{v:.2%}" if (v := _value(row, *c)) is not None else "" for c in columns]
        cells += [f"{_label_bytes(row):,}", f"{sum(s['seconds'] for s in row['stages'] if not s['cached']):.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(out: Path, name: str, rows: list[dict[str, Any]], seconds: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    stages = [s for row in rows for s in row["stages"]]
    report = {"pipeline": name, "dcond_version": __version__,
              "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"), "seconds": round(seconds, 1),
              "stages_run": sum(not s["cached"] for s in stages), "stages_cached": sum(s["cached"] for s in stages),
              "rows": rows}
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    plots = _plots(out, rows)
    lines = [f"# Pipeline `{name}`", "",
             f"dcond {__version__}, finished {report['finished']}, {seconds:.0f} s "
             f"({report['stages_run']} stages run, {report['stages_cached']} cached).", "",
             "## Results", "", results_table(rows), "", *(f"![{p.stem}]({p.name})" for p in plots), "",
             "## Stages", "", "| row | stage | command | cached | time (s) | peak memory (MB) | bytes | key |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {row['label']} | {s['name']} | {s['run']} | {'yes' if s['cached'] else 'no'} | {s['seconds']:.0f} | "
              f"{s['peak_rss_mb']:.0f} | {s['bytes']:,} | `{s['key'][:12]}` |" for row in rows for s in row["stages"]]
    (out / "report.md").write_text("\n".join(lines) + "\n")


def _plots(out: Path, rows: list[dict[str, Any]]) -> list[Path]:
    columns = accuracy_columns(rows)
    if not columns:
        return []
    plots = []
    numeric = [k for k in (rows[0]["matrix"] if rows else {}) if all(isinstance(r["matrix"][k], (int, float))
                                                                     for r in rows)]
    if numeric:
        x = numeric[0]
        series = {f"{stage} {m.split('/')[-1]}": [(r["matrix"][x], v) for r in rows if (v := _value(r, stage, m))
                                                  is not None] for stage, m in columns}
        safe = re.sub(r"[^\w-]", "_", x)
        plots.append(out / f"accuracy-vs-{safe}.png")
        line_plot(plots[-1], series, x, "top-1", f"accuracy against {x}")
    final = columns[-1]
    points = [(_label_bytes(r), v) for r in rows if _label_bytes(r) and (v := _value(r, *final)) is not None]
    if points:
        plots.append(out / "accuracy-vs-label-bytes.png")
        line_plot(plots[-1], {f"{final[0]} top-1": points}, "soft-label bytes (log)", "top-1",
                  "accuracy against label storage", log_x=True)
    return plots
