"""How fast dcond answers what needs no training: help, an argument error, inspect and verify.

Each command runs as a user runs it (the installed `dcond` script, a new process), `--repeats` times; the table
gives the median and the slowest wall time. The artifact inspected and verified is a small teacher trained
here on a Fashion-MNIST subset.

Usage: python benchmarks/startup.py [--repeats 5]
"""

import argparse
import subprocess
import time

from common import DCOND, OUT, machine, median, step

COMMANDS = {
    "dcond --help": ["--help"],
    "dcond relabel --help": ["relabel", "--help"],
    "dcond synthesize --help": ["synthesize", "--help"],
    "dcond select --method nope (argument error)": ["select", "ARTIFACT", "--method", "nope"],
    "dcond inspect TEACHER": ["inspect", "ARTIFACT"],
    "dcond verify TEACHER": ["verify", "ARTIFACT"],
}


def wall_time(args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([*DCOND, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    teacher = step(OUT / "startup" / "teacher", "train-teacher", "--subset", 200, "--epochs", 1,
                   "--model-opt", "width=8")
    print(f"{machine()}; {args.repeats} runs each\n")
    print("| command | median (s) | slowest (s) |\n|---|---|---|")
    for name, command in COMMANDS.items():
        times = [wall_time([teacher if a == "ARTIFACT" else a for a in command]) for _ in range(args.repeats)]
        print(f"| `{name}` | {median(times):.2f} | {max(times):.2f} |", flush=True)


if __name__ == "__main__":
    main()
