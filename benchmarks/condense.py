"""Condensed-image benchmark on Fashion-MNIST: the time each `select` and `synthesize` method takes, and the
test accuracy of a ConvNet student trained on its images with soft labels (relabel + bank replay) and
with hard labels.

Usage: .venv/bin/python benchmarks/condense.py TEACHER [--ipc 10] [--epochs 300] [--methods ...]
       [--time-only]  (selection/synthesis time only, no students)
"""

import argparse

from common import OUT, RELABEL_FLAGS, STUDENT_FLAGS, dcond, machine, metrics
from methods import SOURCES


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("teacher")
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=300, help="relabel and student epochs")
    parser.add_argument("--methods", nargs="*", default=list(SOURCES))
    parser.add_argument("--relabel", nargs="*", default=RELABEL_FLAGS, help="extra relabel flags")
    parser.add_argument("--student", nargs="*", default=STUDENT_FLAGS, help="extra train-student flags")
    parser.add_argument("--time-only", action="store_true")
    args = parser.parse_args()
    log = OUT / "condense.log"
    rows = []
    for name in args.methods:
        tag = f"{name.replace(' ', '-')}-ipc{args.ipc}"
        images, seconds = dcond(*SOURCES[name], args.teacher, "--ipc", args.ipc, "--out", OUT / tag, "--force",
                                log=log)
        row = [name, f"{seconds:.0f}"]
        if not args.time_only:
            labels, _ = dcond("relabel", images, "--teacher", args.teacher, "--epochs", args.epochs, *args.relabel,
                              "--out", OUT / f"{tag}-labels", "--force", log=log)
            soft, _ = dcond("train-student", labels, "--epochs", args.epochs, *args.student,
                            "--out", OUT / f"{tag}-soft", "--force", log=log)
            hard, _ = dcond("train-student", images, "--epochs", args.epochs, *args.student,
                            "--out", OUT / f"{tag}-hard", "--force", log=log)
            row += [f"{metrics(soft)['top1']:.2%}", f"{metrics(hard)['top1']:.2%}"]
        rows.append(row)
    flags = f"relabel flags {' '.join(args.relabel) or '-'}, student flags {' '.join(args.student) or '-'}"
    print(f"Fashion-MNIST, IPC {args.ipc}, teacher {args.teacher}, {machine()}; relabel/student epochs "
          f"{args.epochs}, {flags}\n")
    head = ["images", "time (s)"] + ([] if args.time_only else ["student, soft labels", "student, hard labels"])
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
