"""Generative condensation ("Dataset Condensation via Generative Model", Zhang et al., 2023): the condensed
set is a small class-conditional generator. This module holds the network, the losses that train it against
a teacher (stated with their formulas in docs/methods.md) and the seeded sampling every stage shares.
"""

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dcond.artifact import MANIFEST, Artifact
from dcond.data import DatasetSpec, to_uint8
from dcond.engine import autocast
from dcond.errors import DcondError
from dcond.models import classifier
from dcond.realstats import layer_inputs
from dcond.synthesis.matching import Observer, gap
from dcond.units import class_generator
from dcond.validate import MAX_CLASSES, MAX_IMAGE_SIZE, Fields, check_weights

WEIGHTS_FILE = "generator.safetensors"
SAMPLE_CHUNK = 500  # images generated per forward pass when sampling


@dataclass(frozen=True)
class GeneratorSpec:
    """Enough to rebuild a generator: the image shape, the classes and the architecture."""

    num_classes: int
    channels: int
    image_size: int
    latent_dim: int = 64
    width: int = 32
    depth: int = 3

    def __post_init__(self) -> None:
        if self.latent_dim < 1 or self.width < 1 or self.depth < 0:
            raise DcondError("--latent-dim and --gen-width must be at least 1, --gen-depth at least 0")
        if math.ceil(self.image_size / 2 ** self.depth) < 2:
            raise DcondError(f"--gen-depth {self.depth} is too deep for {self.image_size}-pixel images")

    def to_dict(self) -> dict:
        return {"architecture": "upconv"} | asdict(self)

    @classmethod
    def from_dict(cls, d: Any, where: str = "spec") -> "GeneratorSpec":
        f = Fields(d, where)
        f.str("architecture", ("upconv",))
        return cls(f.int("num_classes", 2, MAX_CLASSES), f.int("channels", 1, 3),
                   f.int("image_size", 1, MAX_IMAGE_SIZE), f.int("latent_dim", 1, 4096), f.int("width", 1, 4096),
                   f.int("depth", 0, 12))


class Generator(nn.Module):
    """(z, c) ↦ image. [z, embed(c)] → linear → width×s₀×s₀ → depth × (2× nearest upsampling, 3×3 conv,
    GroupNorm, LeakyReLU) → 3×3 conv → sigmoid gives pixels in [0, 1], returned normalised as the dataset's
    networks expect them. The sizes double from s₀ = ⌈size / 2^depth⌉, rounded up so any size is reached.
    GroupNorm rather than BatchNorm: an image does not depend on the others drawn with it."""

    def __init__(self, spec: GeneratorSpec, dataset: DatasetSpec):
        super().__init__()
        sizes = [math.ceil(spec.image_size / 2 ** k) for k in range(spec.depth, -1, -1)]
        self.spec, self.dataset, self.start = spec, dataset, sizes[0]
        groups = math.gcd(8, spec.width)
        self.embed = nn.Embedding(spec.num_classes, spec.latent_dim)
        self.stem = nn.Linear(2 * spec.latent_dim, spec.width * self.start ** 2)
        layers: list[nn.Module] = [nn.GroupNorm(groups, spec.width), nn.LeakyReLU(0.2)]
        for size in sizes[1:]:
            layers += [nn.Upsample(size=size), nn.Conv2d(spec.width, spec.width, 3, padding=1),
                       nn.GroupNorm(groups, spec.width), nn.LeakyReLU(0.2)]
        self.blocks = nn.Sequential(*layers)
        self.head = nn.Conv2d(spec.width, spec.channels, 3, padding=1)
        self.register_buffer("mean", torch.tensor(dataset.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(dataset.std).view(1, -1, 1, 1), persistent=False)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.stem(torch.cat([z, self.embed(labels)], 1)).view(-1, self.spec.width, self.start, self.start)
        pixels = torch.sigmoid(self.head(self.blocks(h)))
        return (pixels - self.mean) / self.std


@torch.no_grad()
def sample(generator: Generator, per_class: int, seed: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """`per_class` uint8 images of every class, class-major, and their labels; the same for the same seed."""
    generator.eval()
    images = []
    for c in range(generator.spec.num_classes):
        # class c's latents come from its own stream: they do not depend on the other classes drawn
        z = torch.randn(per_class, generator.spec.latent_dim, generator=class_generator(seed, c))
        for chunk in z.split(SAMPLE_CHUNK):
            labels = torch.full((len(chunk),), c, device=device)
            images.append(to_uint8(generator(chunk.to(device), labels), generator.dataset).cpu())
    return torch.cat(images), torch.arange(generator.spec.num_classes).repeat_interleave(per_class)


def load_generator(art: Artifact) -> Generator:
    """The generator stored in a generator artifact, in float32 and eval mode on the CPU."""
    section = Fields(art.section, f"{art.path / MANIFEST}: generator")
    spec = GeneratorSpec.from_dict(art.section.get("spec"), f"{section.where}.spec")
    if (spec.num_classes, spec.channels, spec.image_size) != \
            (art.dataset.num_classes, art.dataset.channels, art.dataset.image_size):
        raise section.bad("spec", "does not describe images of the artifact's dataset")
    weights = section.str("weights")
    if weights not in art.files:
        raise section.bad("weights", "is not a file of the artifact")
    state = {k: v.float() for k, v in art.tensors(weights).items()}
    check_weights(state, str(art.path / weights))
    with torch.device("meta"):  # the spec's network, built without memory, must match the stored weights
        shell = Generator(spec, art.dataset).state_dict()
    if {k: v.shape for k, v in shell.items()} != {k: v.shape for k, v in state.items()}:
        raise DcondError(f"{art.path}: the weights do not fit the generator's spec")
    generator = Generator(spec, art.dataset)
    generator.load_state_dict(state)
    return generator.eval()


# --- losses ---------------------------------------------------------------------------------------------------


def match_loss(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mean over classes of the mean squared gap between the class's mean fake and mean real feature.
    fake: K×B×D, real: K×R×D."""
    return (fake.mean(1) - real.mean(1)).pow(2).mean()


def _unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=-1, eps=1e-8)


def _mean_off_diagonal(sim: torch.Tensor) -> torch.Tensor:
    """Mean of the off-diagonal entries of the last two dimensions' square matrices."""
    n = sim.shape[-1]
    return (sim.sum((-2, -1)) - sim.diagonal(dim1=-2, dim2=-1).sum(-1)).mean() / (n * (n - 1))


def intra_class_loss(fake: torch.Tensor) -> torch.Tensor:
    """Mean cosine similarity between different fake samples of the same class (lower: more diverse). K×B×D."""
    u = _unit(fake)
    return _mean_off_diagonal(u @ u.transpose(1, 2))


def class_centres(fake: torch.Tensor) -> torch.Tensor:
    """Each class's centre: the direction of the mean of its samples' unit features. K×B×D -> K×D."""
    return _unit(_unit(fake).mean(1))


def inter_class_loss(fake: torch.Tensor) -> torch.Tensor:
    """Mean cosine similarity between the centres of different classes (lower: classes further apart)."""
    m = class_centres(fake)
    return _mean_off_diagonal(m @ m.T)


def class_bn_loss(observer: Observer, bn_inputs: list[torch.Tensor], num_classes: int) -> torch.Tensor:
    """Mean over classes, summed over BN layers, of the gap between the statistics of the class's fake
    batch and the class's statistics in real data (stored in the teacher artifact)."""
    gaps = []
    for x, i in zip(bn_inputs, observer.bn):
        means, variances = observer.classes[i][:2]
        x = x.unflatten(0, (num_classes, -1))  # K × B × C × …
        dims = [1, *range(3, x.ndim)]
        mu, var = x.mean(dims), x.var(dims, unbiased=False)
        gaps += [gap((mu[c], var[c]), (means[c], variances[c])) for c in range(num_classes)]
    return torch.stack(gaps).sum() / num_classes


def generator_losses(observer: Observer, fake: torch.Tensor, real: torch.Tensor, num_classes: int,
                     terms: tuple[str, ...], amp: bool = True) -> dict[str, torch.Tensor]:
    """The loss `terms` of one step. `fake` and `real` are normalised inputs, class-major, with the same count
    for every class."""
    model, head = observer.model, classifier(observer.model)  # the head's input is the feature embedding
    labels = torch.arange(num_classes, device=fake.device).repeat_interleave(len(fake) // num_classes)
    with layer_inputs([head, *(observer.layers[i] for i in observer.bn)]) as captured, autocast(fake.device, amp):
        logits = model(fake).float()
    features = _per_class(captured[0], num_classes)
    loss = {"match": lambda: match_loss(features, _class_features(model, head, real, num_classes, amp)),
            "bn": lambda: class_bn_loss(observer, captured[1:], num_classes),
            "intra": lambda: intra_class_loss(features),
            "inter": lambda: inter_class_loss(features),
            "ce": lambda: F.cross_entropy(logits, labels)}
    return {t: loss[t]() for t in terms}


@torch.no_grad()
def _class_features(model: nn.Module, head: nn.Module, x: torch.Tensor, num_classes: int, amp: bool) -> torch.Tensor:
    """Teacher features of class-major inputs, K×N×D."""
    with layer_inputs([head]) as captured, autocast(x.device, amp):
        model(x)
    return _per_class(captured[0], num_classes)


def _per_class(features: torch.Tensor, num_classes: int) -> torch.Tensor:
    """N×… features of class-major inputs as K × N/K × D."""
    return features.flatten(1).unflatten(0, (num_classes, -1))
