"""Accuracy against the bytes of the whole condensed set (images + soft labels), for every method and label form
the methods benchmark (benchmarks/methods.py) has trained students for (with --ablations, also its runs
with extra flags), with the Pareto front (issue #17).

Reads the students methods.py left under its output folder; trains nothing. A point is one method with one
label form (fp16 bank, a compress-labels form, or hard labels), its accuracy the mean over the seeds trained and
its bytes the median over them: the PNG images plus the bank's files, as a colleague would receive them.

Usage: .venv/bin/python benchmarks/pareto.py [--root OUT/methods] [--ipc 10] [--protocol defaults|tuned] [--plot PATH]
       [--ablations]
"""

import argparse
import json
import re
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from common import OUT, metrics
from methods import SOURCES

from dcond.plot import Point, accuracy_vs_bytes, pareto_front


def manifest(path: Path) -> dict:
    return json.loads((path / "dcond.json").read_text())


def files_bytes(path: Path, prefix: str) -> int:
    """Bytes of an artifact's files under `prefix` (images/, bank/), as its manifest records them."""
    return sum(e["size"] for name, e in manifest(path)["files"].items() if name.startswith(prefix))


# each compress-labels step of a bank's chain in words
STEP_WORDS = {"prune": lambda p: f"prune {p['keep']:.0%}", "topk": lambda p: f"top-{p['k']}",
              "lowrank": lambda p: f"rank-{p['rank']}", "quantize": lambda p: p["dtype"]}


def form_of(labels: dict | None) -> str:
    """'fp16', 'hard labels', or the compress-labels chain in words: 'prune 7% int4', 'rank-1 int8'."""
    if labels is None:
        return "hard labels"
    return " ".join(STEP_WORDS[step["method"]](step) for step in labels["bank"].get("chain", [])) or "fp16"


def parent(path: Path) -> Path:
    """The artifact `path` was made from (its images or labels; never its teacher)."""
    entry = next(p for p in manifest(path)["parents"] if p["role"] in ("images", "labels"))
    return (path / entry["path"]).resolve()  # an absolute path stays as it is


def student_point(student: Path) -> tuple[str, str, float, int, int]:
    """(method, label form, top-1, image bytes, label bytes) of one student of the benchmark."""
    trained_on = parent(student)
    images = trained_on
    while manifest(images)["kind"] == "labels":  # a compressed bank's parent is the fp16 bank, whose is the images
        images = parent(images)
    labels = manifest(trained_on).get("labels")
    method = re.sub(r"-ipc\d+-seed\d+$", "", images.name)
    label_bytes = files_bytes(trained_on, "bank/") if labels else 0
    return method, form_of(labels), metrics(str(student))["top1"], files_bytes(images, "images/"), label_bytes


@dataclass(frozen=True)
class Row:
    """One method with one label form, over the seeds trained."""

    method: str
    form: str
    top1: list[float]
    image_bytes: int  # medians over the seeds
    label_bytes: int

    @property
    def total(self) -> int:
        return self.image_bytes + self.label_bytes

    @property
    def mean(self) -> float:
        return statistics.mean(self.top1)


def collect(root: Path, ipc: int, tuned: bool, methods: set[str] | None) -> list[Row]:
    """The benchmark's students of one IPC and protocol, grouped by method and label form; in increasing total
    bytes. `methods`: only these (None: every one, ablations included)."""
    runs = defaultdict(list)
    for student in sorted(root.glob(f"*-ipc{ipc}-seed*-student")):
        if ("-tuned-" in student.name) == tuned and (student / "metrics.json").exists():
            method, form, *run = student_point(student)
            if methods is None or method in methods:
                runs[method, form].append(run)
    rows = [Row(method, form, [r[0] for r in rs], int(statistics.median(r[1] for r in rs)),
                int(statistics.median(r[2] for r in rs))) for (method, form), rs in runs.items()]
    return sorted(rows, key=lambda r: r.total)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=Path, default=OUT / "methods", help="methods.py's output folder")
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--protocol", choices=["defaults", "tuned"], default="defaults")
    parser.add_argument("--plot", type=Path, default=OUT / "pareto.png")
    parser.add_argument("--ablations", action="store_true", help="also the methods run with extra flags")
    args = parser.parse_args()
    methods = None if args.ablations else {name.replace(" ", "-") for name in SOURCES}
    rows = collect(args.root, args.ipc, args.protocol == "tuned", methods)
    front = set(pareto_front((r.total, r.mean) for r in rows))
    print("| images | labels | total bytes | image bytes | label bytes | top-1, mean ± std | seeds | on the front |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        spread = statistics.stdev(r.top1) if len(r.top1) > 1 else 0.0
        print(f"| {r.method} | {r.form} | {r.total:,} | {r.image_bytes:,} | {r.label_bytes:,} | {r.mean:.2%} ± "
              f"{spread:.2%} | {len(r.top1)} | {'yes' if (r.total, r.mean) in front else ''} |")
    accuracy_vs_bytes(args.plot, [Point(r.total, r.mean, r.form, r.method) for r in rows],
                      "condensed set bytes: PNG images + soft-label bank (log scale)",
                      f"Fashion-MNIST IPC {args.ipc}: student top-1 against the condensed set's bytes",
                      y_label="student top-1, mean over seeds (%)")
    print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
