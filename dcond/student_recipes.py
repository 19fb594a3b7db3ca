"""Student recipes: how a method's authors train the student on their condensed set (`train-student --recipe`).

A recipe maps the condensed set at hand (its dataset's shape, images per class, whether it carries a bank, the
stitch factor it was selected with) to StudentConfig settings; flags given on the command line win. "dcond"
is dcond's own protocol (StudentConfig's defaults). The settings come from the released code
(docs/official/); docs/methods.md sets them beside dcond's.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dcond.config import ViewConfig
from dcond.errors import DcondError
from dcond.recipes import recipe_for
from dcond.registry import Registry
from dcond.spec import DatasetSpec


@dataclass(frozen=True)
class CondensedSet:
    """What a student recipe looks at."""

    spec: DatasetSpec
    ipc: int
    has_bank: bool
    factor: int  # RDED's stitch factor (1 for anything else)


StudentRecipe = Callable[[CondensedSet], dict[str, Any]]
BY_EPOCH = {"schedule_step": "epoch"}  # every released script calls its scheduler.step() once an epoch
STUDENT_RECIPES: Registry[StudentRecipe] = Registry("student recipe")
STUDENT_RECIPES.register("dcond")(lambda condensed: {})


@STUDENT_RECIPES.register("rded")
def rded(condensed: CondensedSet) -> dict[str, Any]:
    """LINs-lab/RDED 3f6453d, validation/main.py and argument.py: the teacher labels every CutMix batch online
    at T = 20 (KL, no T² factor), AdamW 1e-3 with weight decay 0.01 on weights only, the smoothing schedule with
    ζ = 2 over 300 epochs, each image's factor × factor strips shuffled (ShufflePatches) before a crop of
    1/factor to all of it (neither at factor 1), and the best evaluation of the last 20 % of epochs reported
    beside the last."""
    spec, ipc = condensed.spec, condensed.ipc
    batch = 10 if ipc <= 1 else 50 if ipc <= 10 else 100
    batch = 100 if recipe_for(spec) == "tiny-imagenet" else batch * (2 if spec.num_classes in (100, 1000) else 1)
    return {"epochs": 300, "batch_size": min(batch, ipc * spec.num_classes), "optimizer": "adamw", "lr": 1e-3,
            "weight_decay": 0.01, "decay_norm": False, "schedule": "smoothing", "zeta": 2.0, "loss": "kl",
            "temperature": 20.0, "online": True, "best_of_last": 0.2, "strips": condensed.factor, **BY_EPOCH,
            "views": ViewConfig(crop_scale=(1 / condensed.factor, 1.0), mix="cutmix", mix_prob=1.0, mix_alpha=1.0)}


@STUDENT_RECIPES.register("sre2l")
def sre2l(condensed: CondensedSet) -> dict[str, Any]:
    """VILA-Lab/SRe2L 8d00cba: small data as its CIFAR-100 relabel_cifar.py (the teacher labels every Mixup
    batch online, α = 0.8, KL at T = 30 with no T²; AdamW 1e-3, weight decay 0.01 on every parameter; cosine
    over 400 epochs; batch 128; RandomCrop with 4 pixels of padding, then a flip; the last epoch reported) and
    ImageNet as its train_FKD.py (the stored bank replayed, KL at T = 20; weight decay on weights only; cosine
    over 300 epochs). Tiny-ImageNet as the train_kd.sh of zeyuanyin/tiny-imagenet 275c667, where SRe2L's
    README sends it: the teacher online on crops of 8-100 % and flips, no mixing, KL × T² at T = 20; SGD 0.2,
    momentum 0.9, weight decay 1e-4 on every parameter; 5 epochs of linear warm-up from 1 %, then cosine;
    batch 256, 100 epochs."""
    shape = recipe_for(condensed.spec)
    images = condensed.ipc * condensed.spec.num_classes
    if shape == "tiny-imagenet":
        return {"optimizer": "sgd", "lr": 0.2, "momentum": 0.9, "nesterov": False, "weight_decay": 1e-4,
                "schedule": "cosine", "warmup_epochs": 5, "loss": "kl-t2", "temperature": 20.0, "epochs": 100,
                "batch_size": min(256, images), "online": True, **BY_EPOCH,
                "views": ViewConfig(crop_scale=(0.08, 1.0), mix="none")}
    common = {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.01, "schedule": "cosine", "loss": "kl", **BY_EPOCH}
    if shape in ("cifar10", "cifar100"):
        return common | {"epochs": 400, "batch_size": min(128, images),
                         "temperature": 30.0, "online": True, "shift": 4,
                         "views": ViewConfig(crop_scale=(1.0, 1.0), mix="mixup", mix_prob=1.0, mix_alpha=0.8)}
    if not condensed.has_bank:  # ImageNet
        raise DcondError("SRe2L's ImageNet student replays a soft-label bank: relabel the images first")
    return common | {"epochs": 300, "temperature": 20.0, "decay_norm": False}


@STUDENT_RECIPES.register("edc")
def edc(condensed: CondensedSet) -> dict[str, Any]:
    """shaoshitong/EDC 80116a7, each Branch_*/train/train.sh with its direct_train.py (small data: the teachers
    online on RandAugmented, cropped, flipped, CutMix-ed batches) or train_FKD_parallel.py (ImageNet: the stored
    bank replayed). MSE to the mean teacher logits + 0.025·CE, the EMA (0.99) evaluated, weight decay on weights
    only, in all. CIFAR-10: AdamW 1e-3 (decay 0.01), batch 10, 1000 epochs, MultiStepLR × 0.5 at 80, 90 and 95 %
    of the run, crops 0.08-1. CIFAR-100: SGD 0.1 (momentum 0.875, decay 5e-4), batch 50, 1000 epochs, its
    two-piece cosine ("cos2", ζ = 2), crops 0.5-1. Tiny-ImageNet: the same SGD, batch 100, 300 epochs, the
    smoothing cosine ("cos", ζ = 2), crops 0.5-1. ImageNet: AdamW 1e-3 (decay 0.01), 300 epochs, lr 1 − e/(2E),
    which the script runs where it asks for cosine."""
    shape = recipe_for(condensed.spec)
    common = {"decay_norm": False, "loss": "mse-ce", "ce_weight": 0.025, "ema": 0.99, **BY_EPOCH}
    adamw = {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.01}
    sgd = {"optimizer": "sgd", "lr": 0.1, "momentum": 0.875, "nesterov": False, "weight_decay": 5e-4}
    online = {"online": True, "randaugment": True}
    if shape == "imagenet":
        if not condensed.has_bank:
            raise DcondError("EDC's ImageNet student replays a soft-label bank: relabel the images first")
        return common | adamw | {"epochs": 300, "schedule": "linear", "zeta": 2.0}
    crops = (0.08, 1.0) if shape == "cifar10" else (0.5, 1.0)
    online |= {"views": ViewConfig(crop_scale=crops, mix="cutmix", mix_prob=1.0, mix_alpha=1.0)}
    if shape == "cifar10":
        return common | adamw | online | {"epochs": 1000, "batch_size": 10, "schedule": "multistep",
                                          "milestones": (0.8, 0.9, 0.95)}
    if shape == "cifar100":
        return common | sgd | online | {"epochs": 1000, "batch_size": 50, "schedule": "two-piece", "zeta": 2.0}
    return common | sgd | online | {"epochs": 300, "batch_size": 100, "schedule": "smoothing", "zeta": 2.0}
