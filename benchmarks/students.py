"""Student benchmark: Fashion-MNIST test accuracy of a ConvNet student at IPC 1, 10 and 50, trained on the
teacher's soft labels (relabel + bank replay, the best settings found) and, as the baseline, on the same
random real images with hard labels.

Per IPC and image source: `select` with the teacher, `relabel` the images, `train-student` on the bank; for
the random images also `train-student` on the images alone (hard labels, same student settings), side by
side with the relabel and soft-label student (run it with OMP_NUM_THREADS=1). Epochs differ per IPC
(below) so the run fits the 2-core CPU. Steps whose output an earlier run left are not run again. Prints one
markdown table.

Usage: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/students.py --teacher /work/bench/teacher [--ipc 1 10 50]
"""

import argparse
from concurrent.futures import ThreadPoolExecutor

from common import OUT, RELABEL_FLAGS, STUDENT_FLAGS, machine, metrics, step

SETTINGS = {  # per IPC: relabel and student epochs, `select` methods that make the images
    1: {"epochs": 2000, "sources": ["random", "herding"]},
    10: {"epochs": 1000, "sources": ["random"]},
    50: {"epochs": 1000, "sources": ["random"]},
}
PUBLISHED = {1: "DC 70.5, DSA 70.6, KIP 76.7", 10: "DC 82.3, DSA 84.6, KIP 88.8", 50: "DC 83.6, DSA 88.7, KIP 91.0"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--teacher", default="/work/bench/teacher")
    parser.add_argument("--ipc", type=int, nargs="+", default=list(SETTINGS))
    args = parser.parse_args()
    rows = [row for ipc in args.ipc for source in SETTINGS[ipc]["sources"] for row in run(ipc, source, args.teacher)]
    print(f"Fashion-MNIST, teacher {args.teacher}, {machine()}; relabel flags {' '.join(RELABEL_FLAGS)}, "
          f"student flags {' '.join(STUDENT_FLAGS)} (ConvNet-128 student)\n")
    print("| IPC | images | labels | epochs | test top-1 | published (ConvNet) |\n|---|---|---|---|---|---|")
    for ipc, source, labels, epochs, top1 in rows:
        print(f"| {ipc} | {source} | {labels} | {epochs} | {top1:.2%} | {PUBLISHED[ipc]} |")


def run(ipc: int, source: str, teacher: str) -> list[tuple]:
    epochs, tag = SETTINGS[ipc]["epochs"], OUT / f"students-ipc{ipc}-{source}"
    student = ["train-student", "--epochs", epochs, *STUDENT_FLAGS]
    images = step(tag, "select", teacher, "--method", source, "--ipc", ipc)
    with ThreadPoolExecutor(1) as side:
        hard = side.submit(step, f"{tag}-hard", *student, images) if source == "random" else None
        bank = step(f"{tag}-labels", "relabel", images, "--teacher", teacher, "--epochs", epochs, *RELABEL_FLAGS)
        rows = [(ipc, source, "soft (bank)", epochs, metrics(step(f"{tag}-soft", *student, bank))["top1"])]
        if hard:
            rows.append((ipc, source, "hard", epochs, metrics(hard.result())["top1"]))
    return rows


if __name__ == "__main__":
    main()
