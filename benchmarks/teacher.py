"""Teacher benchmark: `dcond train-teacher` on the full Fashion-MNIST, a ConvNet of width 64, on this CPU.

Usage: .venv/bin/python benchmarks/teacher.py [--runs 3]
Prints a markdown table of test top-1 and wall time per run, and their medians.
"""

import argparse

from common import OUT, dcond, machine, median, metrics

COMMAND = ["train-teacher", "--data", "fashion-mnist", "--model", "convnet", "--model-opt", "width=64",
           "--epochs", "6", "--device", "cpu"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for run in range(args.runs):
        path, seconds = dcond(*COMMAND, "--seed", run, "--out", OUT / f"teacher-seed{run}", "--force")
        rows.append((run, metrics(path)["top1"], seconds))
    print(f"`dcond {' '.join(COMMAND)} --seed S` on {machine()}\n")
    print("| seed | test top-1 | wall time (s) |\n|---|---|---|")
    for seed, top1, seconds in rows:
        print(f"| {seed} | {top1:.2%} | {seconds:.0f} |")
    print(f"| median | {median([r[1] for r in rows]):.2%} | {median([r[2] for r in rows]):.0f} |")


if __name__ == "__main__":
    main()
