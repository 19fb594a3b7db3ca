"""Card and preview sizes of an images artifact at ImageNet-1k IPC 10 (issue #20): preview.png must stay under
5 MB and README.md under 20 KB, however many classes and images the artifact holds.

Makes a generated folder laid out as ImageNet is unpacked (1,000 classes of 224-px JPEGs, 10 training and 1
validation image per class; imagenet_shape.py), imports an untrained ConvNet (width 8, depth 2) as the teacher
(`train-teacher --epochs 0 --weights`: the teacher only names the data here, so it is as cheap as it can be), runs
`select --method random --ipc 10` as a subprocess and reports the sizes of the artifact's files.
Exits 1 if a limit is exceeded.

Usage: python benchmarks/card_size.py [--classes 1000] [--size 224] [--ipc 10] [--work DIR]
       (DIR defaults to $DCOND_BENCH_OUT/cards; the generated folder in it is reused by later runs)
"""

import argparse
import sys
from pathlib import Path

from PIL import Image
from safetensors.torch import save_file

from common import OUT, machine
from dcond.models import ModelSpec, create_model, state_tensors
from imagenet_shape import imagenet_layout
from memory import measured

OPTIONS = {"width": 8, "depth": 2}
LIMITS = {"preview.png": 5_000_000, "README.md": 20_000}  # bytes (issue #20)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--work", type=Path, default=OUT / "cards")
    args = parser.parse_args()
    work, cpu = args.work, ["--device", "cpu", "--force"]
    data = work / "imagenet"
    if not data.exists():
        imagenet_layout(data, args.classes, args.size, per_class=args.ipc)
    weights, teacher, images = work / "convnet.safetensors", work / "teacher", work / "images"
    save_file(state_tensors(create_model(ModelSpec("convnet", 3, args.classes, args.size, OPTIONS))), weights)
    model = ["--model", "convnet", *(f for k, v in OPTIONS.items() for f in ("--model-opt", f"{k}={v}"))]
    measured("train-teacher", "--data", data, "--image-size", args.size, *model, "--epochs", 0,
             "--weights", weights, *cpu, "--out", teacher)
    seconds, rss = measured("select", teacher, "--method", "random", "--ipc", args.ipc, *cpu, "--out", images)
    files = [p for p in images.rglob("*") if p.is_file()]
    width, height = Image.open(images / "preview.png").size
    print(f"\n{args.classes} classes × IPC {args.ipc} at {args.size} px (select --method random); {machine()}\n")
    print("| measure | value |\n|---|---|")
    failed = []
    for name in ("preview.png", "README.md", "dcond.json"):
        size = (images / name).stat().st_size
        limit = LIMITS.get(name)
        verdict = "" if limit is None else f" (limit {limit:,}: {'ok' if size < limit else 'EXCEEDED'})"
        if limit is not None and size >= limit:
            failed.append(name)
        print(f"| {name} bytes | {size:,}{verdict} |")
    print(f"| preview.png pixels | {width} × {height} |")
    print(f"| files in the artifact | {len(files):,} |")
    print(f"| all files, bytes | {sum(p.stat().st_size for p in files):,} |")
    print(f"| select wall time (s) | {seconds:.1f} |")
    print(f"| select peak RSS (MB) | {rss:,.0f} |")
    if failed:
        sys.exit(f"over the limit: {', '.join(failed)}")


if __name__ == "__main__":
    main()
