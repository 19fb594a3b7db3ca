"""Method benchmark on Fashion-MNIST: every `select` and `synthesize` method with its default (official) recipe,
then one common protocol for all (the same `relabel` and `train-student`: dcond's defaults, or with --protocol
tuned the settings of benchmarks/common.py) or, with --protocol rded|edc|sre2l, that method's authors' student recipe
(`train-student IMAGES --recipe R`, its teachers labelling online, no bank), over several seeds; mean ± std of
the student's test top-1 (with --validation F: of its top-1 on a validation split of F of the training images,
the test split untouched), and each method's time.

Teachers: the benchmark teacher (ConvNet-64, 6 epochs, as benchmarks/teacher.py) labels and observes for every
method; EDC also cycles observers of its CIFAR-10 script, each trained for one epoch as EDC's are (its squeeze
script keeps only the first epoch's weights): by default the teacher and the ConvNets (width 32, depth 1, depth 2,
and width 128 with instance norm), trained with dcond's teacher settings; with --observers edc the eight of its
CIFAR-10 script alone, in their CIFAR forms (ResNet-18, ConvNet-W128, MobileNet-V2 0.5×, WRN-16-2, ShuffleNet-V2
0.5×, ConvNet-D1, D2, W32), trained as its squeeze script trains them.

Usage: .venv/bin/python benchmarks/methods.py [--ipc 10] [--seeds 3] [--epochs 300] [--methods ...]
       [--lowrank 1 2]  (also: each bank as rank-R factors per image, to compare selections at equal bank bytes)
       [--compress "prune 7% int4" ...]  (also: each bank in these forms of benchmarks/compress.py)
       [--init-from "select random"]  (synthesis from real images starts from that method's images, same seed)
       [--validation 0.1] [--protocol defaults|tuned|rded|edc|sre2l] [--observers convnets|edc]
A method may carry flags for an ablation: --methods "synthesize edc --iterations 25".
Every step is kept under benchmarks/out/methods (methods-val0.1 with --validation 0.1) and skipped when run again
(delete it to start afresh).
"""

import argparse
import json
import re
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from common import OUT, RELABEL_FLAGS, STUDENT_FLAGS, best_of_last, machine, metrics, step
from compress import FORMS

from dcond.artifact import atomic_path

TEACHER = ["train-teacher", "--model", "convnet", "--model-opt", "width=64", "--epochs", 6, "--device", "cpu"]
# A CPU's float sums change with its thread count, and so do the teachers. On a fixed two, two runs gave the same
# weights and an earlier session the same top-1 (92.21 %), so students of different sessions can be paired.
TEACHER_THREADS = 2
OBSERVERS = {"w32": ["convnet", "width=32"], "d1": ["convnet", "depth=1"], "d2": ["convnet", "depth=2"],
             "w128-instance": ["convnet", "width=128", "norm=instance"]}  # name -> model and its options
# EDC's eight CIFAR-10 observers in the order its recover.py cycles them (--observers edc), trained as its
# squeeze/train.py trains them: SGD at a constant 0.05 with momentum 0.9 (not Nesterov there; dcond's teacher has no
# flag for it), no weight decay, batches of 64, plain cross-entropy, 4-pixel shifts and flips, the weights after the
# first epoch
EDC_OBSERVERS = {"resnet18": ["resnet18-cifar"], "w128": ["convnet", "width=128", "norm=instance"],
                 "mobilenetv2": ["mobilenetv2-cifar"], "wrn-16-2": ["wrn"], "shufflenetv2": ["shufflenetv2-cifar"],
                 "d1": ["convnet", "depth=1"], "d2": ["convnet", "depth=2"], "w32": ["convnet", "width=32"]}
SQUEEZE = ["--epochs", 1, "--batch-size", 64, "--lr", 0.05, "--schedule", "constant", "--weight-decay", 0,
           "--label-smoothing", 0, "--crop-pad", 4]
# The teachers each author's student learns from online: RDED's and SRe2L's one teacher; the mean logits of EDC's
# observers (its CIFAR-10 direct_train.py averages all eight; here the observers its synthesis cycled).
RECIPE_OBSERVERS = {"rded": False, "edc": True, "sre2l": False}  # recipe -> whether the observers teach
SOURCES = {
    "select random": ["select", "--method", "random"],
    "select herding": ["select", "--method", "herding"],
    "select rded": ["select", "--method", "rded"],
    "select score": ["select", "--method", "score"],
    "synthesize sre2l": ["synthesize", "--method", "sre2l"],
    "synthesize classwise": ["synthesize", "--method", "classwise"],
    "synthesize edc": ["synthesize", "--method", "edc"],
}


@dataclass(frozen=True)
class Setup:
    """The split a run measures on and its common protocol."""

    validation: float = 0.0  # > 0: the teachers hold this share of the training images out, and all measure on it
    protocol: str = "defaults"  # the common relabel and student settings: "defaults", or "tuned" (common.py's),
    # or an author's student recipe, a key of RECIPE_OBSERVERS (no bank)
    observers: str = "convnets"  # EDC's: the teacher and OBSERVERS ("convnets"), or EDC_OBSERVERS alone ("edc")

    @property
    def root(self) -> Path:
        """Where the steps are kept: chains with a validation split apart from those without."""
        return OUT / (f"methods-val{self.validation:g}" if self.validation else "methods")

    @property
    def teacher_flags(self) -> list:
        return ["--validation", self.validation] if self.validation else []

    @property
    def suffix(self) -> str:
        """Of the labels' and students' folders: those of the defaults keep their first names."""
        return "" if self.protocol == "defaults" else f"-{self.protocol}"

    @property
    def relabel_flags(self) -> list:
        return RELABEL_FLAGS if self.protocol == "tuned" else []

    @property
    def student_flags(self) -> list:
        return STUDENT_FLAGS if self.protocol == "tuned" else []

    @property
    def recipe(self) -> bool:
        """The protocol is an author's student recipe: students learn from their teachers online, no bank."""
        return self.protocol in RECIPE_OBSERVERS


def teachers(setup: Setup) -> tuple[str, list[str]]:
    """The benchmark teacher and EDC's observers (the models its synthesis cycles, in order), trained once."""
    teacher = step(setup.root / "teacher", *TEACHER, *setup.teacher_flags, threads=TEACHER_THREADS)
    edc = setup.observers == "edc"
    chosen, prefix, flags = (EDC_OBSERVERS, "edc-observer", SQUEEZE) if edc else \
        (OBSERVERS, "observer", ["--epochs", 1])
    observers = [step(setup.root / f"{prefix}-{name}", "train-teacher", "--model", model, *flags,
                      *repeated("--model-opt", options), "--device", "cpu", *setup.teacher_flags,
                      threads=TEACHER_THREADS)
                 for name, (model, *options) in chosen.items()]
    return teacher, observers if edc else [teacher, *observers]


def compressed(labels: str, form: str, flags: list, epochs: int, seed: int, setup: Setup) -> tuple[float, int]:
    """The bank in a compressed form (`compress-labels FLAGS`): (student top-1, bytes of the bank)."""
    path = step(f"{labels}-{re.sub('[^a-z0-9]+', '-', form.lower()).strip('-')}", "compress-labels", labels, *flags)
    student = step(f"{path}-student", "train-student", path, "--epochs", epochs, "--seed", seed, *setup.student_flags)
    bank = json.loads((Path(path) / "dcond.json").read_text())["labels"]["bank"]
    return metrics(student)["top1"], bank["bytes"]


def tag_of(name: str, ipc: int, seed: int, init_from: str | None = None) -> str:
    """The folder name of one method's run: 'synthesize edc --iterations 25' -> synthesize-edc-iterations-25-..."""
    name += f" --init {init_from}" if init_from else ""
    return f"{name.replace(' --', '-').replace(' ', '-')}-ipc{ipc}-seed{seed}"


class Run(NamedTuple):
    """One method, one seed."""

    top1: float  # the student's, last epoch
    seconds: float  # the method's, as first measured
    labels: str  # its bank (the images, where a student recipe labels online)
    student: str


def run(name: str, seed: int, ipc: int, epochs: int, teacher: str, observers: list[str], setup: Setup,
        init_from: str | None = None) -> Run:
    words = name.split()
    source, flags = " ".join(words[:2]), words[2:]
    init_from = init_from if source == "synthesize edc" else None
    tag = tag_of(name, ipc, seed, init_from)
    edc = source == "synthesize edc"
    observed = edc or (setup.recipe and RECIPE_OBSERVERS[setup.protocol])
    tag += "-observers-edc" if observed and setup.observers == "edc" else ""
    extra = repeated("--teacher", observers[1:]) if edc else []
    if init_from:
        extra += ["--init", step(setup.root / tag_of(init_from, ipc, seed), *SOURCES[init_from], teacher,
                                 "--ipc", ipc, "--seed", seed)]
    t0 = time.perf_counter()
    images = step(setup.root / tag, *SOURCES[source], observers[0] if edc else teacher, *extra, *flags,
                  "--ipc", ipc, "--seed", seed)
    seconds = first_time(setup.root / "times.json", tag, time.perf_counter() - t0)
    tag += setup.suffix
    if setup.recipe:
        teaching = observers if RECIPE_OBSERVERS[setup.protocol] else [teacher]
        student = step(setup.root / f"{tag}-student", "train-student", images, "--recipe", setup.protocol,
                       *repeated("--teacher", teaching), "--seed", seed)
        return Run(metrics(student)["top1"], seconds, images, student)
    labels = step(setup.root / f"{tag}-labels", "relabel", images, "--teacher", teacher, "--epochs", epochs,
                  "--seed", seed, *setup.relabel_flags)
    student = step(setup.root / f"{tag}-student", "train-student", labels, "--epochs", epochs, "--seed", seed,
                   *setup.student_flags)
    return Run(metrics(student)["top1"], seconds, labels, student)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=300, help="relabel and student epochs")
    parser.add_argument("--methods", nargs="*", default=list(SOURCES),
                        help="methods, each optionally with flags of its command (for ablations)")
    parser.add_argument("--init-from", choices=[n for n in SOURCES if n.startswith("select")],
                        help="EDC starts from this selection's images of the same seed (paired ablations)")
    parser.add_argument("--lowrank", nargs="*", type=int, default=[],
                        help="also compress each bank to these ranks (lowrank+quantize) and train on it")
    parser.add_argument("--compress", nargs="*", choices=list(FORMS), default=[],
                        help="also compress each bank in these forms of benchmarks/compress.py and train on it")
    parser.add_argument("--validation", type=float, default=0.0,
                        help="measure on this share of the training images, held out by the teachers")
    parser.add_argument("--protocol", choices=["defaults", "tuned", *RECIPE_OBSERVERS], default="defaults",
                        help="the common protocol, or an author's student recipe (its own epochs; --epochs unused)")
    parser.add_argument("--observers", choices=["convnets", "edc"], default="convnets",
                        help="EDC's observers: the teacher and four ConvNets, or the eight of EDC's CIFAR-10 script")
    args = parser.parse_args()
    setup = Setup(args.validation, args.protocol, args.observers)
    if setup.recipe and (args.lowrank or args.compress):
        parser.error("a student recipe labels online: there is no bank to compress")
    teacher, observers = teachers(setup)
    forms = {**{f"lowrank{r}": ["--method", "lowrank+quantize", "--rank", r] for r in args.lowrank},
             **{form: FORMS[form] for form in args.compress}}
    rows, smaller, best = [], [], []
    for name in args.methods:
        results = [run(name, seed, args.ipc, args.epochs, teacher, observers, setup, args.init_from)
                   for seed in range(args.seeds)]
        accs = [r.top1 for r in results]
        label = f"{name} (from {args.init_from})" if args.init_from and name.startswith("synthesize edc") else name
        rows.append((label, *mean_std(accs), accs, statistics.median([r.seconds for r in results])))
        best.append((label, [best_of_last(r.student) for r in results]))
        for form, flags in forms.items():
            small = [compressed(r.labels, form, flags, args.epochs, seed, setup) for seed, r in enumerate(results)]
            smaller.append((name, form, statistics.median([b for _, b in small]), *mean_std([a for a, _ in small]),
                            [a for a, _ in small]))
    split = f"validation split ({args.validation:g} of the training images)" if args.validation else "test split"
    protocol = f"student recipe {args.protocol}" if setup.recipe else \
        f"relabel and student epochs {args.epochs} ({args.protocol} otherwise)"
    print(f"Fashion-MNIST, IPC {args.ipc}, {args.seeds} seeds, {protocol}, top-1 on the {split}, "
          f"teacher {metrics(teacher)['top1']:.2%}, {machine()}\n")
    print("| images | student top-1, mean ± std | seeds | method time (s, median) |\n|---|---|---|---|")
    for name, mean, spread, accs, seconds in rows:
        print(f"| {name} | {mean:.2%} ± {spread:.2%} | {runs(accs)} | {seconds:.0f} |")
    if any(None not in accs for _, accs in best):
        print("\nApart, never the headline: the best evaluation of the last epochs, as the recipe's authors report:\n")
        print("| images | best of the last epochs, mean ± std | seeds |\n|---|---|---|")
        for name, accs in best:
            mean, spread = mean_std(accs)
            print(f"| {name} | {mean:.2%} ± {spread:.2%} | {runs(accs)} |")
    if smaller:
        print("\nThe same banks compressed (compress-labels; lowrankR: --method lowrank+quantize --rank R):\n")
        print("| images | form | bank bytes (median) | student top-1, mean ± std | seeds |\n|---|---|---|---|---|")
        for name, form, size, mean, spread, accs in smaller:
            print(f"| {name} | {form} | {size:,.0f} | {mean:.2%} ± {spread:.2%} | {runs(accs)} |")


def first_time(path: Path, tag: str, seconds: float) -> float:
    """The time first measured for `tag`, kept in `path`. Several benchmark processes may share the file, so it
    is read just before it is written and replaced whole: each keeps the others' entries."""
    times = json.loads(path.read_text()) if path.exists() else {}
    seconds = times.setdefault(tag, seconds)
    with atomic_path(path) as scratch:
        scratch.write_text(json.dumps(times, indent=1))
    return seconds


def repeated(flag: str, values: list) -> list:
    """A flag given once per value: repeated("--teacher", [a, b]) -> ["--teacher", a, "--teacher", b]."""
    return [a for v in values for a in (flag, v)]


def runs(accuracies: list[float]) -> str:
    return " / ".join(f"{a:.2%}" for a in accuracies)


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


if __name__ == "__main__":
    main()
