"""synthesize --method generative: condense a dataset into a class-conditional generator (dcond/generative.py),
trained against real data and a frozen teacher.

Every step draws `gen_batch` latents and `real_batch` real images of every class and minimises the weighted
sum of the loss terms (matching, BN statistics, intra-class, inter-class, cross-entropy). Each step's
randomness comes from its own seed, and the generator, its optimiser and the loss history are checkpointed
every `checkpoint_every` steps, so a rerun of an interrupted command resumes at its last checkpoint and ends
with the generator an uninterrupted run would have made.
"""

from dataclasses import asdict
from pathlib import Path

import torch

from dcond.artifact import ArtifactWriter, config_key, save_preview
from dcond.checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint
from dcond.config import GENERATIVE, GENERATOR_DTYPES, GenerativeConfig
from dcond.data import DataOptions, ImageDataset, load_all, to_input
from dcond.data.images import class_indices
from dcond.data.sources import load_for_teacher
from dcond.distributed import world
from dcond.engine import lr_factor, place, resolve_device, set_lr
from dcond.errors import DcondError
from dcond.generative import (WEIGHTS_FILE, Generator, GeneratorSpec, generator_losses, sample)
from dcond.log import info, progress
from dcond.models import load_teachers, state_tensors
from dcond.seeds import stream_seed
from dcond.synthesis.matching import Observer

WEIGHT_DTYPES = {name: getattr(torch, name) for name in GENERATOR_DTYPES}


def train_generator(teacher: Path, data: DataOptions, cfg: GenerativeConfig, out: Path | None = None,
                    force: bool = False) -> Path:
    (teacher_art,), (model,) = load_teachers([teacher])
    spec = teacher_art.dataset
    device = resolve_device(cfg.device)
    observer = Observer.from_artifact(teacher_art, place(model, device).eval(), device)
    if "bn" in cfg.terms and observer.classes is None:
        raise DcondError(f"the BN-statistics loss needs the per-class BN statistics of the teacher, which "
                         f"{teacher_art.path} does not hold; pass --r-bn 0")
    data, _, train = load_for_teacher(data, spec)
    members = class_indices(train.labels, spec.num_classes)
    if min(map(len, members)) == 0:
        raise DcondError(f"dataset '{data.data}' lacks images of some of the teacher's classes")
    gen_spec = GeneratorSpec(spec.num_classes, spec.channels, spec.image_size, cfg.latent_dim, cfg.width, cfg.depth)
    torch.manual_seed(cfg.seed)
    generator = place(Generator(gen_spec, spec), device)
    config = {"method": GENERATIVE, "teacher": teacher_art.digest, "data": asdict(data), **asdict(cfg)}
    with ArtifactWriter(out, "generator", spec, stage="synthesize", config=config, parents=[("teacher", teacher_art)],
                        force=force, resume_key=config_key(config)) as w:
        history = _fit(generator, observer, train, members, cfg, device, w.scratch / CHECKPOINT)
        if not world().is_main:  # every rank trains the same generator; rank 0 writes it
            return w.out
        stored = {k: v.to(WEIGHT_DTYPES[cfg.weights_dtype]) for k, v in state_tensors(generator).items()}
        w.save_tensors(WEIGHTS_FILE, stored)
        generator.load_state_dict({k: v.float() for k, v in stored.items()})  # preview what the artifact holds
        save_preview(w, samples=sample(generator, 10, cfg.seed, device))
        w.write_json("losses.json", history)
        w.section = {"spec": gen_spec.to_dict(), "weights": WEIGHTS_FILE, "dtype": cfg.weights_dtype,
                     "parameters": sum(p.numel() for p in generator.parameters()),
                     "latent": {"distribution": "standard normal", "dim": cfg.latent_dim},
                     "losses": {"weights": cfg.weights, "final": {t: history[-1][t] for t in cfg.terms}}}
        w.card |= {"title": f"A class-conditional generator of {spec.name}",
                   "summary": f"Condenses {spec.name} into a {w.section['parameters']}-parameter generator, trained "
                              f"for {cfg.iterations} steps against real images and a teacher; see preview.png.",
                   "usage": ["dcond sample <this folder> --ipc 10 --seed 0",
                             "dcond train-student <this folder> --fresh-samples 10 --teacher TEACHER"]}
    return w.out


def _fit(generator: Generator, observer: Observer, train: ImageDataset, members: list[torch.Tensor],
         cfg: GenerativeConfig, device: torch.device, ckpt: Path) -> list[dict[str, float]]:
    """Train the generator; returns the mean of every loss term over each checkpoint interval."""
    optimizer = torch.optim.Adam(generator.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
    start, history = 0, []
    if ckpt.exists():
        saved, _ = load_checkpoint(ckpt, generator, optimizer)
        start, history = saved["step"], saved["history"]
        info(f"resuming from step {start} of {cfg.iterations}")
    spec, k = generator.dataset, generator.spec.num_classes
    sums = dict.fromkeys(cfg.terms, 0.0)
    generator.train()
    with progress("generator steps", cfg.iterations) as task:
        task.advance(start)
        for step in range(start, cfg.iterations):
            set_lr(optimizer, cfg.lr * lr_factor("cosine", step, cfg.iterations))
            gen = torch.Generator().manual_seed(stream_seed(cfg.seed, step))
            picks = torch.cat([idx[torch.randint(len(idx), (cfg.real_batch,), generator=gen)] for idx in members])
            real = to_input(load_all(train.take(picks)).images.to(device), spec)
            z = torch.randn(k * cfg.gen_batch, cfg.latent_dim, generator=gen).to(device)
            labels = torch.arange(k, device=device).repeat_interleave(cfg.gen_batch)
            terms = generator_losses(observer, generator(z, labels), real, k, cfg.terms, cfg.amp)
            loss = sum(cfg.weights[t] * value for t, value in terms.items())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            sums = {t: sums[t] + value.item() for t, value in terms.items()}
            task.advance(1, f"loss {loss.item():.4f}")
            if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.iterations:
                steps = step + 1 - (history[-1]["step"] if history else 0)
                history.append({"step": step + 1} | {t: s / steps for t, s in sums.items()})
                sums = dict.fromkeys(cfg.terms, 0.0)
                if world().is_main:
                    save_checkpoint(ckpt, generator, optimizer, {"step": step + 1, "history": history})
                info(f"step {step + 1}/{cfg.iterations}: " + ", ".join(f"{t} {v:.4f}" for t, v in history[-1].items()
                                                                       if t != "step"))
    return history
