"""How sure the teacher is on the views of a soft-label bank: over every stored view, the mean of the teacher's
top probability and the mean entropy of its distribution (softmax of the stored logits, temperature 1).

Usage: .venv/bin/python benchmarks/bank_confidence.py LABELS [LABELS ...]
"""

import argparse
from pathlib import Path

import torch

from dcond.artifact import open_artifact
from dcond.bank import open_bank
from dcond.errors import DcondError


def confidence(path: Path) -> tuple[float, float, int]:
    """(mean top probability, mean entropy in nats, views) over every epoch of the bank at `path`."""
    bank = open_bank(open_artifact(path, kinds=["labels"]))
    if bank.epochs is None:
        raise DcondError(f"{path} holds a pool that serves any number of epochs: it has no fixed set of views")
    top = entropy = 0.0
    views = 0
    for e in range(bank.epochs):
        for batch in bank.epoch(e):
            p = batch.logits.softmax(1)
            top += float(p.max(1).values.sum())
            entropy += float(-(p * p.clamp_min(1e-12).log()).sum())
            views += len(p)
    return top / views, entropy / views, views


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("labels", type=Path, nargs="+")
    args = parser.parse_args()
    print("| labels | mean top probability | mean entropy (nats) | views |\n|---|---|---|---|")
    with torch.no_grad():
        for path in args.labels:
            try:
                top, entropy, views = confidence(path)
            except DcondError as e:
                raise SystemExit(str(e)) from None
            print(f"| {path.name} | {top:.4f} | {entropy:.4f} | {views:,} |")


if __name__ == "__main__":
    main()
