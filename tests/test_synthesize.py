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
from dcond.stages.synthesize import SynthConfig, resolve_settings, synthesize
from dcond.synthesis import SYNTHESIZERS, Observer, SynthContext, synthesize_unit
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
    ctx = SynthContext([Observer.from_artifact(arts[0], place(models[0], device).eval(), device)], spec, device,
                       resolve_settings(cfg, method, spec))
    return ctx, method


@pytest.mark.parametrize("method", ["sre2l", "classwise"])
def test_the_statistics_loss_falls(method, tiny_teacher):
    ctx, m = _context(tiny_teacher, method, iterations=60, r_bn=1.0, lr=0.1, crop_scale=(1.0, 1.0), jitter=0)
    unit = plan_units(3, 2, 2, 0, m.mix_classes)[0]
    _, history = synthesize_unit(ctx, m, unit)
    assert sum(history[-10:]) / 10 < 0.7 * sum(history[:10]) / 10


def test_classwise_batches_hold_one_class(tiny_teacher, tmp_path, monkeypatch):
    seen = []
    real = synth_stage.synthesize_unit
    monkeypatch.setattr(synth_stage, "synthesize_unit", lambda ctx, m, u: (seen.append(u.labels), real(ctx, m, u))[1])
    synthesize(tiny_teacher, DataOptions(""), SynthConfig(method="classwise", ipc=3, iterations=2, per_unit=2),
               tmp_path / "s")
    assert len(seen) == 6 and all(len(set(labels.tolist())) == 1 for labels in seen)
    mixed = plan_units(3, 2, 2, 0, mix_classes=True)
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


def test_edc_starts_from_an_init_artifact(tiny_teacher, tmp_path):
    init = select(tiny_teacher, DataOptions(""), SelectConfig(ipc=2), tmp_path / "init")
    out = synthesize(tiny_teacher, DataOptions(""), SynthConfig(method="edc", ipc=2, iterations=1, lr=1e-6,
                                                                init=init), tmp_path / "s")
    art = open_artifact(out)
    assert {p["role"] for p in art.parents} == {"teacher", "init"}
    init_files, _ = image_files(open_artifact(init))
    out_files, _ = image_files(art)
    for a, b in zip(init_files, out_files):  # a near-zero learning rate leaves the real images as they were
        assert (decode_image(a, 1, 12).int() - decode_image(b, 1, 12).int()).abs().max() <= 1


def test_synthesize_cli_chains_into_train_student(cli, tiny_teacher, tmp_path):
    r = cli("synthesize", tiny_teacher, "--method", "sre2l", "--ipc", 1, "--iterations", 3, "--relabel-epochs", 2)
    assert r.code == 0, r.stderr
    r = cli("train-student", *TINY_MODEL, "--epochs", 2, stdin=r.stdout)
    assert r.code == 0 and open_artifact(r.stdout.strip()).section["labels"] == "bank", r.stderr
