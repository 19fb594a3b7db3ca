"""Generative condensation benchmark on Fashion-MNIST: the size of a class-conditional generator against the
PNG pixel sets it replaces, and the accuracy of students trained on its samples against pixel sets made by
`select --method random` and `synthesize --method sre2l`, at IPC 10, 50 and 100. Every set is relabelled
and trained with the same settings (soft labels of the same teacher, same student, same epochs).

Usage: .venv/bin/python benchmarks/generative.py --teacher TEACHER_ARTIFACT [--steps 500] [--synth-iterations 150]
Prints the settings and markdown tables of sizes, accuracies and wall times.
"""

import argparse
from pathlib import Path

from common import OUT, dcond, machine, metrics

from dcond.artifact import open_artifact

IPCS = (10, 50, 100)
METHODS = ("random", "sre2l", "generative")


def content_bytes(path: str) -> int:
    """Bytes of the condensed content: the PNG files of an images artifact, the weights of a generator."""
    art = open_artifact(path)
    if art.kind == "generator":
        return art.files[art.section["weights"]]["size"]
    return sum(e["size"] for name, e in art.files.items() if name.startswith("images/"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--teacher", type=Path, default=Path("/work/bench/teacher"))
    parser.add_argument("--steps", type=int, default=500, help="generator training steps")
    parser.add_argument("--synth-iterations", type=int, default=150, help="sre2l iterations per unit")
    parser.add_argument("--epochs", type=int, nargs=3, default=(200, 80, 50),
                        help="relabel and student epochs at IPC 10, 50, 100")
    args = parser.parse_args()
    out, log = OUT / "generative", OUT / "generative.log"
    out.mkdir(parents=True, exist_ok=True)
    teacher, common = args.teacher, ["--device", "cpu", "--force"]
    generator, train_s = dcond("synthesize", teacher, "--method", "generative", "--iterations", args.steps,
                               "--out", out / "generator", *common, log=log)
    sizes, accuracy, seconds = {}, {}, {}
    for ipc, epochs in zip(IPCS, args.epochs):
        make = {"random": ("select", teacher, "--method", "random", "--ipc", ipc),
                "sre2l": ("synthesize", teacher, "--method", "sre2l", "--ipc", ipc, "--iterations",
                          args.synth_iterations),
                "generative": ("sample", generator, "--ipc", ipc)}
        for method, command in make.items():
            images, made_s = dcond(*command, "--out", out / f"{method}-ipc{ipc}", *common, log=log)
            labels, relabel_s = dcond("relabel", images, "--teacher", teacher, "--epochs", epochs,
                                      "--out", out / f"{method}-ipc{ipc}-labels", *common, log=log)
            student, student_s = dcond("train-student", labels, "--model", "convnet", "--model-opt", "width=64",
                                       "--epochs", epochs, "--out", out / f"{method}-ipc{ipc}-student", *common,
                                       log=log)
            sizes[method, ipc] = content_bytes(images)
            accuracy[method, ipc] = metrics(student)["top1"]
            seconds[method, ipc] = (made_s, relabel_s, student_s)
    print(f"Fashion-MNIST, teacher `{teacher}`, on {machine()}. Generator: {args.steps} steps "
          f"({train_s:.0f} s); sre2l: {args.synth_iterations} iterations per unit; relabel and student epochs "
          f"{', '.join(f'{e} at IPC {i}' for i, e in zip(IPCS, args.epochs))}.\n")
    print(f"Generator weights: {content_bytes(generator):,} bytes at every IPC.\n")
    print("| IPC | random PNGs (bytes) | sre2l PNGs (bytes) | generator samples as PNGs (bytes) | generator (bytes) |")
    print("|---|---|---|---|---|")
    for ipc in IPCS:
        print(f"| {ipc} | " + " | ".join(f"{sizes[m, ipc]:,}" for m in METHODS) + f" | {content_bytes(generator):,} |")
    print("\n| IPC | epochs | random | sre2l | generative |\n|---|---|---|---|---|")
    for ipc, epochs in zip(IPCS, args.epochs):
        print(f"| {ipc} | {epochs} | " + " | ".join(f"{accuracy[m, ipc]:.2%}" for m in METHODS) + " |")
    print("\n| IPC | method | make images (s) | relabel (s) | student (s) |\n|---|---|---|---|---|")
    for (method, ipc), (made_s, relabel_s, student_s) in seconds.items():
        print(f"| {ipc} | {method} | {made_s:.0f} | {relabel_s:.0f} | {student_s:.0f} |")


if __name__ == "__main__":
    main()
