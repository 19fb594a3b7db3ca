from dataclasses import replace

import pytest
import torch

import dcond.stages.synthesize as synth_stage
from conftest import TINY_MODEL, content
from dcond.artifact import image_files, open_artifact, verify
from dcond.data import DataOptions
from dcond.data.images import decode_image
from dcond.engine import place
from dcond.errors import DcondError
from dcond.models import load_teachers
from dcond.stages.select import SelectConfig, select
from dcond.spec import DatasetSpec
from dcond.realstats import batch_stats, is_conv, layer_inputs
from dcond.stages.synthesize import SynthConfig, resolve_settings, synthesize, unit_shape
from dcond.synthesis import SYNTHESIZERS
from dcond.synthesis.matching import Observer, SynthContext, gap, synthesize_unit
from dcond.units import plan_units

FAST = dict(ipc=2, iterations=20)


@pytest.mark.parametrize("method", SYNTHESIZERS.names())
def test_each_method_makes_ipc_images_per_class(method, tiny_teacher, tmp_path):
    out = synthesize(tiny_teacher, DataOptions(""), SynthConfig(method=method, **FAST), tmp_path / "s")
    art = open_artifact(out, kinds=("images",))
    _, labels = image_files(art)
    assert torch.bincount(torch.tensor(labels)).tolist() == [2, 2, 2]
    assert art.section["per_class"] == [2, 2, 2] and (out / "preview.png").is_file() and verify(out).intact
    assert art.producer["config"]["method"] == method and "iterations" in art.producer["config"]
    assert (out / "README.md").read_text().startswith("---")


def _context(teacher, method_name, **overrides):
    arts, models = load_teachers([teacher])
    cfg = SynthConfig(method=method_name, **(FAST | overrides))
    method = SYNTHESIZERS.get(method_name)()
    spec, device = arts[0].dataset, torch.device("cpu")
    starts = {c: torch.randint(0, 256, (2, 1, 12, 12), dtype=torch.uint8) for c in range(3)}  # "real" images
    ctx = SynthContext([Observer.from_artifact(arts[0], place(models[0], device).eval(), device)], spec, device,
                       resolve_settings(cfg, method, spec), starts if method.real_init else {})
    return ctx, method


@pytest.mark.parametrize("method, fall", [("sre2l", 0.7), ("classwise", 0.7), ("edc", 0.8)])
def test_the_statistics_loss_falls(method, fall, tiny_teacher):
    ctx, m = _context(tiny_teacher, method, iterations=60, r_bn=1.0, lr=0.1, crop_scale=(1.0, 1.0), jitter=0,
                      flip=0.0)
    unit = plan_units(3, 2, 2, 0, 3 if m.batching == "mixed" else 1)[0]
    _, history = synthesize_unit(ctx, m, unit)
    assert sum(history[-10:]) / 10 < fall * sum(history[:10]) / 10


def test_observers_take_turns_as_one_counter_running_through_the_units_in_order(tiny_teacher, monkeypatch):
    """EDC's recover loop never resets its observer counter between batches: with 3 observers and 4 iterations
    a batch, the second batch starts at the second observer."""
    ctx, edc = _context(tiny_teacher, "edc", iterations=4)
    ctx.observers = [replace(ctx.observers[0]) for _ in range(3)]  # three observers, told apart by identity
    turns = []
    real = edc.stat_loss
    monkeypatch.setattr(edc, "stat_loss", lambda ctx, observer, *args: (
        turns.append(next(i for i, o in enumerate(ctx.observers) if o is observer)), real(ctx, observer, *args))[1])
    for unit in plan_units(3, 2, 2, 0)[:2]:
        synthesize_unit(ctx, edc, unit)
    assert turns == [0, 1, 2, 0, 1, 2, 0, 1]


def test_classwise_batches_hold_one_class(tiny_teacher, tmp_path, monkeypatch):
    seen = []
    real = synth_stage.synthesize_unit
    monkeypatch.setattr(synth_stage, "synthesize_unit", lambda ctx, m, u: (seen.append(u.labels), real(ctx, m, u))[1])
    synthesize(tiny_teacher, DataOptions(""), SynthConfig(method="classwise", ipc=3, iterations=2, per_unit=2),
               tmp_path / "s")
    assert len(seen) == 6 and all(len(set(labels.tolist())) == 1 for labels in seen)
    mixed = plan_units(3, 2, 2, 0, classes_per_unit=3)
    assert mixed[0].labels.tolist() == [0, 0, 1, 1, 2, 2]


def test_resume_gives_the_images_of_an_uninterrupted_run(tiny_teacher, tmp_path, interrupt_units):
    cfg = SynthConfig(method="classwise", ipc=2, iterations=5)
    straight = synthesize(tiny_teacher, DataOptions(""), cfg, tmp_path / "a")
    undo = interrupt_units(2)
    with pytest.raises(KeyboardInterrupt):
        synthesize(tiny_teacher, DataOptions(""), cfg, tmp_path / "b")
    undo()
    resumed = synthesize(tiny_teacher, DataOptions(""), cfg, tmp_path / "b")
    assert content(straight) == content(resumed)


def test_a_teacher_without_batchnorm_is_refused(cli, tiny_folder, tmp_path):
    r = cli("train-teacher", "--data", tiny_folder, "--image-size", 12, "--epochs", 1, *TINY_MODEL,
            "--model-opt", "norm=instance", "--out", tmp_path / "t")
    assert r.code == 0
    with pytest.raises(DcondError, match="has no BatchNorm layers"):
        synthesize(tmp_path / "t", DataOptions(""), SynthConfig(**FAST), tmp_path / "s")
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("given", [True, False])
def test_edc_starts_from_an_init_artifact_or_the_images_select_random_draws(given, tiny_teacher, tmp_path):
    # without --init, EDC's start is `select random`'s draw of the same seed: benchmarks pair the two by images
    init = select(tiny_teacher, DataOptions(""), SelectConfig(ipc=2, seed=1), tmp_path / "init")
    out = synthesize(tiny_teacher, DataOptions(""), SynthConfig(method="edc", ipc=2, iterations=1, lr=1e-6, seed=1,
                                                                init=init if given else None), tmp_path / "s")
    art = open_artifact(out)
    assert {p["role"] for p in art.parents} == ({"teacher", "init"} if given else {"teacher"})
    init_files, _ = image_files(open_artifact(init))
    out_files, _ = image_files(art)
    for a, b in zip(init_files, out_files):  # a near-zero learning rate leaves the real images as they were
        assert (decode_image(a, 1, 12).int() - decode_image(b, 1, 12).int()).abs().max() <= 1


def test_synthesize_cli_chains_into_train_student(cli, tiny_teacher, tmp_path):
    r = cli("synthesize", tiny_teacher, "--method", "sre2l", "--ipc", 1, "--iterations", 3, "--relabel-epochs", 2)
    assert r.code == 0, r.stderr
    r = cli("train-student", *TINY_MODEL, "--epochs", 2, stdin=r.stdout)
    assert r.code == 0 and open_artifact(r.stdout.strip()).section["labels"] == "bank", r.stderr


def _spec(classes: int, size: int, channels: int = 3) -> DatasetSpec:
    return DatasetSpec("d", tuple(map(str, range(classes))), channels, size, (0.5,) * channels, (0.25,) * channels)


@pytest.mark.parametrize("method, classes, size, expected", [
    ("edc", 10, 28, {"recipe": "cifar10", "iterations": 75, "r_bn": 0.01, "crop_scale": (0.08, 1.0), "lr": 0.05}),
    ("edc", 100, 32, {"recipe": "cifar100", "iterations": 2000, "r_bn": 0.01, "crop_scale": (0.5, 1.0)}),
    ("edc", 1000, 224, {"recipe": "imagenet", "iterations": 1000, "r_bn": 0.1, "crop_scale": (0.5, 1.0)}),
    ("sre2l", 10, 28, {"recipe": "cifar10", "iterations": 1000, "crop_scale": None, "flip": 0.0, "jitter": 4}),
    ("sre2l", 1000, 224, {"recipe": "imagenet", "iterations": 4000, "crop_scale": (0.08, 1.0), "jitter": 32}),
    ("classwise", 200, 64, {"recipe": "tiny-imagenet", "r_bn": 0.05, "lr": 0.1, "iterations": 4000}),
])
def test_with_no_flags_a_method_runs_its_authors_recipe_for_data_of_that_shape(method, classes, size, expected):
    settings = resolve_settings(SynthConfig(method=method, ipc=10), SYNTHESIZERS.get(method)(), _spec(classes, size))
    assert {k: settings[k] for k in expected} == expected


def test_flags_and_a_named_recipe_override_the_automatic_one():
    edc = SYNTHESIZERS.get("edc")()
    settings = resolve_settings(SynthConfig(method="edc", recipe="imagenet", iterations=7), edc, _spec(10, 28))
    assert (settings["recipe"], settings["iterations"], settings["r_bn"]) == ("imagenet", 7, 0.1)
    with pytest.raises(DcondError, match="--recipe must be auto or one of"):
        SynthConfig(recipe="mnist")


@pytest.mark.parametrize("batching, ipc, expected", [
    ("class-major", 1, (1, 10)), ("class-major", 3, (3, 3)), ("class-major", 10, (10, 1)), ("class-major", 50, (10, 1)),
    ("per-class", 1, (1, 1)), ("mixed", 50, (10, 10)), ("mixed", 2, (2, 10)),
])
def test_units_are_batches_of_the_recipes_size_made_as_the_method_makes_them(batching, ipc, expected):
    assert unit_shape(batching, 10 if batching != "mixed" else 100, None, ipc, 10) == expected


def test_edc_matches_every_bn_and_conv_input_softly_through_a_moving_average(shared_teacher_images):
    """EDC's loss, checked against its formula: at every BN and Conv2d input, α·gap to the whole set's
    statistics + (1 − α)·gap to the class's, the first layer ×10; the statistics compared are a moving average
    (from 0, momentum β) whose gradient is the current batch's."""
    teacher, _ = shared_teacher_images
    ctx, edc = _context(teacher, "edc", alpha=0.3, ema_momentum=0.8)
    observer = ctx.observers[0]
    unit = plan_units(3, 2, 2, 0)[1]  # class 1
    x = torch.randn(2, 1, 12, 12, requires_grad=True)
    with layer_inputs(observer.layers) as inputs:
        observer.model(x)
    state: dict = {}
    edc.stat_loss(ctx, observer, inputs, unit, state)
    loss = edc.stat_loss(ctx, observer, inputs, unit, state)  # second step: the average is 0.36 s
    expected = 0
    for i, (inp, layer) in enumerate(zip(inputs, observer.layers)):
        stats = [0.36 * s for s in batch_stats(inp.detach(), is_conv(layer), 4)]
        term = 0.3 * gap(stats, observer.global_target(i)) + 0.7 * gap(stats, observer.class_target(i, unit.labels))
        expected += (10 if i == 0 else 1) * term
    torch.testing.assert_close(loss, expected)
    assert len(observer.layers) == 4 and sum(map(is_conv, observer.layers)) == 2  # conv, BN, conv, BN
    loss.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
