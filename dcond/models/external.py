"""Networks from timm (`timm:NAME` or a bare timm name) and torchvision (`tv:NAME`): built without weights, or with
`pretrained` from the weights the library publishes, read from its own cache (where it downloads them once)."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from dcond.errors import DcondError
from dcond.log import info


def is_external(name: str) -> bool:
    if name.startswith(("timm:", "tv:")):
        return True
    import timm

    return timm.is_model(name)


def builder(name: str, pretrained: bool = False) -> Callable[..., nn.Module]:
    if name.startswith("tv:"):
        return lambda in_chans, num_classes, image_size, **options: _torchvision(name[3:], in_chans, num_classes,
                                                                                 options, pretrained)
    return lambda in_chans, num_classes, image_size, **options: _timm(name.removeprefix("timm:"), in_chans,
                                                                      num_classes, image_size, options, pretrained)


def published_weights(name: str) -> str:
    """Which published weights `pretrained` starts `name` from: torchvision's weights enum (such as
    `ResNet18_Weights.IMAGENET1K_V1`), or timm's Hugging Face repo (`timm/resnet18.a1_in1k`) or URL."""
    if name.startswith("tv:"):
        return str(_torchvision_weights(name[3:]))
    cfg = _timm_weights(name.removeprefix("timm:"))
    return cfg.hf_hub_id or cfg.url


def _timm(name: str, in_chans: int, num_classes: int, image_size: int, options: dict,
          pretrained: bool) -> nn.Module:
    import timm

    if not timm.is_model(name):
        raise DcondError(f"unknown timm model '{name}'")
    kwargs = dict(pretrained=pretrained, num_classes=num_classes, in_chans=in_chans) | options
    if not pretrained:
        return _create_timm(name, image_size, kwargs)
    cfg = _timm_weights(name)  # timm itself leaves a head of other classes out and adapts the first layer's channels
    _report_head(f"timm:{name}", published_weights(f"timm:{name}"), cfg.num_classes, num_classes)
    with _downloading(f"timm:{name}", _timm_cache(cfg)):
        return _create_timm(name, image_size, kwargs)


def _create_timm(name: str, image_size: int, kwargs: dict) -> nn.Module:
    import timm

    try:  # models with a fixed input grid (ViTs) need the image size; convolutional ones reject the keyword
        return timm.create_model(name, img_size=image_size, **kwargs)
    except TypeError:
        return timm.create_model(name, **kwargs)


def _timm_weights(name: str):
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url):  # timm would go on with random weights, after a warning
        raise DcondError(f"timm publishes no pretrained weights for '{name}'")
    return cfg


def _timm_cache(cfg) -> str:
    if cfg.hf_hub_id:
        from huggingface_hub import constants

        return f"the Hugging Face hub cache ({constants.HF_HUB_CACHE}, repo {cfg.hf_hub_id})"
    return _torch_hub_cache(cfg.url)


class _ToRGB(nn.Module):
    """Feeds grayscale input to a torchvision network, which always expects three channels."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.expand(-1, 3, -1, -1))


def _torchvision(name: str, in_chans: int, num_classes: int, options: dict, pretrained: bool) -> nn.Module:
    import torchvision

    if name not in torchvision.models.list_models(module=torchvision.models):
        raise DcondError(f"unknown torchvision classification model '{name}'")
    net = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **options)
    if pretrained:
        _load_torchvision_weights(net, name, num_classes)
    return _ToRGB(net) if in_chans == 1 else net


def _torchvision_weights(name: str):
    import torchvision

    try:
        return torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, AttributeError):  # no weights enum, or one without a default
        raise DcondError(f"torchvision publishes no pretrained weights for '{name}'") from None


def _load_torchvision_weights(net: nn.Module, name: str, num_classes: int) -> None:
    """Load torchvision's default weights for `name` into `net`, built as `get_model` builds it for
    `num_classes`. When the classes differ, the tensors with one row per class (the classifier head, auxiliary
    heads too) keep their fresh initialisation; every other tensor must fit exactly."""
    weights = _torchvision_weights(name)
    with _downloading(f"tv:{name}", _torch_hub_cache(weights.url)):
        # weights_only: a file planted in the cache cannot run code (torch.hub unpickles in full by default)
        state = weights.get_state_dict(progress=False, check_hash=True, weights_only=True)
    published = len(weights.meta["categories"])
    own = net.state_dict()
    head = {} if published == num_classes else \
        {k: own[k] for k, v in state.items()
         if k in own and v.shape[:1] == (published,) and own[k].shape == (num_classes, *v.shape[1:])}
    _report_head(f"tv:{name}", str(weights), published, num_classes)
    net.load_state_dict(state | head)


def _report_head(name: str, weights: str, published: int, num_classes: int) -> None:
    head = "its own head" if published == num_classes else \
        f"a new {num_classes}-class head (the published one has {published} classes)"
    info(f"{name}: starting from the published weights {weights}, with {head}")


def _torch_hub_cache(url: str) -> str:
    return f"the torch hub cache ({Path(torch.hub.get_dir()) / 'checkpoints' / Path(url).name})"


@contextmanager
def _downloading(name: str, cache: str) -> Iterator[None]:
    """The library's download errors (no network, no such file on the hub) as one line that says where the
    library looked for the weights, so they can be put there by hand on an offline machine."""
    try:
        yield
    except OSError as e:  # URLError, huggingface_hub's LocalEntryNotFoundError and HTTP errors are all OSErrors
        raise DcondError(f"pretrained weights for {name} are not in {cache} and could not be downloaded: "
                         f"{' '.join(str(e).split())}") from None
