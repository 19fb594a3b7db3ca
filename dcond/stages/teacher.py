"""train-teacher: train a network on real data; store it with its test accuracy and per-class BN statistics."""

import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from dcond.artifact import ArtifactWriter, config_key
from dcond.checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint
from dcond.config import TeacherConfig
from dcond.data import DataOptions, batches, load_eval_split, load_split, open_source, to_input
from dcond.data.augment import random_crop_flip
from dcond.distributed import world
from dcond.engine import (autocast, ddp, evaluate, lr_factor, make_optimizer, on_device, place, resolve_device,
                          set_lr)
from dcond.log import info, progress
from dcond.realstats import STATS_FILE, patch_size, real_statistics, stat_layers
from dcond.models import (WEIGHTS_FILE, ModelSpec, bn_layers, create_model, load_weights, published_weights,
                          state_tensors)

HOLDOUT_FILE = "holdout.json"  # the training images held out to evaluate on, when the data has no test split


def train_teacher(data: DataOptions, cfg: TeacherConfig, out: Path | None = None, force: bool = False) -> Path:
    source = open_source(data)
    spec, train_set = load_split(data, "train", source)
    _, split, test_set = load_eval_split(replace(data, subset=None), source)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model_spec = ModelSpec(cfg.model, spec.channels, spec.num_classes, spec.image_size, cfg.model_options)
    model = create_model(model_spec, cfg.pretrained)  # downloaded once into the library's cache, then stored here
    pretrained = published_weights(cfg.model) if cfg.pretrained else None
    if cfg.weights is not None:
        load_weights(model, cfg.weights)
    config = {"data": asdict(data), **asdict(cfg)}
    with ArtifactWriter(out, "model", spec, stage="train-teacher", config=config, force=force,
                        resume_key=config_key(config)) as w:
        model = place(model, device)
        _fit(model, train_set, spec, cfg, device, w.scratch / CHECKPOINT)
        if not world().is_main:  # rank 0 evaluates and writes
            return w.out
        metrics = evaluate(model, test_set, spec, device)
        info(f"{split} top-1 {metrics['top1']:.4f} on {metrics['samples']} images of {spec.name}")
        w.save_tensors(WEIGHTS_FILE, state_tensors(model))
        if split == "holdout":  # which images were kept from training, to be checked by whoever evaluates later
            w.write_json(HOLDOUT_FILE, source.held_names)
        has_stats = bool(stat_layers(model))
        if has_stats:  # as the teacher saw its training images: with its training augmentation
            gen = torch.Generator().manual_seed(cfg.seed)
            augment = (lambda x: random_crop_flip(x, cfg.crop_pad, gen)) if cfg.crop_pad >= 0 else (lambda x: x)
            w.save_tensors(STATS_FILE, real_statistics(model, train_set, spec, device, augment),
                           metadata={"patch_size": str(patch_size(spec.image_size))})
        w.section = {"spec": model_spec.to_dict(), "parameters": sum(p.numel() for p in model.parameters()),
                     "weights": WEIGHTS_FILE, "stats": STATS_FILE if has_stats else None,
                     "stat_layers": [name for name, _ in stat_layers(model)],
                     "bn_layers": [name for name, _ in bn_layers(model)], "train_images": len(train_set),
                     "evaluated_on": split, "holdout": HOLDOUT_FILE if split == "holdout" else None,
                     "pretrained": pretrained}
        w.metrics = {f"{spec.name}:{split}": metrics}
        w.card |= {"title": f"Teacher {cfg.model} on {spec.name}",
                   "summary": f"A `{cfg.model}` network {_history(cfg, pretrained, len(train_set), spec.name)}; "
                              f"{split} top-1 {metrics['top1']:.2%}. Holds the statistics of "
                              "the training data at its BatchNorm and Conv2d inputs, per class and overall, for "
                              "statistic-matching synthesis.",
                   "usage": ["dcond evaluate <this folder>"]}
    return w.out


def _history(cfg: TeacherConfig, pretrained: str | None, images: int, dataset: str) -> str:
    """Where the stored weights came from, for the card."""
    start = [f"with the published weights {pretrained}"] if pretrained else \
        ["started from an outside checkpoint"] if cfg.weights else []
    trained = f"trained on {images} real {dataset} images for {cfg.epochs} epochs" if cfg.epochs else \
        "not trained further"
    return ", ".join([*start, trained])


def _fit(model: torch.nn.Module, train_set, spec, cfg: TeacherConfig, device: torch.device, ckpt: Path) -> None:
    """Train in place; under torchrun with DistributedDataParallel, each rank on its share of every epoch."""
    optimizer = make_optimizer(cfg.optimizer, model.parameters(), cfg.lr, cfg.weight_decay, device=device)
    net = ddp(model, device)
    steps_per_epoch = -(-(len(train_set) // world().size) // cfg.batch_size)
    total, warmup = cfg.epochs * steps_per_epoch, cfg.warmup_epochs * steps_per_epoch
    start = 0
    if ckpt.exists():
        start = load_checkpoint(ckpt, model, optimizer)[0]["epoch"]
        info(f"resuming from epoch {start} of {cfg.epochs}")
    for epoch in range(start, cfg.epochs):
        torch.manual_seed(cfg.seed * 100_003 + epoch)  # dropout and the like: the same on a resumed run
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        model.train()
        seen, loss_sum, t0 = 0, torch.zeros((), device=device), time.perf_counter()  # read once an epoch
        with progress(f"epoch {epoch + 1}/{cfg.epochs}", steps_per_epoch) as task:
            for step, (images, labels) in enumerate(batches(train_set, cfg.batch_size, shuffle=True, shard=True,
                                                            seed=cfg.seed * 100_003 + epoch, workers=cfg.workers)):
                set_lr(optimizer, cfg.lr * lr_factor(cfg.schedule, epoch * steps_per_epoch + step, total, warmup))
                if cfg.crop_pad >= 0:
                    images = random_crop_flip(images, cfg.crop_pad, gen)
                images, labels = on_device(images, device), on_device(labels, device)
                with autocast(device, cfg.amp):
                    loss = F.cross_entropy(net(to_input(images, spec)), labels, label_smoothing=cfg.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                seen, loss_sum = seen + len(labels), loss_sum + loss.detach() * len(labels)
                task.advance(1)
        info(f"epoch {epoch + 1}/{cfg.epochs}: loss {float(loss_sum) / seen:.4f}, "
             f"{seen / (time.perf_counter() - t0):.0f} images/s")
        if world().is_main:
            save_checkpoint(ckpt, model, optimizer, {"epoch": epoch + 1})
