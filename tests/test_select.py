import pytest
import torch

from conftest import content
from dcond.artifact import image_files, open_artifact, verify
from dcond.data import DataOptions, load_all, load_split, to_input
from dcond.data.images import decode_image
from dcond.errors import DcondError
from dcond.models import load_model
from dcond.spec import DatasetSpec
from dcond.selection import SELECTORS, rded
from dcond.selection.context import SelectContext
from dcond.selection.score import coding_rate, lazy_greedy
from dcond.stages.select import SelectConfig, resolve_options, select


def selected(out):
    art = open_artifact(out)
    paths, labels = image_files(art)
    spec = art.dataset
    return torch.stack([decode_image(p, spec.channels, spec.image_size) for p in paths]), torch.tensor(labels)


@pytest.mark.parametrize("method", SELECTORS.names())
def test_each_method_picks_ipc_images_of_the_right_class(method, tiny_teacher, tiny_folder, tmp_path):
    out = select(tiny_teacher, DataOptions(""), SelectConfig(method=method, ipc=3, score_views=2), tmp_path / "s")
    images, labels = selected(out)
    assert torch.bincount(labels).tolist() == [3, 3, 3]
    _, real = load_split(DataOptions(str(tiny_folder), image_size=12), "train")
    real = load_all(real)
    if method == "rded":  # crops, not copies: the teacher must see each one as its class
        teacher = load_model(open_artifact(tiny_teacher))
        assert torch.equal(teacher(to_input(images, open_artifact(out).dataset)).argmax(1), labels)
    else:
        assert all(any(torch.equal(img, r) for r in real.images[real.labels == c]) for img, c in zip(images, labels))
    assert (out / "preview.png").is_file() and verify(out).intact


def test_rded_factor_two_stitches_images_of_the_dataset_size(tiny_teacher, tmp_path):
    out = select(tiny_teacher, DataOptions(""), SelectConfig(method="rded", ipc=1, factor=2), tmp_path / "s")
    images, labels = selected(out)
    assert images.shape == (3, 1, 12, 12) and labels.tolist() == [0, 1, 2]


@pytest.mark.parametrize("size, classes, factor", [(28, 10, 1), (32, 100, 1), (64, 200, 1), (224, 1000, 2)])
def test_rded_with_no_flags_runs_the_released_recipe_for_the_data(size, classes, factor):
    spec = DatasetSpec("d", tuple(map(str, range(classes))), 3, size, (0.5,) * 3, (0.25,) * 3)
    options = resolve_options(SelectConfig(method="rded"), spec)
    assert (options["candidates"], options["crops"], options["crop_scale"], options["factor"]) == \
        (300, 5, (0.08, 1.0), factor)
    assert resolve_options(SelectConfig(method="herding"), spec)["candidates"] is None  # all images


def test_rded_tiles_crop_k_ipc_plus_j_into_cell_k_of_image_j():
    patches = torch.arange(8, dtype=torch.uint8).view(8, 1, 1, 1).expand(8, 1, 2, 2)  # rank r has value r
    images = rded._stitch(patches, ipc=2, factor=2, size=4)
    assert images[0, 0].tolist() == [[0, 0, 2, 2], [0, 0, 2, 2], [4, 4, 6, 6], [4, 4, 6, 6]]
    assert images[1, 0].tolist() == [[1, 1, 3, 3], [1, 1, 3, 3], [5, 5, 7, 7], [5, 5, 7, 7]]


def test_rded_scores_a_crop_centred_on_a_mean_coloured_input(tiny_teacher, monkeypatch):
    art = open_artifact(tiny_teacher)
    ctx = SelectContext(load_model(art), art.dataset, torch.device("cpu"), {})
    seen = []
    monkeypatch.setattr(ctx, "logits_and_features", lambda x: (seen.append(x), (torch.zeros(len(x), 3), None))[1])
    rded._loss(ctx, torch.full((2, 1, 6, 6), 255, dtype=torch.uint8), 0, 12)
    (x,) = seen
    assert x.shape == (2, 1, 12, 12) and x[:, :, 3:9, 3:9].min() > 0
    assert x[:, :, :3].abs().max() == 0 and x[:, :, :, 9:].abs().max() == 0


def test_lazy_greedy_gains_never_increase_and_match_plain_greedy():
    gen = torch.Generator().manual_seed(0)
    z = torch.rand(40, 6, generator=gen).softmax(1)
    modular = torch.rand(40, generator=gen) * 0.1
    alpha = 6 / (8 * 0.5)
    chosen, gains = lazy_greedy(modular, z, alpha, 1.0, 8)
    assert all(a >= b - 1e-12 for a, b in zip(gains, gains[1:]))

    def objective(idx):
        return float(modular[idx].sum()) + float(coding_rate(z[idx].double(), alpha)) if idx else 0.0

    plain: list[int] = []
    for _ in range(8):
        plain.append(max((i for i in range(40) if i not in plain), key=lambda i: objective(plain + [i])))
    assert chosen == plain
    torch.testing.assert_close(torch.tensor(sum(gains)), torch.tensor(objective(chosen)), rtol=1e-9, atol=1e-9)


def test_coding_rate_is_the_same_on_either_gram_matrix():
    z = torch.randn(3, 7, dtype=torch.float64)
    direct = 0.5 * torch.logdet(torch.eye(7, dtype=torch.float64) + 0.3 * z.T @ z)
    torch.testing.assert_close(coding_rate(z, 0.3), direct)


def test_select_resumes_after_an_interruption(tiny_teacher, tmp_path, interrupt_units):
    cfg = SelectConfig(method="herding", ipc=2)
    straight = select(tiny_teacher, DataOptions(""), cfg, tmp_path / "a")
    undo = interrupt_units(1)
    with pytest.raises(KeyboardInterrupt):
        select(tiny_teacher, DataOptions(""), cfg, tmp_path / "b")
    undo()
    resumed = select(tiny_teacher, DataOptions(""), cfg, tmp_path / "b")
    assert content(straight) == content(resumed)


def test_bad_selection_requests(tiny_teacher, tmp_path):
    with pytest.raises(DcondError, match="unknown selection method"):
        SelectConfig(method="kmeans")
    with pytest.raises(DcondError, match="has 8 images; --ipc 9"):
        select(tiny_teacher, DataOptions(""), SelectConfig(ipc=9), tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_select_cli_with_one_stage_relabel(cli, tiny_teacher, tmp_path):
    r = cli("select", tiny_teacher, "--method", "random", "--ipc", 2, "--relabel-epochs", 2, "--out", tmp_path / "s")
    assert r.code == 0 and r.stdout.strip() == str(tmp_path / "s"), r.stderr
    art = open_artifact(tmp_path / "s")
    assert art.kind == "labels" and art.section["bank"]["epochs"] == 2 and art.section["count"] == 6
