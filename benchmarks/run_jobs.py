"""`dcond run --jobs 2` on a CPU: every stage with torch's default threads (one per core, in each process) against
each stage with its share of the cores, what `dcond run` gives stages unless OMP_NUM_THREADS is set.

The pipeline: a teacher (one epoch on a 6,000-image Fashion-MNIST subset), then two rows side by side (seeds 0
and 1): random images at IPC 10, a 50-epoch bank, a 50-epoch ConvNet-128 student. Each run starts from an
empty cache; the table gives the median wall time of the whole run and of its stages over `--repeats` runs,
the two settings alternating so that both see the same machine.

Usage (with OMP_NUM_THREADS unset): python benchmarks/run_jobs.py [--repeats 3]
"""

import argparse
import json
import os
import shutil
from collections import defaultdict

from common import OUT, dcond, machine, median

PIPELINE = """\
[pipeline]
name = "jobs"

[matrix]
seed = [0, 1]

[[stage]]
name = "teacher"
run = "train-teacher"
subset = 6000
epochs = 1
model-opt = ["width=64"]
device = "cpu"

[[stage]]
name = "images"
run = "select"
method = "random"
ipc = 10
seed = "${seed}"

[[stage]]
name = "labels"
run = "relabel"
teacher = ["@teacher"]
epochs = 50
seed = "${seed}"

[[stage]]
name = "student"
run = "train-student"
epochs = 50
seed = "${seed}"
device = "cpu"
"""


def run_once(folder, threads: int | None) -> dict[str, float]:
    """One run from an empty cache; its wall time and the summed seconds of each stage."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "jobs.toml").write_text(PIPELINE)
    _, seconds = dcond("run", folder / "jobs.toml", "--jobs", 2, "--cache", folder / "cache", "--out",
                       folder / "report", log=folder / "run.log", threads=threads)
    times = {"whole run": seconds}
    for row in json.loads((folder / "report" / "report.json").read_text())["rows"]:
        for stage in row["stages"]:
            if not stage["cached"]:
                times[stage["name"]] = times.get(stage["name"], 0.0) + stage["seconds"]
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if "OMP_NUM_THREADS" in os.environ:
        raise SystemExit("unset OMP_NUM_THREADS: this benchmark sets it itself")
    settings = {f"torch's default ({os.cpu_count()} threads per stage)": os.cpu_count(),
                "a share of the cores per stage (dcond run)": None}
    times = defaultdict(lambda: defaultdict(list))
    for _ in range(args.repeats):
        for name, threads in settings.items():
            for stage, seconds in run_once(OUT / "run_jobs", threads).items():
                times[name][stage].append(seconds)
    print(f"{machine()}; `dcond run --jobs 2`, median of {args.repeats} runs; stage times summed over the rows\n")
    stages = list(next(iter(times.values())))
    print("| threads | " + " | ".join(f"{s} (s)" for s in stages) + " |\n|---|" + "---|" * len(stages))
    for name, by_stage in times.items():
        print(f"| {name} | " + " | ".join(f"{median(by_stage[s]):.0f}" for s in stages) + " |")


if __name__ == "__main__":
    main()
