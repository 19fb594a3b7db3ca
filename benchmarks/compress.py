"""Label-compression benchmark: students trained on Fashion-MNIST from the uncompressed fp16 soft-label bank and
from compressed forms of it (`dcond compress-labels`), at IPC 10 and IPC 50.

Per IPC: `select` random real images with the teacher, `relabel` them (the dense fp16 bank), compress the
bank in each form below, and train a ConvNet student from every bank (one CPU thread per student, --jobs
students at a time). The fp16 bank and the most accurate form at least 50× smaller (by the first seed) are
trained with more seeds; the table quotes medians. Prints one markdown table per IPC and writes PNG plots
of accuracy against bank size.

Steps whose output an earlier run left under the output folder are not run again (delete it to start
afresh), so an interrupted benchmark continues, and a form added to FORMS costs only its own runs.

Usage: .venv/bin/python benchmarks/compress.py [--teacher /work/bench/teacher] [--ipc 10 50] [--jobs 2]
"""

import argparse
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import OUT, dcond, machine, median, metrics, step

from dcond.plot import Point, Reference, accuracy_vs_bytes

ZSTD = ["--zstd-level", "19"]
FORMS = {  # name: compress-labels flags
    "int8": ["--method", "quantize", *ZSTD],
    "top-2 int8": ["--method", "topk+quantize", "--k", "2", "--fill", "uniform", *ZSTD],
    "rank-1 int8": ["--method", "lowrank+quantize", "--rank", "1", *ZSTD],
    "prune 50% + rank-2 int8": ["--method", "prune+lowrank+quantize", "--keep", "0.5", "--rank", "2", *ZSTD],
    "prune 10% + top-3 int8": ["--method", "prune+topk+quantize", "--keep", "0.1", "--k", "3", "--fill", "uniform",
                               *ZSTD],
    "prune 8% int8": ["--method", "prune+quantize", "--keep", "0.08", *ZSTD],
    # two ways to 100× at IPC 10: fewer views at int8, or more views at int4
    "prune 4% int8": ["--method", "prune+quantize", "--keep", "0.04", *ZSTD],
    "prune 7% int4": ["--method", "prune+quantize", "--keep", "0.07", "--dtype", "int4", *ZSTD],
}
SETTINGS = {  # per IPC: relabel and student epochs, forms compared, seeds of the key rows. A student costs about
    # 12 minutes at IPC 10 on the shared 2-core machine; IPC 50 is cut to 100 epochs, one form, one seed.
    10: {"epochs": 300, "forms": list(FORMS), "seeds": 3},
    50: {"epochs": 100, "forms": ["prune 8% int8"], "seeds": 1},
}
STUDENT = ["--model", "convnet", "--device", "cpu"]
AIM = 50  # the aim: at least this many times smaller, at most one point lower


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--teacher", default="/work/bench/teacher")
    parser.add_argument("--ipc", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"  # students run side by side, one thread each
    print(f"Machine: {machine()}; students one thread each, {args.jobs} at a time.\n")
    for ipc in args.ipc:
        rows = benchmark(ipc, SETTINGS[ipc], args)
        print(table(ipc, SETTINGS[ipc]["epochs"], rows))
        plot(rows, ipc, OUT / f"compress-ipc{ipc}.png")
        (OUT / f"compress-ipc{ipc}.json").write_text(json.dumps(rows, indent=2))


def benchmark(ipc: int, settings: dict, args) -> list[dict]:
    root, epochs = OUT / f"compress-ipc{ipc}", settings["epochs"]
    images = step(root / "images", "select", args.teacher, "--method", "random", "--ipc", ipc)
    dense = step(root / "fp16", "relabel", images, "--teacher", args.teacher, "--epochs", epochs)
    banks = {"fp16 (relabel)": (dense, [])}
    for name in settings["forms"]:
        banks[name] = (step(root / slug(name), "compress-labels", dense, *FORMS[name]), FORMS[name])
    rows = [describe(name, path, flags) for name, (path, flags) in banks.items()]
    train(rows, [0], epochs, root, args.jobs)
    fp16 = rows[0]
    best = max((r for r in rows if r["ratio"] >= AIM), key=lambda r: r["top1"][0], default=None)
    train([fp16] + ([best] if best else []), list(range(1, settings["seeds"])), epochs, root, args.jobs)
    for r in rows:
        r["median"] = median(r["top1"])
    return sorted(rows, key=lambda r: r["ratio"])


def slug(name: str) -> str:
    return re.sub(r"[^\w-]+", "_", name.replace("%", "pc")).strip("_")


def describe(name: str, path: str, flags: list[str]) -> dict:
    manifest = json.loads((Path(path) / "dcond.json").read_text())
    bank = manifest["labels"]["bank"]
    size = sum(e["size"] for n, e in manifest["files"].items() if n.startswith("bank/"))
    return {"form": name, "flags": " ".join(flags), "path": path, "bytes": size, "ratio": bank.get("ratio", 1.0),
            "kl": bank.get("kl", 0.0), "top1": [], "seconds": []}


def train(rows: list[dict], seeds: list[int], epochs: int, root: Path, jobs: int) -> None:
    """Train a student per (row, seed), `jobs` at a time; append their accuracies to the rows."""
    runs = [(r, s) for r in rows for s in seeds]

    def one(run) -> dict:
        r, seed = run
        out = root / "students" / f"{slug(r['form'])}-seed{seed}"
        record = out.parent / f"{out.name}.json"  # accuracy and time, written once the run is done
        if not record.exists():
            path, seconds = dcond("train-student", r["path"], *STUDENT, "--epochs", epochs, "--seed", seed, "--out",
                                  out, "--force")
            record.write_text(json.dumps({"top1": metrics(path)["top1"], "seconds": seconds}))
        return json.loads(record.read_text())

    with ThreadPoolExecutor(jobs) as pool:
        for (r, _), done in zip(runs, pool.map(one, runs)):
            r["top1"].append(done["top1"])
            r["seconds"].append(done["seconds"])


def table(ipc: int, epochs: int, rows: list[dict]) -> str:
    base = rows[0]["median"]
    lines = [f"IPC {ipc}: {epochs} relabel epochs, students `dcond train-student BANK {' '.join(STUDENT)} --epochs "
             f"{epochs} --seed S`\n", "| form | compress-labels flags | bank bytes | ratio | mean KL | student top-1 "
             "(median) | Δ vs fp16 | seeds | seconds per student |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['form']} | `{r['flags'] or '—'}` | {r['bytes']:,} | {r['ratio']:.1f}× | {r['kl']:.2g} | "
                     f"{r['median']:.2%} | {(r['median'] - base) * 100:+.2f} | "
                     f"{', '.join(f'{a:.2%}' for a in r['top1'])} | {median(r['seconds']):.0f} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], ipc: int, path: Path) -> None:
    """Student accuracy against bank bytes, one labelled point per form; dotted: the aim."""
    points = [Point(r["bytes"], r["median"], "fp16 bank" if r["ratio"] == 1 else "compressed banks", f"IPC {ipc}",
                    f"{r['form']} ({r['ratio']:.0f}×)") for r in rows]
    aim = [Reference(f"{AIM}× smaller than fp16", rows[0]["bytes"] / AIM, vertical=True),
           Reference("1 point below fp16", rows[0]["median"] - 0.01)]
    accuracy_vs_bytes(path, points, "soft-label bank bytes (log scale)",
                      f"Fashion-MNIST IPC {ipc}: student top-1 against soft-label bank size", aim,
                      "student top-1, median over seeds (%)")


if __name__ == "__main__":
    main()
