"""train-student: train a fresh network on condensed images and their labels, then evaluate it.

The labels come from one of three places: a stored soft-label bank, replayed exactly (the student sees
the views the teacher labelled); a teacher run online on freshly drawn views (`--teacher`); or the
images' hard labels, mixed like the images. Given a generator (generative condensation) instead of images,
the student draws new images from it every epoch (`--fresh-samples`), labelled online or by their classes.
"""

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from dcond.artifact import Artifact, ArtifactWriter, config_key, open_artifact
from dcond.bank import Bank, has_bank, open_bank
from dcond.checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint
from dcond.config import StudentConfig
from dcond.data import DataOptions, DatasetSpec, InputImages, check_same_split, load_eval_split, reopen, to_input
from dcond.data.augment import (ViewConfig, apply_views, draw_epoch, epoch_generator, mixed_targets,
                                 random_shift, shuffle_strips)
from dcond.data.folder import ArtifactImages
from dcond.data.images import load_all
from dcond.distributed import world
from dcond.engine import (autocast, ddp, decay_groups, ensemble_logits, evaluate, lr_factor, make_optimizer,
                          on_device, place, resolve_device, set_lr, to_host)
from dcond.errors import DcondError
from dcond.generative import Generator, load_generator, sample
from dcond.log import info, progress
from dcond.models import WEIGHTS_FILE, ModelSpec, create_model, load_teachers, state_tensors
from dcond.seeds import stream_seed
from dcond.stages.relabel import default_batch_size
from dcond.student_recipes import STUDENT_RECIPES, CondensedSet

# (views on the device, teacher logits or None, hard-label distributions)
Batch = tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]


def student_config(source: Path, recipe: str = "dcond", views: dict[str, Any] | None = None,
                   **given: Any) -> StudentConfig:
    """The settings for training a student on the condensed set at `source`: the recipe's for that set (its
    shape, images per class, bank, RDED factor), with every given value that is not None in their place;
    `views` likewise overrides fields of the recipe's views."""
    make = STUDENT_RECIPES.get(recipe)
    art = open_artifact(source, kinds=("images", "labels", "generator"))
    config = art.producer.get("config", {})
    condensed = CondensedSet(art.dataset, max(1, art.section.get("count", 0) // art.dataset.num_classes),
                             has_bank(art), config.get("factor") or 1 if config.get("method") == "rded" else 1)
    settings = make(condensed)
    online = settings.pop("online", False)
    chosen = replace(settings.pop("views", ViewConfig()), **{k: v for k, v in (views or {}).items() if v is not None})
    cfg = StudentConfig(**(settings | {k: v for k, v in given.items() if v is not None}), views=chosen, recipe=recipe)
    if online and not cfg.teachers and art.kind != "generator":
        raise DcondError(f"the {recipe} student labels every batch with its teachers online: pass --teacher "
                         "(repeat it for several)")
    return cfg


def train_student(source: Path, cfg: StudentConfig, out: Path | None = None, force: bool = False) -> Path:
    art = open_artifact(source, kinds=("images", "labels", "generator"))
    spec = art.dataset
    device = resolve_device(cfg.device)
    labels, parents = _labels(art, cfg, device)
    torch.manual_seed(cfg.seed)
    model_spec = ModelSpec(cfg.model, spec.channels, spec.num_classes, spec.image_size, cfg.model_options)
    model = place(create_model(model_spec), device)
    if cfg.evaluate:  # found before training: a student with nothing to be measured on fails now, not at the end
        real_spec, split, test_set = load_eval_split(*reopen(DataOptions(data=""), spec))
        check_same_split(spec, real_spec)
    config = {"source": str(source), **asdict(cfg)}
    best = BestOfLast(cfg, test_set, spec, device) if cfg.evaluate and cfg.best_of_last else None
    # the same settings and inputs continue an interrupted run; how often it saves is not part of them
    key = config_key({k: v for k, v in config.items() if k != "checkpoint_seconds"} |
                     {"inputs": [a.digest for _, a in parents]})
    with ArtifactWriter(out, "model", spec, stage="train-student", config=config, parents=parents, force=force,
                        resume_key=key) as w:
        final = fit(model, labels, cfg, device, best, w.scratch / CHECKPOINT)
        if not world().is_main:  # rank 0 evaluates and writes
            return w.out
        w.save_tensors(WEIGHTS_FILE, state_tensors(final))
        w.section = {"spec": model_spec.to_dict(), "parameters": sum(p.numel() for p in final.parameters()),
                     "weights": WEIGHTS_FILE, "bn_stats": None, "bn_layers": [],
                     "train_images": len(labels.labels), "labels": labels.mode}
        if cfg.evaluate:
            w.metrics = {f"{spec.name}:{split}": evaluate(final, test_set, spec, device)}
            info(f"student {split} top-1 {w.metrics[f'{spec.name}:{split}']['top1']:.4f} (last epoch)")
        if best is not None:  # never the headline: a separate record, named for what it is
            w.metrics[f"{spec.name}:{split}:best-of-last-{cfg.best_of_last:.0%}"] = best.record
            info(f"student best {split} top-1 of the last {cfg.best_of_last:.0%} of epochs {best.top1:.4f} "
                 f"(epoch {best.epoch + 1})")
        w.card |= {"title": f"Student {cfg.model} trained on {len(labels.labels)} condensed {spec.name} images",
                   "summary": f"Trained for {cfg.epochs} epochs with {labels.mode} labels.",
                   "usage": ["dcond evaluate <this folder>"]}
    return w.out


def _labels(art: Artifact, cfg: StudentConfig, device: torch.device):
    """Where the images and targets come from, and the parent artifacts that implies."""
    if art.kind == "generator" and not cfg.fresh_samples:
        raise DcondError(f"{art.path} is a generator: pass --fresh-samples N, or draw images with `dcond sample`")
    if cfg.fresh_samples and art.kind != "generator":
        raise DcondError("--fresh-samples needs a generator artifact")
    teachers, parents = [], [(art.kind, art)]
    if cfg.teachers:
        teacher_arts, models = load_teachers(cfg.teachers)
        if not teacher_arts[0].dataset.same_classes(art.dataset):
            raise DcondError("the teacher was trained on other classes or shapes than these images")
        teachers = [place(m, device).eval() for m in models]
        parents += [("teacher", t) for t in teacher_arts]
    if art.kind == "generator":
        return FreshSamples(place(load_generator(art), device), cfg, device, teachers), parents
    data = load_all(ArtifactImages(art.path).split("train"))
    images = InputImages(data.images.to(device), art.dataset)  # made float batch by batch
    if not teachers and has_bank(art):
        return Replay(open_bank(art), images, data.labels, cfg, device), parents
    return FreshViews(images, data.labels, cfg, device, teachers, art.dataset, data.images), parents


def _share() -> slice:
    """This rank's rows of a batch: under torchrun each rank trains on every N-th view of every batch."""
    w = world()
    return slice(w.rank, None, w.size)


def _check_share(batch_size: int) -> None:
    if batch_size < world().size:
        raise DcondError(f"batches of {batch_size} views cannot be shared by {world().size} processes")


class Replay:
    """Replays a stored bank: exactly the views the teacher labelled, with its logits."""

    def __init__(self, bank: Bank, images: torch.Tensor, labels: torch.Tensor, cfg: StudentConfig,
                 device: torch.device):
        self.bank, self.images, self.labels, self.device = bank, images, labels.to(device), device
        self.num_classes = bank.info["num_classes"]
        self.temperature = cfg.temperature or bank.info["temperature"]
        self.mode = "bank"
        stored = bank.epochs
        if stored is not None and cfg.epochs > stored and not cfg.wrap:
            raise DcondError(f"the bank holds {stored} epochs but --epochs is {cfg.epochs}; relabel with more "
                             "epochs, or pass --wrap to reuse its epochs cyclically")
        if cfg.transforms_images:
            raise DcondError("a bank replays the views it stored: --randaugment, --shift and --strips are for "
                             "online (--teacher) or hard-label training")
        if cfg.batch_size and cfg.batch_size != bank.info["batch_size"]:
            raise DcondError(f"the bank was made with batch size {bank.info['batch_size']}; a student replays it "
                             "as stored (leave out --batch-size)")
        self.steps_per_epoch = -(-bank.info["num_images"] // bank.info["batch_size"])
        _check_share(bank.info["batch_size"])

    def epoch(self, e: int) -> Iterator[Batch]:
        stored, share = self.bank.epochs, _share()
        for batch in self.bank.epoch(e % stored if stored else e):
            # render the whole batch (mix partners may fall in another rank's share), train on this rank's rows
            yield (apply_views(self.images, batch.views)[share], on_device(batch.logits[share], self.device),
                   mixed_targets(self.labels, batch.views, self.num_classes)[share])


class FreshViews:
    """Draws new views every epoch; labels them with teachers run online, or with mixed hard labels."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, cfg: StudentConfig, device: torch.device,
                 teachers: list[nn.Module], spec: DatasetSpec, raw: torch.Tensor | None = None):
        self.images, self.labels, self.cfg, self.device = images, labels.to(device), cfg, device
        self.teachers = teachers
        self.spec, self.num_classes = spec, spec.num_classes
        self.raw = raw  # the uint8 images, for RandAugment
        self.randaugment = _randaugment() if cfg.randaugment else None
        self.temperature = cfg.temperature or 4.0
        self.batch_size = cfg.batch_size or default_batch_size(len(labels))
        self.steps_per_epoch = -(-len(labels) // self.batch_size)
        self.mode = "online-teacher" if teachers else "hard"
        _check_share(self.batch_size)

    def epoch(self, e: int) -> Iterator[Batch]:
        gen = epoch_generator(self.cfg.seed, e)
        views = draw_epoch(len(self.labels), self.batch_size, self.cfg.views, self.images.shape[-1], gen)
        share = _share()
        for b in range(len(views)):
            v = views.batch(b)
            source = self.images
            if self.cfg.transforms_images:  # then cropped, flipped and mixed as drawn
                source, v = self._transformed(v.order, gen), replace(v, order=torch.arange(len(v.order)))
            x = apply_views(source, v)[share]
            logits = ensemble_logits(self.teachers, x, self.device, self.cfg.amp) if self.teachers else None
            yield x, logits, mixed_targets(self.labels, v, self.num_classes)[share]

    def _transformed(self, order: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """One batch's images, each strip-shuffled, RandAugmented and/or shifted by pad-and-crop, as network
        input."""
        shown = self.raw[order.cpu()]
        if self.cfg.strips > 1:
            shown = shuffle_strips(shown, self.cfg.strips, gen)
        if self.randaugment is not None:
            shown = torch.stack([self.randaugment(img) for img in shown])
        if self.cfg.shift:
            shown = random_shift(shown, self.cfg.shift, gen)
        return to_input(shown.to(self.device), self.spec)


def _randaugment():
    from torchvision.transforms.v2 import RandAugment  # imported when asked for: torchvision takes 2 s to import

    return RandAugment()


class FreshSamples(FreshViews):
    """Draws `fresh_samples` new images per class from a generator every epoch, then views of them as
    FreshViews does."""

    def __init__(self, generator: Generator, cfg: StudentConfig, device: torch.device, teachers: list[nn.Module]):
        k = generator.spec.num_classes
        super().__init__(torch.empty(0), torch.arange(k).repeat_interleave(cfg.fresh_samples), cfg, device, teachers,
                         generator.dataset)
        self.generator = generator

    def epoch(self, e: int) -> Iterator[Batch]:
        images, _ = sample(self.generator, self.cfg.fresh_samples, stream_seed(self.cfg.seed, e), self.device)
        self.raw, self.images = images.cpu(), InputImages(images.to(self.device), self.generator.dataset)
        yield from super().epoch(e)


def student_loss(cfg: StudentConfig, out: torch.Tensor, teacher: torch.Tensor | None, targets: torch.Tensor,
                 temperature: float) -> torch.Tensor:
    if teacher is None:  # hard labels (mixed): cross-entropy against the label distribution
        return -(targets * F.log_softmax(out, 1)).sum(1).mean()
    if cfg.loss in ("kl", "kl-t2"):  # kl-t2: × T², which keeps the gradients' size as T grows (Hinton et al.)
        kl = F.kl_div(F.log_softmax(out / temperature, 1), F.log_softmax(teacher / temperature, 1),
                      log_target=True, reduction="batchmean")
        return kl * temperature ** 2 if cfg.loss == "kl-t2" else kl
    return F.mse_loss(out, teacher) + cfg.ce_weight * -(targets * F.log_softmax(out, 1)).sum(1).mean()


class BestOfLast:
    """Evaluations every 10 epochs (and at the last) in the last `best_of_last` share of the run, and the best:
    what RDED reports. dcond records it apart from the last epoch's, which is the headline."""

    def __init__(self, cfg: StudentConfig, test_set, spec, device: torch.device):
        self.first = int((1 - cfg.best_of_last) * cfg.epochs)
        self.cfg, self.test_set, self.spec, self.device = cfg, test_set, spec, device
        self.top1, self.epoch = -1.0, -1

    def __call__(self, e: int, model: nn.Module) -> None:
        if e < self.first or (e % 10 != 9 and e != self.cfg.epochs - 1) or not world().is_main:
            return
        top1 = evaluate(model, self.test_set, self.spec, self.device)["top1"]
        if top1 > self.top1:
            self.top1, self.epoch = top1, e

    @property
    def record(self) -> dict[str, Any]:
        return {"top1": self.top1, "epoch": self.epoch + 1, "from_epoch": self.first + 1}


def _loss_text(loss: torch.Tensor, filled: Callable[[], None], epoch: int) -> str:
    filled()
    return f"loss {float(loss):.4f} (epoch {epoch})"


def fit(model: nn.Module, labels, cfg: StudentConfig, device: torch.device, best: BestOfLast | None = None,
        ckpt: Path | None = None) -> nn.Module:
    """Train `model` on the batches `labels` provides; returns it, or its EMA average. `best` sees the model
    evaluation would see (the EMA average, if any) after every epoch. With `ckpt`, the training state is saved
    there at the end of an epoch once `cfg.checkpoint_seconds` have passed since the last save, and a run that
    finds it continues from it to the result of an uninterrupted run."""
    optimizer = make_optimizer(cfg.optimizer, decay_groups(model, cfg.weight_decay, cfg.decay_norm), cfg.lr,
                               cfg.weight_decay, cfg.momentum, cfg.nesterov, device)
    net = ddp(model, device)
    ema = _ema(model, cfg.ema) if cfg.ema else None
    # the schedule's clock counts batches, or epochs as the methods' scripts do (scheduler.step() once an epoch)
    by_epoch = cfg.schedule_step == "epoch"
    ticks = 1 if by_epoch else labels.steps_per_epoch  # per epoch
    total, warmup = cfg.epochs * ticks, cfg.warmup_epochs * ticks
    start, step = 0, 0
    if ckpt and ckpt.exists():
        start, step = _resume(ckpt, model, optimizer, ema, best, device)
        info(f"resuming from epoch {start} of {cfg.epochs}")
    seen, t0, saved = 0, time.perf_counter(), time.monotonic()
    shown = None  # the previous epoch's mean loss on its way to the host: the progress line never stalls the GPU
    with progress("student epochs", cfg.epochs) as task:
        task.advance(start)
        for e in range(start, cfg.epochs):
            model.train()
            loss_sum, n = torch.zeros((), device=device), 0  # summed on the device: reading it waits for the GPU
            for x, teacher, targets in labels.epoch(e):
                set_lr(optimizer, cfg.lr * lr_factor(cfg.schedule, e if by_epoch else step, total, warmup,
                                                     cfg.zeta, cfg.milestones))
                with autocast(device, cfg.amp):
                    out = net(x).float()
                loss = student_loss(cfg, out, teacher, targets, labels.temperature)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if ema is not None:
                    ema.update_parameters(model)
                step, n, seen, loss_sum = step + 1, n + len(x), seen + len(x), loss_sum + loss.detach() * len(x)
            mean = (*to_host(loss_sum / n), e + 1)
            shown = mean if shown is None or e == cfg.epochs - 1 else shown
            task.advance(1, f"{_loss_text(*shown)}, {seen / (time.perf_counter() - t0):.0f} images/s")
            shown = mean
            if best is not None:
                best(e, ema.module if ema is not None else model)
            if ckpt and e + 1 < cfg.epochs and time.monotonic() - saved >= cfg.checkpoint_seconds and world().is_main:
                _save(ckpt, model, optimizer, ema, best, {"epoch": e + 1, "step": step}, device)
                saved = time.monotonic()
    return ema.module if ema is not None else model


def _ema(model: nn.Module, decay: float) -> AveragedModel:
    """EDC's average of the weights: of the parameters only, starting from the initial ones (its EMAMODEL
    deep-copies the model before training and then moves each parameter by 1 − decay after every step), and
    evaluated with the live model's BatchNorm statistics (its ema_swap exchanges parameters, not buffers;
    without use_buffers, every update copies the live buffers)."""
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))
    ema.update_parameters(model)  # the first update copies: the average starts at the initial weights
    return ema


def _save(ckpt: Path, model: nn.Module, optimizer: torch.optim.Optimizer, ema: AveragedModel | None,
          best: BestOfLast | None, progress: dict[str, int], device: torch.device) -> None:
    """Everything the next epoch depends on: weights, optimiser, EMA, the best evaluation so far, and the global
    random state (RandAugment draws from it, epoch after epoch)."""
    extra = {"rng": torch.get_rng_state()} | ({"cuda_rng": torch.cuda.get_rng_state(device)}
                                               if device.type == "cuda" else {})
    extra |= {f"ema.{k}": v for k, v in state_tensors(ema).items()} if ema is not None else {}
    progress |= {"best": [best.top1, best.epoch]} if best is not None else {}
    save_checkpoint(ckpt, model, optimizer, progress, extra)


def _resume(ckpt: Path, model: nn.Module, optimizer: torch.optim.Optimizer, ema: AveragedModel | None,
            best: BestOfLast | None, device: torch.device) -> tuple[int, int]:
    """Restore what _save saved; returns the epoch to continue from and the optimiser steps taken."""
    progress, extra = load_checkpoint(ckpt, model, optimizer)
    torch.set_rng_state(extra["rng"])
    if "cuda_rng" in extra:
        torch.cuda.set_rng_state(extra["cuda_rng"], device)
    if ema is not None:
        ema.load_state_dict({k.removeprefix("ema."): v for k, v in extra.items() if k.startswith("ema.")})
    if best is not None:
        best.top1, best.epoch = progress["best"]
    return progress["epoch"], progress["step"]
