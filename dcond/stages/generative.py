"""synthesize --method generative: condense a dataset into a class-conditional generator (dcond/generative.py),
trained against real data and a frozen teacher.

Every step draws `gen_batch` latents and `real_batch` real images of every class and minimises the weighted
sum of the loss terms (matching, BN statistics, intra-class, inter-class, cross-entropy). Each step's
randomness comes from its own seed, and the generator, its optimiser and the loss history are checkpointed
every `checkpoint_every` steps, so a rerun of an interrupted command resumes at its last checkpoint and ends
with the generator an uninterrupted run would have made.
"""

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from dcond.artifact import ArtifactWriter, config_key, save_preview
from dcond.checkpoint import load_checkpoint, save_checkpoint
from dcond.data import DataOptions, ImageDataset, load_all, to_input
from dcond.data.images import class_indices
from dcond.data.sources import load_for_teacher
from dcond.distributed import world
from dcond.engine import lr_factor, place, resolve_device, set_lr
from dcond.errors import DcondError
from dcond.generative import (LOSS_TERMS, WEIGHTS_FILE, Generator, GeneratorSpec, generator_losses, sample)
from dcond.log import info, progress
from dcond.models import load_teachers, state_tensors
from dcond.synthesis import Observer

GENERATIVE = "generative"  # the --method of `dcond synthesize` that runs this stage
CHECKPOINT = "checkpoint.safetensors"
WEIGHT_DTYPES = {"float16": torch.float16, "float32": torch.float32}


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
        if self.weights_dtype not in WEIGHT_DTYPES:
            raise DcondError(f"--weights-dtype must be one of {', '.join(WEIGHT_DTYPES)}")

    @property
    def weights(self) -> dict[str, float]:
        return {"match": self.match_weight, "bn": self.bn_weight, "intra": self.intra_weight,
                "inter": self.inter_weight, "ce": self.ce_weight}

    @property
    def terms(self) -> tuple[str, ...]:
        """The loss terms with a non-zero weight: the only ones computed."""
        return tuple(t for t in LOSS_TERMS if self.weights[t])


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
        saved = load_checkpoint(ckpt, generator, optimizer)
        start, history = saved["step"], saved["history"]
        info(f"resuming from step {start} of {cfg.iterations}")
    spec, k = generator.dataset, generator.spec.num_classes
    sums = dict.fromkeys(cfg.terms, 0.0)
    generator.train()
    with progress("generator steps", cfg.iterations) as task:
        task.advance(start)
        for step in range(start, cfg.iterations):
            set_lr(optimizer, cfg.lr * lr_factor("cosine", step, cfg.iterations))
            gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
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
