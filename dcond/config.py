"""The settings of every stage, as plain dataclasses (the option groups of the CLI and the Python API).

They are kept apart from the stages, and import neither torch nor any method's code, so that the command line
can show its defaults, and refuse a bad value, without the seconds that loading torch takes. Each validates
itself on creation and names the offending flag.
"""

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dcond import recipes
from dcond.compression import parse_chain
from dcond.errors import DcondError
from dcond.selection import SELECTORS
from dcond.synthesis import SYNTHESIZERS

DEFAULT_HOLDOUT = 0.1
GENERATIVE = "generative"  # the --method of `dcond synthesize` that trains a generator (dcond.stages.generative)
MIXES = ("cutmix", "mixup", "none")
LOGIT_DTYPES = ("float16", "bfloat16", "float32")  # of a bank's stored logits
GENERATOR_DTYPES = ("float16", "float32")  # of a generator's stored weights
GENERATOR_LOSSES = ("match", "bn", "intra", "inter", "ce")
PICKS = ("first", "random")  # prune: which batches are kept
FILLS = ("renormalize", "uniform", "min")  # topk: how the classes not kept come back
QUANTIZED_DTYPES = ("int8", "int4", "float16", "bfloat16")
STUDENT_LOSSES = ("kl", "kl-t2", "mse-ce")
SCHEDULE_STEPS = ("batch", "epoch")


def available_cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass
class DataOptions:
    data: str = "fashion-mnist"
    root: Path | None = None  # where named datasets live; default $DCOND_DATA_ROOT or ~/.cache/dcond/datasets
    download: bool = False
    image_size: int | None = None  # image files are centre-cropped and resized to this; None: their own
    subset: int | None = None  # a class-balanced subset of this many images, for quick runs
    holdout: float = DEFAULT_HOLDOUT  # share of each class held out to evaluate on when there is no test split
    validation: float = 0.0  # share of each class of the training split measured on instead of the test split

    def __post_init__(self) -> None:
        if self.subset is not None and self.subset < 1:
            raise DcondError("--subset must be a positive number of images")
        if not 0 <= self.holdout < 1:
            raise DcondError("--holdout must lie in [0, 1)")
        if not 0 <= self.validation < 1:
            raise DcondError("--validation must lie in [0, 1)")
        if self.image_size is not None and self.image_size < 8:
            raise DcondError("--image-size must be at least 8")

    @property
    def data_root(self) -> Path:
        return Path(self.root or os.environ.get("DCOND_DATA_ROOT") or Path.home() / ".cache/dcond/datasets")


@dataclass(frozen=True)
class ViewConfig:
    """How the views of a relabel/replay epoch are drawn."""

    crop_scale: tuple[float, float] = (0.08, 1.0)  # SRe2L; EDC uses (0.5, 1)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: float = 0.5
    mix: str = "cutmix"
    mix_prob: float = 1.0  # chance that a batch is mixed at all
    mix_alpha: float = 1.0  # λ ~ Beta(α, α)

    def __post_init__(self) -> None:
        for name, (lo, hi), top in (("--crop-scale", self.crop_scale, 1), ("crop ratio", self.crop_ratio, 100)):
            if not all(type(v) in (int, float) for v in (lo, hi)) or not 0 < lo <= hi <= top:
                raise DcondError(f"{name} must be two numbers with 0 < min <= max <= {top}")
        if self.mix not in MIXES:
            raise DcondError(f"--mix must be one of {', '.join(MIXES)}")
        if not (0 <= self.flip <= 1 and 0 <= self.mix_prob <= 1 and self.mix_alpha > 0):
            raise DcondError("--flip and --mix-prob must lie in [0, 1], and --mix-alpha must be > 0")

    def to_dict(self) -> dict:
        return asdict(self) | {"crop_scale": list(self.crop_scale), "crop_ratio": list(self.crop_ratio)}

    @classmethod
    def from_dict(cls, d: dict) -> "ViewConfig":
        pairs = {key: tuple(d[key]) for key in ("crop_scale", "crop_ratio")}
        if any(len(v) != 2 for v in pairs.values()):
            raise DcondError("crop_scale and crop_ratio must be pairs of numbers")
        return cls(**(d | pairs))


@dataclass
class TeacherConfig:
    model: str = "convnet"
    model_options: dict[str, Any] = field(default_factory=dict)
    epochs: int = 6
    batch_size: int = 128
    lr: float = 0.05
    optimizer: str = "sgd"
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup_epochs: int = 0
    label_smoothing: float = 0.1
    crop_pad: int = 0  # random pad-and-crop by up to this many pixels (0: none), plus flips; -1: no augmentation
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # bf16 autocast on CUDA
    weights: Path | None = None  # start from an outside checkpoint (with --epochs 0: import it as a teacher)
    pretrained: bool = False  # start from the weights torchvision or timm publish for a tv:/timm: model
    workers: int = 0  # data-loading processes (for ImageFolder data)

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 1 or self.lr <= 0:
            raise DcondError("--epochs must be >= 0, --batch-size >= 1 and --lr > 0")
        if self.weights is not None and self.pretrained:
            raise DcondError("--weights and --pretrained both give the starting weights: pass one of them")
        if self.epochs == 0 and self.weights is None and not self.pretrained:
            raise DcondError("--epochs 0 only makes sense with --weights or --pretrained (importing a trained "
                             "network)")


@dataclass
class SelectConfig:
    method: str = "random"
    ipc: int = 10
    recipe: str = "auto"  # whose settings fill in the None ones: the authors' script for data of this shape
    candidates: int | None = None  # per class, drawn at random (rded: 300 as released; others: all images)
    factor: int | None = None  # rded: stitch factor × factor patches into one image
    crops: int | None = None  # rded: random crops scored per candidate
    crop_scale: tuple[float, float] | None = None  # rded: area range of those crops
    score_views: int = 8  # score: augmented views whose soft labels describe a candidate
    eps2: float = 0.5  # score: ε² of the coding rate
    # score: weights of informativeness, discriminativeness and compressibility
    score_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)
    teachers: list[Path] = field(default_factory=list)  # more teachers, for --relabel-epochs
    relabel_epochs: int = 0  # > 0: also write a soft-label bank, making a labels artifact in one stage
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        SELECTORS.get(self.method)
        recipes.check(self.recipe)
        if self.ipc < 1 or self.score_views < 1 or any(v is not None and v < 1 for v in
                                                        (self.factor, self.crops, self.candidates)):
            raise DcondError("--ipc, --candidates, --factor, --crops and --score-views must be at least 1")
        if self.relabel_epochs < 0:
            raise DcondError("--relabel-epochs must be >= 0")


@dataclass
class SynthConfig:
    method: str = "sre2l"
    ipc: int = 10
    recipe: str = "auto"  # whose settings: the authors' script for data of this shape (RECIPES), or "auto"
    # None: the recipe's value (see `RECIPES` in the method's module)
    iterations: int | None = None
    lr: float | None = None
    r_bn: float | None = None  # weight of the statistics loss
    first_bn_weight: float = 10.0
    crop_scale: tuple[float, float] | None = None
    jitter: int | None = None  # pixels of random roll per iteration
    flip: float | None = None
    alpha: float = 0.5  # edc: weight of the whole set's statistics against the classes'
    ema_momentum: float = 0.8  # edc: EMA of the synthetic statistics
    per_unit: int | None = None  # images of each class optimised together
    init: Path | None = None  # edc: an images artifact to start from (default: random real images)
    teachers: list[Path] = field(default_factory=list)  # more observers (cycled) and relabel teachers
    relabel_epochs: int = 0
    seed: int = 0
    device: str = "auto"
    amp: bool = True

    def __post_init__(self) -> None:
        SYNTHESIZERS.get(self.method)
        recipes.check(self.recipe)
        if self.ipc < 1 or any(v is not None and v < 1 for v in (self.iterations, self.per_unit)):
            raise DcondError("--ipc, --iterations and --per-unit must be at least 1")
        if not 0 <= self.alpha <= 1 or not 0 <= self.ema_momentum < 1:
            raise DcondError("--alpha must lie in [0, 1] and --ema-momentum in [0, 1)")
        if self.flip is not None and not 0 <= self.flip <= 1:
            raise DcondError("--flip must lie in [0, 1]")


@dataclass
class GenerativeConfig:
    latent_dim: int = 64
    width: int = 32  # channels of every generator layer
    depth: int = 3  # upsampling blocks
    iterations: int = 1000
    lr: float = 3e-3
    gen_batch: int = 16  # generated images per class per step
    real_batch: int = 16  # real images per class per step
    match_weight: float = 1.0
    bn_weight: float = 0.1
    intra_weight: float = 0.3
    inter_weight: float = 0.3
    ce_weight: float = 0.1
    checkpoint_every: int = 100  # steps
    weights_dtype: str = "float16"  # of the stored weights: the condensed set's size
    seed: int = 0
    device: str = "auto"
    amp: bool = True

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.checkpoint_every < 1 or self.real_batch < 1 or self.lr <= 0:
            raise DcondError("--iterations, --checkpoint-every and --real-batch must be at least 1, --lr > 0")
        if self.gen_batch < 2:
            raise DcondError("--gen-batch must be at least 2 (the intra-class loss compares samples of a class)")
        if min(self.weights.values()) < 0 or not any(self.weights.values()):
            raise DcondError("the loss weights (--match-weight, --r-bn, --intra-weight, --inter-weight, "
                             "--ce-weight) must be >= 0, and one at least > 0")
        if self.weights_dtype not in GENERATOR_DTYPES:
            raise DcondError(f"--weights-dtype must be one of {', '.join(GENERATOR_DTYPES)}")

    @property
    def weights(self) -> dict[str, float]:
        return {"match": self.match_weight, "bn": self.bn_weight, "intra": self.intra_weight,
                "inter": self.inter_weight, "ce": self.ce_weight}

    @property
    def terms(self) -> tuple[str, ...]:
        """The loss terms with a non-zero weight: the only ones computed."""
        return tuple(t for t in GENERATOR_LOSSES if self.weights[t])


@dataclass
class SampleConfig:
    ipc: int = 10
    seed: int = 0
    device: str = "auto"  # the same seed gives the same images on the same kind of device

    def __post_init__(self) -> None:
        if self.ipc < 1:
            raise DcondError("--ipc must be at least 1")


@dataclass
class RelabelConfig:
    epochs: int = 300
    batch_size: int | None = None  # default: a quarter of the images, between 10 and 100 (small sets, small batches)
    temperature: float = 4.0  # recorded for the student's KL loss
    views: ViewConfig = field(default_factory=ViewConfig)
    dtype: str = "float16"
    seed: int = 0
    device: str = "auto"
    amp: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise DcondError("--epochs must be at least 1")
        if self.batch_size is not None and self.batch_size < 1:
            raise DcondError("--batch-size must be at least 1")
        if self.dtype not in LOGIT_DTYPES:
            raise DcondError(f"--dtype must be one of {', '.join(LOGIT_DTYPES)}")
        if self.temperature <= 0:
            raise DcondError("--temperature must be > 0")


@dataclass
class CompressConfig:
    method: str = "prune+topk"  # a chain of METHODS joined by '+'
    keep: float = 0.1  # prune: fraction of the stored batches kept
    pick: str = "first"  # prune: which: the chronologically first full batches (as released), or random
    k: int = 2  # topk: classes kept per view
    fill: str = "renormalize"  # topk: how the other classes come back
    rank: int | None = None  # lowrank: rank per image (the cap, with --energy)
    energy: float | None = None  # lowrank: per image, the smallest rank keeping this share of Σσ²
    dtype: str = "int8"  # quantize
    zstd_level: int = 0  # 0: files are not zstandard-compressed
    seed: int = 0  # prune: which batches are kept

    def __post_init__(self) -> None:
        parse_chain(self.method)
        if not 0 < self.keep <= 1:
            raise DcondError("--keep must lie in (0, 1]")
        if self.k < 1 or (self.rank is not None and self.rank < 1):
            raise DcondError("--k and --rank must be at least 1")
        if self.energy is not None and not 0 < self.energy <= 1:
            raise DcondError("--energy must lie in (0, 1]")
        if "lowrank" in self.methods and self.rank is None and self.energy is None:
            raise DcondError("--method lowrank needs --rank R or --energy E")
        if self.pick not in PICKS:
            raise DcondError(f"--pick must be one of {', '.join(PICKS)}")
        if self.fill not in FILLS or self.dtype not in QUANTIZED_DTYPES:
            raise DcondError(f"--fill must be one of {', '.join(FILLS)}; --dtype one of {', '.join(QUANTIZED_DTYPES)}")
        if not 0 <= self.zstd_level <= 22:
            raise DcondError("--zstd-level must lie in 0 (off) … 22")

    @property
    def methods(self) -> list[str]:
        return parse_chain(self.method)


@dataclass
class ImportConfig:
    input_size: int  # the side of the views the relabel script rendered (its --input-size): the CutMix box's unit
    fkd_seed: int = 42  # the relabel script's --fkd-seed, which ordered the images in batches
    temperature: float = 4.0  # recorded for the student's KL loss (SRe2L trains with 20)
    dtype: str = "float16"
    data: str = ""  # the dataset an ImageFolder of images condenses (its classes, and test split for students)

    def __post_init__(self) -> None:
        if self.input_size < 1:
            raise DcondError("--input-size must be at least 1")
        if self.temperature <= 0:
            raise DcondError("--temperature must be > 0")
        if self.dtype not in LOGIT_DTYPES:
            raise DcondError(f"--dtype must be one of {', '.join(LOGIT_DTYPES)}")


@dataclass
class StudentConfig:
    recipe: str = "dcond"  # whose student protocol the settings follow (STUDENT_RECIPES; see student_config)
    model: str = "convnet"
    model_options: dict[str, Any] = field(default_factory=dict)
    epochs: int = 300
    batch_size: int | None = None  # online and hard-label training; a bank replays its own batches
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.01
    momentum: float = 0.9  # sgd
    nesterov: bool = True  # sgd
    decay_norm: bool = True  # weight decay on biases and normalisation weights too (the methods' students: off)
    schedule: str = "cosine"
    zeta: float = 2.0  # the smoothing schedule's ζ
    milestones: tuple[float, ...] = ()  # multistep: fractions of the run where the rate halves
    schedule_step: str = "batch"  # how often the rate follows the schedule: every batch, or every epoch as the
    # methods' scripts step their schedulers
    warmup_epochs: int = 0
    loss: str = "kl"
    temperature: float | None = None  # default: the bank's
    ce_weight: float = 0.025  # mse-ce: weight of the hard-label cross-entropy
    ema: float = 0.0  # decay of an average of the parameters from the initial ones on, evaluated with the live
    # BatchNorm statistics (EDC's EMA); 0: off
    teachers: list[Path] = field(default_factory=list)  # label online instead of replaying a bank
    views: ViewConfig = field(default_factory=ViewConfig)  # online and hard-label training
    randaugment: bool = False  # online and hard-label training: RandAugment each image before its view
    shift: int = 0  # online and hard-label training: pad-and-crop each image by up to this many pixels first
    strips: int = 1  # online and hard-label training: shuffle each image's column, then row strips first (RDED)
    best_of_last: float = 0.0  # also report the best evaluation (every 10 epochs) in this last share of the run
    checkpoint_seconds: float = 300.0  # save the training state at the first epoch's end this long after the last
    wrap: bool = False  # reuse a bank's epochs cyclically when training for more epochs than it holds
    fresh_samples: int = 0  # images per class drawn anew every epoch from a generator artifact
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    evaluate: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.lr <= 0:
            raise DcondError("--epochs must be at least 1 and --lr > 0")
        if self.loss not in STUDENT_LOSSES:
            raise DcondError(f"--loss must be one of {', '.join(STUDENT_LOSSES)}")
        if not 0 <= self.ema < 1:
            raise DcondError("--ema must lie in [0, 1)")
        if self.fresh_samples < 0 or self.shift < 0 or self.strips < 1:
            raise DcondError("--fresh-samples and --shift must be >= 0, --strips >= 1")
        if not 0 <= self.best_of_last < 1:
            raise DcondError("--best-of-last must lie in [0, 1)")
        if self.checkpoint_seconds < 0:
            raise DcondError("--checkpoint-seconds must be >= 0")
        if self.schedule_step not in SCHEDULE_STEPS:
            raise DcondError(f"--schedule-step must be one of {', '.join(SCHEDULE_STEPS)}")

    @property
    def transforms_images(self) -> bool:
        """Each image is changed before its view is drawn (strips, RandAugment, shift): only where views are drawn
        afresh, since a bank replays the views it stored."""
        return self.strips > 1 or self.randaugment or self.shift > 0


@dataclass
class EvalConfig:
    batch_size: int = 500
    device: str = "auto"


@dataclass
class AssessConfig:
    models: list[str] = field(default_factory=lambda: ["convnet"])
    seeds: int = 3
    epochs: int | None = None  # default: the student recipe's
    recipe: str = "dcond"
    baseline: str | None = None  # "random": the same protocol on random real images of the same IPC, and scores
    lrs_weight: float = 0.5  # DD-Ranking's w: the weight of improvement over random against hard-label recovery
    ars_weight: float = 0.5  # DD-Ranking's γ: the weight of the gap with augmentation against the one without
    device: str = "auto"
    cache: Path | None = None  # each student's result kept here, and taken from here when trained alike before

    def __post_init__(self) -> None:
        if not self.models or any(not m.strip() for m in self.models):
            raise DcondError("--models must name at least one model (comma-separated)")
        if not 1 <= self.seeds <= 100:
            raise DcondError("--seeds must lie in 1 … 100")
        if self.epochs is not None and self.epochs < 1:
            raise DcondError("--epochs must be at least 1")
        if self.baseline not in (None, "random"):
            raise DcondError("--baseline must be random")
        if not (0 <= self.lrs_weight <= 1 and 0 <= self.ars_weight <= 1):
            raise DcondError("the score weights must lie in [0, 1]")
        if self.cache is not None and self.cache.exists() and not self.cache.is_dir():
            raise DcondError(f"--cache {self.cache} is a file, not a folder")
