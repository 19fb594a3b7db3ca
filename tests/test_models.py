from pathlib import Path

import pytest
import torch

from dcond.errors import DcondError
from dcond.models import MODELS, ModelSpec, bn_layers, create_model, load_weights, parse_options, published_weights

SMALL = {"convnet": {"width": 8}, "resnet18-cifar": {}}


@pytest.mark.parametrize("name", MODELS.names())
@pytest.mark.parametrize("in_chans, size", [(1, 16), (3, 32)])
def test_every_registered_model_builds_and_runs(name, in_chans, size):
    model = create_model(ModelSpec(name, in_chans, 7, size, SMALL.get(name, {}))).eval()
    assert model(torch.randn(2, in_chans, size, size)).shape == (2, 7)


@pytest.mark.parametrize("name, params, convs, bns, reduction", [
    ("mobilenetv2-cifar", 697_546, 53, 53, 16), ("shufflenetv2-cifar", 351_466, 56, 56, 8),
    ("wrn", 691_674, 16, 13, 4)])
def test_small_image_zoo_is_edcs_observers(name, params, convs, bns, reduction):
    """EDC's CIFAR observers MobileNetV2 (width 0.5), ShuffleNetV2_0_5 and WRN_16_2 at 3 channels, 10 classes and
    32 pixels: the parameter and layer counts of EDC's model files (which, given the same weights, give the same
    logits as these), and the width of the last feature map, 32 / reduction."""
    model = create_model(ModelSpec(name, 3, 10, 32)).eval()
    assert sum(p.numel() for p in model.parameters()) == params
    convolutions = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert (len(convolutions), len(bn_layers(model))) == (convs, bns)
    last = []
    convolutions[-1].register_forward_hook(lambda module, args, out: last.append(out.shape[-1]))
    model(torch.randn(1, 3, 32, 32))
    assert last == [32 // reduction]


@pytest.mark.parametrize("name", ["timm:resnet10t", "resnet10t", "tv:mobilenet_v3_small"])
def test_timm_and_torchvision_models_resolve(name):
    model = create_model(ModelSpec(name, 1, 4, 32)).eval()
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 4)


def test_timm_vit_gets_the_image_size():
    model = create_model(ModelSpec("timm:vit_tiny_patch16_224", 3, 5, 32, {"patch_size": 8})).eval()
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 5)


@pytest.mark.parametrize("norm, has_bn", [("batch", True), ("instance", False), ("group", False), ("none", False)])
def test_convnet_norms(norm, has_bn):
    model = create_model(ModelSpec("convnet", 1, 3, 28, {"width": 8, "norm": norm}))
    assert bool(bn_layers(model)) == has_bn


@pytest.mark.parametrize("spec, message", [
    (ModelSpec("no-such-net", 1, 3, 28), "unknown model 'no-such-net'"),
    (ModelSpec("tv:no_such_net", 1, 3, 28), "unknown torchvision"),
    (ModelSpec("convnet", 1, 3, 28, {"norm": "layer"}), "norm 'layer'"),
    (ModelSpec("convnet", 1, 3, 8, {"depth": 4}), "too deep"),
    (ModelSpec("convnet", 1, 3, 28, {"colour": 1}), "cannot be built with options"),
    (ModelSpec("wrn", 1, 3, 28, {"depth": 12}), "not 6n"),
    (ModelSpec("shufflenetv2-cifar", 1, 3, 28, {"width": 0.75}), "width 0.75"),
])
def test_bad_models_get_clear_errors(spec, message):
    with pytest.raises(DcondError, match=message):
        create_model(spec)


def test_parse_options():
    assert parse_options(["width=64", "norm=instance", "x=1.5", "flag=true"]) == \
        {"width": 64, "norm": "instance", "x": 1.5, "flag": True}
    with pytest.raises(DcondError, match="KEY=VALUE"):
        parse_options(["width"])


def _net():
    return create_model(ModelSpec("convnet", 1, 3, 16, {"width": 4, "depth": 1}))


def test_load_weights_from_pth_and_safetensors(tmp_path):
    from safetensors.torch import save_file

    src, dst = _net(), _net()
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}, tmp_path / "w.pth")
    load_weights(dst, tmp_path / "w.pth")
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values()))
    save_file(src.state_dict(), tmp_path / "w.safetensors")
    load_weights(_net(), tmp_path / "w.safetensors")


class Payload:
    def __reduce__(self):
        return (print, ("code ran",))


def test_pickled_code_is_refused(tmp_path):
    torch.save({"state_dict": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(DcondError, match="weights_only"):
        load_weights(_net(), tmp_path / "evil.pth")


def test_mismatched_weights_get_clear_error(tmp_path):
    other = create_model(ModelSpec("convnet", 1, 5, 16, {"width": 4, "depth": 1}))
    torch.save(other.state_dict(), tmp_path / "w.pth")
    with pytest.raises(DcondError, match="wrong shape"):
        load_weights(_net(), tmp_path / "w.pth")


@pytest.fixture
def hf_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face hub cache, used offline (huggingface_hub reads both settings when it is imported)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return tmp_path / "hf"


def test_pretrained_timm_weights_come_from_the_hub_cache(hf_cache):
    """What timm downloads to the hub cache is read from there; timm adapts the first layer to one channel and
    leaves the 1000-class head out for a 4-class one."""
    import timm
    from safetensors.torch import save_file

    published = timm.create_model("test_resnet").state_dict()
    snapshot = hf_cache / "models--timm--test_resnet.r160_in1k" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    save_file(published, snapshot / "model.safetensors")
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0" * 40)
    state = create_model(ModelSpec("timm:test_resnet", 1, 4, 32), pretrained=True).state_dict()
    assert torch.equal(state["layer1.0.conv1.weight"], published["layer1.0.conv1.weight"])
    torch.testing.assert_close(state["conv1.0.weight"], published["conv1.0.weight"].sum(1, keepdim=True))
    assert state["fc.weight"].shape == (4, published["fc.weight"].shape[1])
    assert published_weights("timm:test_resnet") == "timm/test_resnet.r160_in1k"


@pytest.mark.parametrize("name, message", [
    ("timm:test_resnet", r"not in the Hugging Face hub cache \(.*hf, repo timm/test_resnet.r160_in1k\) and could "
                         r"not be downloaded"),
    ("convnet", "dcond's own network"),
    ("timm:test_vit4", "timm publishes no pretrained weights"),
])
def test_pretrained_weights_that_cannot_be_had_get_clear_errors(hf_cache, name, message):
    with pytest.raises(DcondError, match=message):
        create_model(ModelSpec(name, 3, 4, 32), pretrained=True)
