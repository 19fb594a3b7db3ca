"""The report of a pipeline run: report.json for machines, report.md with a results table and PNG plots."""

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dcond import __version__
from dcond.artifact import portable
from dcond.plot import Point, Reference, accuracy_lines, accuracy_vs_bytes


def accuracy_columns(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(stage, metric) pairs of every top-1 accuracy any row reports, in stage order."""
    columns: list[tuple[str, str]] = []
    for row in rows:
        for s in row["stages"]:
            columns += [(s["name"], m) for m in s["metrics"]  # a model's top-1, or students' mean top-1 per model
                        if m.endswith(("top1", "top1_mean")) and "/baseline/" not in m
                        and (s["name"], m) not in columns]
    return columns


def column_name(stage: str, metric: str) -> str:
    return f"{stage} {metric.split('/')[-1]}"


def _value(row: dict[str, Any], stage: str, metric: str) -> float | None:
    return next((s["metrics"].get(metric) for s in row["stages"] if s["name"] == stage), None)


def bank_stages(rows: list[dict[str, Any]]) -> list[str]:
    """The stages whose artifacts hold a soft-label bank, in stage order."""
    names: list[str] = []
    for row in rows:
        names += [s["name"] for s in row["stages"] if s["label_bytes"] and s["name"] not in names]
    return names


def _bank_bytes(row: dict[str, Any], stage: str) -> int | None:
    return next((s["label_bytes"] for s in row["stages"] if s["name"] == stage and s["label_bytes"]), None)


def _input_bank_bytes(row: dict[str, Any], stage: str) -> int | None:
    """The bytes of the bank a stage learned from: the bank its input artifact holds, if any."""
    source = next((s.get("input") for s in row["stages"] if s["name"] == stage), None)
    return next((s["label_bytes"] for s in row["stages"] if s["path"] == source and s["label_bytes"]), None)


def results_table(rows: list[dict[str, Any]]) -> str:
    columns, banks = accuracy_columns(rows), bank_stages(rows)
    matrix = list(rows[0]["matrix"]) if rows else []
    head = [*matrix, *(column_name(*c) for c in columns), *(f"{b} bytes" for b in banks), "time (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [str(row["matrix"][k]) for k in matrix]
        cells += [f"{v:.2%}" if (v := _value(row, *c)) is not None else "" for c in columns]
        cells += [f"{v:,}" if (v := _bank_bytes(row, b)) is not None else "" for b in banks]
        cells.append(f"{sum(s['seconds'] for s in row['stages'] if not s['cached']):.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(out: Path, name: str, rows: list[dict[str, Any]], seconds: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    stages = [s for row in rows for s in row["stages"]]
    report = {"pipeline": name, "dcond_version": __version__,
              "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"), "seconds": round(seconds, 1),
              "stages_run": sum(not s["cached"] for s in stages), "stages_cached": sum(s["cached"] for s in stages),
              "rows": portable(rows, out.resolve())}  # the stages' artifacts relative to the report, as manifests do
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
    references = _teacher_references(rows, columns)
    lines = [Reference(column_name(*c), v) for c, v in references.items()]
    columns = [c for c in columns if c not in references]
    plots = []
    x = next((k for k in (rows[0]["matrix"] if rows else {})  # the first numeric matrix key, such as ipc
              if all(isinstance(r["matrix"][k], (int, float)) for r in rows)), None)
    by_x = [Point(r["matrix"][x], v, column_name(stage, m)) for stage, m in columns for r in rows
            if (v := _value(r, stage, m)) is not None] if x else []
    if by_x:
        safe = re.sub(r"[^\w-]", "_", x)
        plots.append(out / f"accuracy-vs-{safe}.png")
        label = "images per class (IPC)" if x == "ipc" else x
        accuracy_lines(plots[-1], by_x, label, f"top-1 accuracy against {label}", lines)
    by_bank = [Point(b, v, column_name(stage, m), group=r["label"]) for stage, m in columns for r in rows
               if (b := _input_bank_bytes(r, stage)) and (v := _value(r, stage, m)) is not None]
    if by_bank:
        plots.append(out / "accuracy-vs-label-bytes.png")
        accuracy_vs_bytes(plots[-1], by_bank, "bytes of the soft-label bank the student read (log scale)",
                          "top-1 accuracy against label storage, one point per run", lines)
    return plots


def _teacher_references(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> dict[tuple[str, str], float]:
    """The accuracies of teachers that every row shares: drawn as a line across the plots, not as a series."""
    references = {}
    for stage, metric in columns:
        runs = {s["run"] for r in rows for s in r["stages"] if s["name"] == stage}
        values = {v for r in rows if (v := _value(r, stage, metric)) is not None}
        if runs == {"train-teacher"} and len(values) == 1:
            references[(stage, metric)] = values.pop()
    return references
