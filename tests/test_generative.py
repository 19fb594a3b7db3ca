import shutil

import pytest
import torch

import dcond.stages.generative as generative_stage
from conftest import TINY_MODEL, content
from dcond.artifact import image_files, open_artifact, verify
from dcond.data import DataOptions
from dcond.data.images import decode_image
from dcond.errors import DcondError
from dcond.generative import load_generator, sample
from dcond.models import load_model
from dcond.selection.context import SelectContext
from dcond.stages.generative import GenerativeConfig, train_generator
from dcond.stages.sample import SampleConfig, sample_images
from dcond.stages.student import FreshSamples, StudentConfig, train_student

CPU = torch.device("cpu")
TINY_GEN = dict(latent_dim=8, width=8, depth=2, gen_batch=6, real_batch=4, checkpoint_every=10, device="cpu")
OFF = dict(match_weight=0.0, bn_weight=0.0, intra_weight=0.0, inter_weight=0.0, ce_weight=0.0)


def _train(teacher, out, **overrides):
    return train_generator(teacher, DataOptions(""), GenerativeConfig(**(TINY_GEN | overrides)), out)


@pytest.fixture
def generator(tiny_teacher, tmp_path):
    return _train(tiny_teacher, tmp_path / "generator", iterations=20)


def _unit_features(generator_path, teacher, per_class=10):
    """Teacher features of the generator's samples, scaled to unit length: classes × per_class × D."""
    images, _ = sample(load_generator(open_artifact(generator_path)), per_class, 0, CPU)
    art = open_artifact(teacher)
    ctx = SelectContext(load_model(art), art.dataset, CPU, {})
    _, features = ctx.logits_and_features(ctx.inputs(images))
    return torch.nn.functional.normalize(features, dim=1).unflatten(0, (art.dataset.num_classes, per_class))


def _mean_pairwise_distance(points):
    """Mean Euclidean distance between different rows of each N×D matrix in `points` (…×N×D)."""
    n = points.shape[-2]
    return (torch.cdist(points, points).sum((-2, -1)) / (n * (n - 1))).mean().item()


def test_the_intra_class_loss_spreads_the_samples_of_each_class(tiny_teacher, tmp_path):
    base = dict(OFF, match_weight=1.0, iterations=40, lr=1e-2)
    without = _train(tiny_teacher, tmp_path / "without", **base)
    with_intra = _train(tiny_teacher, tmp_path / "with", **(base | {"intra_weight": 1.0}))
    spread = [_mean_pairwise_distance(_unit_features(g, tiny_teacher)) for g in (without, with_intra)]
    assert spread[1] > 1.5 * spread[0]


def test_the_inter_class_loss_moves_the_class_centres_apart(tiny_teacher, tmp_path):
    # on its own, the intra-class loss spreads every class over the same directions, which pulls the centres
    # together: the inter-class loss must pull them apart again
    base = dict(OFF, intra_weight=1.0, iterations=40, lr=1e-2)
    without = _train(tiny_teacher, tmp_path / "without", **base)
    with_inter = _train(tiny_teacher, tmp_path / "with", **(base | {"inter_weight": 1.0}))
    centres = [_mean_pairwise_distance(_unit_features(g, tiny_teacher).mean(1)) for g in (without, with_inter)]
    assert centres[1] > 1.5 * centres[0]


def test_the_matching_loss_falls_and_the_artifact_records_the_losses(tiny_teacher, tmp_path):
    weights = OFF | {"match_weight": 1.0, "ce_weight": 0.1}
    out = _train(tiny_teacher, tmp_path / "g", iterations=40, lr=1e-2, **weights)
    art = open_artifact(out, kinds=("generator",))
    history = art.json("losses.json")
    assert [h["step"] for h in history] == [10, 20, 30, 40] and set(history[0]) == {"step", "match", "ce"}
    assert history[-1]["match"] < 0.5 * history[0]["match"]
    assert art.section["losses"]["final"] == {"match": history[-1]["match"], "ce": history[-1]["ce"]}
    assert art.section["spec"] | {"num_classes": 3, "channels": 1, "image_size": 12} == art.section["spec"]


def _decoded(images_artifact):
    art = open_artifact(images_artifact, kinds=("images",))
    paths, labels = image_files(art)
    return torch.stack([decode_image(p, 1, 12) for p in paths]), labels


def test_sampling_with_the_same_seed_gives_the_same_images(generator, tmp_path):
    a = sample_images(generator, SampleConfig(ipc=4, seed=3, device="cpu"), tmp_path / "a")
    b = sample_images(generator, SampleConfig(ipc=4, seed=3, device="cpu"), tmp_path / "b")
    c = sample_images(generator, SampleConfig(ipc=4, seed=4, device="cpu"), tmp_path / "c")
    (images_a, labels_a), (images_b, _), (images_c, _) = map(_decoded, (a, b, c))
    assert labels_a == [0] * 4 + [1] * 4 + [2] * 4
    assert torch.equal(images_a, images_b) and content(a) == content(b)
    assert not torch.equal(images_a, images_c)
    assert len({img.tobytes() for img in images_a.numpy()}) == 12  # every latent gives its own image
    art = open_artifact(a)
    assert art.parents[0]["role"] == "generator" and (a / "preview.png").is_file() and verify(a).intact


def test_the_generator_artifact_verifies_and_loads_on_another_path(generator, tmp_path):
    copy = shutil.copytree(generator, tmp_path / "colleague" / "generator")
    assert verify(copy).intact and (copy / "preview.png").is_file()
    original, moved = (load_generator(open_artifact(p)) for p in (generator, copy))
    assert torch.equal(sample(original, 3, 0, CPU)[0], sample(moved, 3, 0, CPU)[0])
    art = open_artifact(copy)
    assert art.section["dtype"] == "float16" and art.section["latent"]["dim"] == 8
    weights = copy / art.section["weights"]
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    assert not verify(copy).intact
    with pytest.raises(DcondError, match="corrupted"):
        load_generator(open_artifact(copy))


def test_resume_gives_the_generator_of_an_uninterrupted_run(tiny_teacher, tmp_path, monkeypatch):
    straight = _train(tiny_teacher, tmp_path / "a", iterations=30)
    real, saved = generative_stage.save_checkpoint, []

    def die_after_second(*args):
        real(*args)
        saved.append(1)
        if len(saved) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(generative_stage, "save_checkpoint", die_after_second)
    with pytest.raises(KeyboardInterrupt):
        _train(tiny_teacher, tmp_path / "b", iterations=30)
    assert not (tmp_path / "b").exists()
    saved.clear()
    resumed = _train(tiny_teacher, tmp_path / "b", iterations=30)
    assert len(saved) == 1  # only the last interval was trained again
    assert content(resumed) == content(straight)


def test_a_student_trains_on_fresh_samples_of_a_generator(generator, tiny_teacher, tmp_path):
    cfg = StudentConfig(epochs=2, fresh_samples=3, teachers=[tiny_teacher], model_options={"width": 8, "depth": 2},
                        device="cpu")
    provider = FreshSamples(load_generator(open_artifact(generator)), cfg, CPU, [])
    first, again, second = (_epoch_images(provider, e) for e in (0, 0, 1))
    assert torch.equal(first, again) and not torch.equal(first, second) and len(first) == 9
    out = train_student(generator, cfg, tmp_path / "student")
    art = open_artifact(out)
    assert art.section["labels"] == "online-teacher" and art.section["train_images"] == 9
    assert {p["role"] for p in art.parents} == {"generator", "teacher"}
    with pytest.raises(DcondError, match="pass --fresh-samples"):
        train_student(generator, StudentConfig(epochs=1), tmp_path / "refused")


def _epoch_images(provider, e):
    """The images a fresh-samples provider draws for epoch e."""
    next(provider.epoch(e))
    return provider.raw.clone()


def test_bad_generative_settings_name_their_flag(tiny_teacher, tmp_path):
    for settings, flag in [({"gen_batch": 1}, "--gen-batch"), ({"latent_dim": 0}, "--latent-dim"),
                           (OFF, "loss weights"), ({"weights_dtype": "int8"}, "--weights-dtype"),
                           ({"depth": 4}, "--gen-depth")]:
        with pytest.raises(DcondError, match=flag):
            _train(tiny_teacher, tmp_path / "g", **settings)
    assert not (tmp_path / "g").exists()


def test_generative_chains_through_sample_relabel_and_train_student(cli, tiny_teacher):
    r = cli("synthesize", tiny_teacher, "--method", "generative", "--iterations", 3, "--latent-dim", 8,
            "--gen-width", 8, "--gen-depth", 2, "--gen-batch", 2, "--real-batch", 2)
    assert r.code == 0, r.stderr
    assert open_artifact(r.stdout.strip()).kind == "generator" and len(r.stdout.splitlines()) == 1
    r = cli("sample", "--ipc", 2, "--seed", 1, stdin=r.stdout)
    assert r.code == 0 and open_artifact(r.stdout.strip()).section["per_class"] == [2, 2, 2], r.stderr
    r = cli("relabel", "--teacher", tiny_teacher, "--epochs", 2, stdin=r.stdout)
    assert r.code == 0, r.stderr
    r = cli("train-student", *TINY_MODEL, "--epochs", 2, stdin=r.stdout)
    assert r.code == 0 and open_artifact(r.stdout.strip()).section["labels"] == "bank", r.stderr
