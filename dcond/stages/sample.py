"""sample: draw images from a generator artifact (generative condensation) into an images artifact, so that
relabel, train-student and evaluate use them like any condensed images."""

from dataclasses import asdict
from pathlib import Path

from dcond.artifact import ArtifactWriter, open_artifact, save_images, save_preview
from dcond.config import SampleConfig
from dcond.engine import resolve_device
from dcond.generative import load_generator, sample


def sample_images(generator: Path, cfg: SampleConfig, out: Path | None = None, force: bool = False) -> Path:
    art = open_artifact(generator, kinds=("generator",))
    device = resolve_device(cfg.device)
    images, labels = sample(load_generator(art).to(device), cfg.ipc, cfg.seed, device)
    spec = art.dataset
    with ArtifactWriter(out, "images", spec, stage="sample", config={"generator": art.digest, **asdict(cfg)},
                        parents=[("generator", art)], force=force) as w:
        save_images(w, images, labels)
        save_preview(w)
        w.card |= {"title": f"{cfg.ipc} images per class of {spec.name} drawn from a generator",
                   "summary": f"Sampled with seed {cfg.seed} from generator `{art.digest}`; see preview.png.",
                   "usage": ["dcond relabel <this folder> --teacher TEACHER --epochs 300",
                             "dcond train-student <this folder> --model convnet"]}
    return w.out
