"""Every method's condensed set judged across architectures (issue #16, part 5): `dcond evaluate` of the IPC-10
labels of each method (seed 0 of benchmarks/methods.py, which must have run) with students of four
architectures × several seeds, against random real images under the same protocol, with DD-Ranking's scores.

Usage: python benchmarks/architectures.py [--epochs 300] [--seeds 3] [--models convnet,tv:resnet18,...]
       [--methods "select random" ...] [--device auto]
Every student's result is kept in the evaluation cache beside the methods' steps (`evaluate --cache`): a run
that stops resumes, the random baseline is trained once for all methods, and processes given different
--models share the work (a run with all models then only reads).
"""

import argparse
import json

from common import dcond, machine
from methods import SOURCES, Setup, tag_of

# The fourth, from timm: RegNetX-200MF. EfficientNet-B0 (in SCORE's list) hardly learns 28-pixel images from 100:
# a student of random images with their bank reached 20.3 % after 300 epochs, RegNetX 72.4 % (seed 0, test split).
MODELS = "convnet,tv:resnet18,tv:mobilenet_v2,timm:regnetx_002"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--models", default=MODELS)
    parser.add_argument("--methods", nargs="*", default=list(SOURCES))
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    rows = []
    for name in args.methods:
        labels = Setup().root / f"{tag_of(name, args.ipc, 0)}-labels"
        out, _ = dcond("evaluate", labels, "--models", args.models, "--seeds", args.seeds, "--epochs", args.epochs,
                       "--baseline", "random", "--device", args.device, "--cache", Setup().root / "evaluate-cache",
                       "--json")
        for model, r in json.loads(out)["students"].items():
            rows.append((name, model, r))
    print(f"Fashion-MNIST IPC {args.ipc}, {args.seeds} seeds, {args.epochs} student epochs, {machine()}\n")
    print("| set | model | top-1 mean ± std | random | hard labels | set, random without augmentation | IOR | HLR "
          "| LRS | ARS |\n|---|---|---|---|---|---|---|---|---|---|")
    for name, model, r in rows:
        s, base = r["scores"], r["baseline"]
        hlr, lrs = ("—", "—") if s["hlr"] is None else (f"{s['hlr']:.2%}", f"{s['lrs']:.4f}")
        print(f"| {name} | {model} | {spread(r)} | {spread(base['random'])} | {spread(base['hard_labels'])} | "
              f"{base['set_without_augmentation']['top1_mean']:.2%}, "
              f"{base['random_without_augmentation']['top1_mean']:.2%} | {s['ior']:+.2%} | {hlr} | {lrs} | "
              f"{s['ars']:.4f} |")


def spread(record: dict) -> str:
    return f"{record['top1_mean']:.2%} ± {record['top1_std']:.2%}"


if __name__ == "__main__":
    main()
