"""Speed-up of two torchrun ranks over one process on this machine's CPU (gloo), for the stages that split
their work over ranks: relabel (bank epochs) and select (classes).

Makes a Fashion-MNIST teacher (or takes --teacher) and random images at --ipc, then times, interleaved
--repeats times: one process with one thread, one process with two threads, and `torchrun --standalone
--nproc-per-node 2` with one thread per rank, all with --device cpu. Prints the median wall times and the
speed-ups of the two ranks.

Usage: python benchmarks/ranks.py [--teacher DIR] [--ipc 50] [--epochs 40] [--repeats 3]
"""

import argparse
import os
import subprocess
import sys
import time

from common import DCOND, OUT, machine, median, step

LAUNCHES = {
    "1 process, 1 thread": (DCOND, "1"),
    "1 process, 2 threads": (DCOND, "2"),
    "2 ranks (gloo), 1 thread each": ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                                       "--nproc-per-node", "2", "-m", "dcond"], "1"),
}


def wall_time(launch: list[str], threads: str, args: list) -> float:
    env = os.environ | {"OMP_NUM_THREADS": threads}
    t0 = time.perf_counter()
    subprocess.run([*launch, *map(str, args), "--device", "cpu", "--force"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default=None)
    parser.add_argument("--ipc", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = OUT / "ranks"
    teacher = args.teacher or step(work / "teacher", "train-teacher", "--epochs", 2)
    images = step(work / "images", "select", teacher, "--method", "random", "--ipc", args.ipc)
    stages = {f"relabel --epochs {args.epochs}": ["relabel", images, "--teacher", teacher, "--epochs", args.epochs,
                                                  "--out", work / "labels"],
              "select --method herding": ["select", teacher, "--method", "herding", "--ipc", args.ipc,
                                          "--out", work / "herding"]}
    times = {(s, name): [] for s in stages for name in LAUNCHES}
    for _ in range(args.repeats):
        for stage, command in stages.items():
            for name, (launch, threads) in LAUNCHES.items():
                times[stage, name].append(wall_time(launch, threads, command))
    print(f"Fashion-MNIST, IPC {args.ipc}; {machine()}; medians of {args.repeats}\n")
    print("| stage | " + " | ".join(LAUNCHES) + " | 2 ranks against 1 thread | against 2 threads |")
    print("|---|" + "---|" * (len(LAUNCHES) + 2))
    for stage in stages:
        m = [median(times[stage, name]) for name in LAUNCHES]
        print(f"| {stage} | " + " | ".join(f"{v:.1f} s" for v in m) + f" | {m[0] / m[2]:.2f}× | {m[1] / m[2]:.2f}× |")


if __name__ == "__main__":
    main()
