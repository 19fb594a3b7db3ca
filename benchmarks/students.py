"""Student benchmark: Fashion-MNIST test accuracy of a ConvNet student at IPC 1, 10 and 50, trained on the
teacher's soft labels (relabel + bank replay, the best settings found) and, as the baseline, on the same
random real images with hard labels.

Per IPC and image source: `select` with the teacher, `relabel` the images, `train-student` on the bank; for
the random images also `train-student` on the images alone (hard labels, same student settings). Epochs
differ per IPC (below) so the run fits the 2-core CPU. Prints one markdown table.

Usage: .venv/bin/python benchmarks/students.py --teacher /work/bench/teacher [--ipc 1 10 50]
"""

import argparse

from common import OUT, RELABEL_FLAGS, STUDENT_FLAGS, dcond, machine, metrics

SETTINGS = {  # per IPC: relabel and student epochs, `select` methods that make the images
    1: {"epochs": 2000, "sources": ["random", "herding"]},
    10: {"epochs": 1000, "sources": ["random"]},
    50: {"epochs": 300, "sources": ["random"]},
}
PUBLISHED = {1: "DC 70.5, DSA 70.6, KIP 76.7", 10: "DC 82.3, DSA 84.6, KIP 88.8", 50: "DC 83.6, DSA 88.7, KIP 91.0"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--teacher", default="/work/bench/teacher")
    parser.add_argument("--ipc", type=int, nargs="+", default=list(SETTINGS))
    args = parser.parse_args()
    rows = [row for ipc in args.ipc for row in run_ipc(ipc, args.teacher)]
    print(f"Fashion-MNIST, teacher {args.teacher}, {machine()}; relabel flags {' '.join(RELABEL_FLAGS)}, "
          f"student flags {' '.join(STUDENT_FLAGS)} (ConvNet-128 student)\n")
    print("| IPC | images | labels | epochs | test top-1 | seconds (relabel + student) | published (ConvNet) |")
    print("|---|---|---|---|---|---|---|")
    for ipc, source, labels, epochs, top1, seconds in rows:
        print(f"| {ipc} | {source} | {labels} | {epochs} | {top1:.2%} | {seconds:.0f} | {PUBLISHED[ipc]} |")


def run_ipc(ipc: int, teacher: str) -> list[tuple]:
    epochs, log, rows = SETTINGS[ipc]["epochs"], OUT / "students.log", []
    for source in SETTINGS[ipc]["sources"]:
        tag = OUT / f"students-ipc{ipc}-{source}"
        images, _ = dcond("select", teacher, "--method", source, "--ipc", ipc, "--out", tag, "--force", log=log)
        bank, relabel_s = dcond("relabel", images, "--teacher", teacher, "--epochs", epochs, *RELABEL_FLAGS,
                                "--out", f"{tag}-labels", "--force", log=log)
        soft, soft_s = dcond("train-student", bank, "--epochs", epochs, *STUDENT_FLAGS, "--out", f"{tag}-soft",
                             "--force", log=log)
        rows.append((ipc, source, "soft (bank)", epochs, metrics(soft)["top1"], relabel_s + soft_s))
        if source == "random":
            hard, hard_s = dcond("train-student", images, "--epochs", epochs, *STUDENT_FLAGS, "--out",
                                 f"{tag}-hard", "--force", log=log)
            rows.append((ipc, source, "hard", epochs, metrics(hard)["top1"], hard_s))
    return rows


if __name__ == "__main__":
    main()
