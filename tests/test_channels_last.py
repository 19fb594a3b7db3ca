"""Channels-last models (the layout `place` uses on CUDA) through every stage that writes weights, on the CPU:
DCOND_CHANNELS_LAST=1 puts the CPU on the CUDA code path."""

import pytest
import torch
from safetensors.torch import load_file

import dcond.stages.generative as generative_stage
import dcond.stages.teacher as teacher_stage
from conftest import content
from dcond.artifact import open_artifact, verify
from dcond.data import DataOptions
from dcond.engine import place
from dcond.generative import load_generator
from dcond.models import load_model
from dcond.stages.generative import GenerativeConfig, train_generator
from dcond.stages.relabel import RelabelConfig, relabel
from dcond.stages.student import StudentConfig, train_student
from dcond.stages.synthesize import SynthConfig, synthesize
from dcond.stages.teacher import TeacherConfig, train_teacher

CPU = torch.device("cpu")
TINY = {"width": 8, "depth": 2}


@pytest.fixture(autouse=True)
def channels_last(monkeypatch):
    monkeypatch.setenv("DCOND_CHANNELS_LAST", "1")


def interrupt_after(monkeypatch, module, saves: int) -> None:
    """Make `module`'s checkpoint saves raise KeyboardInterrupt (as Ctrl-C would) after `saves` of them."""
    real, done = module.save_checkpoint, []

    def save_then_die(*args):
        real(*args)
        done.append(1)
        if len(done) == saves:
            raise KeyboardInterrupt

    monkeypatch.setattr(module, "save_checkpoint", save_then_die)


def assert_loads_channels_last(weights: dict[str, torch.Tensor], model: torch.nn.Module) -> None:
    assert all(t.is_contiguous() for t in weights.values())
    model = place(model, CPU)
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    model.load_state_dict(weights)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())


def test_teacher_checkpoints_resumes_and_saves_channels_last(tiny_folder, tmp_path, monkeypatch):
    data, cfg = DataOptions(str(tiny_folder), image_size=12), TeacherConfig(model_options=TINY, epochs=3)
    interrupt_after(monkeypatch, teacher_stage, saves=2)
    with pytest.raises(KeyboardInterrupt):
        train_teacher(data, cfg, tmp_path / "resumed")
    monkeypatch.undo()
    monkeypatch.setenv("DCOND_CHANNELS_LAST", "1")
    resumed = train_teacher(data, cfg, tmp_path / "resumed")
    straight = train_teacher(data, cfg, tmp_path / "straight")
    a, b = (load_file(p / "model.safetensors") for p in (resumed, straight))
    assert all(torch.equal(a[k], b[k]) for k in a) and verify(resumed).intact
    assert_loads_channels_last(a, load_model(open_artifact(resumed)))


def test_student_and_synthesize_run_channels_last(shared_teacher_images, tmp_path):
    teacher, images = shared_teacher_images
    bank = relabel(images, [teacher], RelabelConfig(epochs=2, batch_size=8), tmp_path / "labels")
    student = train_student(bank, StudentConfig(model_options=TINY, epochs=2, ema=0.9), tmp_path / "student")
    assert verify(student).intact
    assert_loads_channels_last(load_file(student / "model.safetensors"), load_model(open_artifact(student)))
    synthesized = synthesize(teacher, DataOptions(""), SynthConfig(method="edc", ipc=2, iterations=2,
                                                                    relabel_epochs=1), tmp_path / "synth")
    assert open_artifact(synthesized).section["count"] == 6 and verify(synthesized).intact


def test_generator_checkpoints_resumes_and_saves_channels_last(shared_teacher_images, tmp_path, monkeypatch):
    teacher, _ = shared_teacher_images
    cfg = GenerativeConfig(latent_dim=8, width=8, depth=2, gen_batch=4, real_batch=2, iterations=20,
                           checkpoint_every=5, device="cpu")
    interrupt_after(monkeypatch, generative_stage, saves=2)
    with pytest.raises(KeyboardInterrupt):
        train_generator(teacher, DataOptions(""), cfg, tmp_path / "resumed")
    monkeypatch.undo()
    monkeypatch.setenv("DCOND_CHANNELS_LAST", "1")
    resumed = train_generator(teacher, DataOptions(""), cfg, tmp_path / "resumed")
    straight = train_generator(teacher, DataOptions(""), cfg, tmp_path / "straight")
    assert content(resumed) == content(straight)
    generator = load_generator(open_artifact(resumed))
    assert_loads_channels_last({k: v.float() for k, v in load_file(resumed / "generator.safetensors").items()},
                               generator)
