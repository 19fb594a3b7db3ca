"""Model registry, model artifacts, and outside checkpoints."""

from pathlib import Path

import torch
from torch import nn

from dcond.artifact import MANIFEST, Artifact, open_artifact, plain_tensor, read_tensors
from dcond.errors import DcondError
from dcond.validate import check_weights
from dcond.models import convnet, mobilenet, resnet, shufflenet, wrn  # noqa: F401  (register the built-in models)
from dcond.models.external import published_weights
from dcond.models.registry import MODELS, ModelSpec, create_model, parse_options

WEIGHTS_FILE = "model.safetensors"

__all__ = ["MODELS", "ModelSpec", "WEIGHTS_FILE", "bn_layers", "classifier", "create_model", "load_model",
           "load_teachers", "load_weights", "parse_options", "published_weights", "state_tensors"]


def bn_layers(model: nn.Module) -> list[tuple[str, nn.modules.batchnorm._BatchNorm]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def classifier(model: nn.Module) -> nn.Linear:
    """The final linear layer, whose input is the network's feature embedding."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise DcondError("this network has no linear classifier layer to take features from")
    return linears[-1]


def state_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict as independent, contiguous CPU tensors, whatever the model's memory format."""
    return {k: plain_tensor(v).clone() for k, v in model.state_dict().items()}  # tied weights share memory


def _apply_state(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    _check_fit(model, state, source)
    model.load_state_dict(state)


def _check_fit(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [k for k in own.keys() & state.keys() if own[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        parts = [f"{label} {', '.join(keys[:3])}{' …' if len(keys) > 3 else ''}"
                 for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
        raise DcondError(f"weights in {source} do not fit the model: {'; '.join(parts)}")


def load_weights(model: nn.Module, path: Path) -> None:
    """Load an outside checkpoint (.safetensors, or .pth/.pt read with weights_only=True) into `model`."""
    if not path.is_file():
        raise DcondError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        state = read_tensors(path)
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises several types for truncated files and refused pickles
            raise DcondError(f"cannot load {path} as plain weights (weights_only=True): {e}") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DcondError(f"{path} does not hold a state dict of tensors")
    _apply_state(model, {k.removeprefix("module."): v for k, v in state.items()}, str(path))


def load_model(art: Artifact) -> nn.Module:
    """The network stored in a model artifact, in eval mode on the CPU. The network is first built without
    memory and compared with the weights, so a manifest that describes a network other than the stored one
    (a huge one, say) is refused before anything is allocated."""
    where = f"{art.path / MANIFEST}: model.spec"
    spec = ModelSpec.from_dict(art.section.get("spec"), where)
    if (spec.in_chans, spec.num_classes, spec.image_size) != \
            (art.dataset.channels, art.dataset.num_classes, art.dataset.image_size):
        raise DcondError(f"{where} describes a network for {spec.in_chans}-channel {spec.image_size}-pixel images of "
                         f"{spec.num_classes} classes, not the artifact's dataset")
    state = art.tensors(WEIGHTS_FILE)
    with torch.device("meta"):
        shell = create_model(spec)
    _check_fit(shell, state, str(art.path / WEIGHTS_FILE))
    check_weights(state, str(art.path / WEIGHTS_FILE))
    model = create_model(spec)
    _apply_state(model, state, str(art.path / WEIGHTS_FILE))
    return model.eval()


def load_teachers(paths: list[Path]) -> tuple[list[Artifact], list[nn.Module]]:
    """One or more teacher model artifacts, which must share their dataset's classes and image shape."""
    if not paths:
        raise DcondError("no teacher given: pass --teacher MODEL_ARTIFACT")
    arts = [open_artifact(p, kinds=("model",)) for p in paths]
    for art in arts[1:]:
        if not art.dataset.same_classes(arts[0].dataset):
            raise DcondError(f"teachers {arts[0].path} and {art.path} were trained on different classes or shapes")
        if not art.dataset.same_validation(arts[0].dataset):
            raise DcondError(f"teachers {arts[0].path} and {art.path} hold out different validation splits "
                             "(train-teacher --validation)")
    return arts, [load_model(a) for a in arts]
