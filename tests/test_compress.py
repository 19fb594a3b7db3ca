import math
import os

import pytest
import torch
from safetensors.torch import load_file
import torch.nn.functional as F
import zstandard

import dcond.compression.layout as layout
import dcond.compression as compression
from conftest import TINY_MODEL
from dcond.artifact import ArtifactWriter, open_artifact, verify
from dcond.bank import open_bank
from dcond.compression.quantize import Quantize, dequantize
from dcond.errors import DcondError
from dcond.stages.compress import CompressConfig, compress_labels
from dcond.stages.relabel import RelabelConfig, relabel
from dcond.stages.student import StudentConfig, train_student

TINY = {"width": 8, "depth": 2}
EPOCHS, BATCHES = 6, 5  # the dense bank: 24 images in batches of 5 (the last of 4), 6 epochs, 3 classes
T = 4.0


@pytest.fixture(scope="module")
def bank(shared_teacher_images, tmp_path_factory):
    teacher, images = shared_teacher_images
    out = tmp_path_factory.mktemp("dense") / "labels"
    return relabel(images, [teacher], RelabelConfig(epochs=EPOCHS, batch_size=5), out)


def compress(bank, tmp_path, name="c", **options):
    return compress_labels(bank, CompressConfig(**options), tmp_path / name)


def read_all(path, epochs=EPOCHS):
    """Every batch of the first `epochs` student epochs: (views, logits)."""
    b = open_bank(open_artifact(path))
    return [(batch.views, batch.logits) for e in range(epochs) for batch in b.epoch(e)]


def rows(batches):
    """Logits and images of all the batches, end to end."""
    return torch.cat([lg for _, lg in batches]), torch.cat([v.order for v, _ in batches])


@pytest.mark.parametrize("pick, kept", [("first", 9), ("random", 12)])
def test_prune_keeps_exactly_the_requested_fraction_and_replays_only_kept_batches(bank, tmp_path, pick, kept):
    out = compress(bank, tmp_path, method="prune", keep=0.4, pick=pick, seed=3)
    info = open_artifact(out).section["bank"]
    assert info["epochs"] is None and info["chain"][0] | {"seed": None} == {
        "method": "prune", "keep": 0.4, "pick": pick, "batches": kept, "of": EPOCHS * BATCHES, "seed": None}
    if pick == "first":  # the released code: ⌊0.4 · 6 epochs · 4 full batches⌋ = 9, chronologically, short ones dropped
        pool = load_file(out / "bank" / "shared.safetensors")["pool"].tolist()
        assert pool == [0, 1, 2, 3, 5, 6, 7, 8, 10]
    source = {tuple(v.order.tolist()): lg for v, lg in read_all(bank)}
    replayed = read_all(out, epochs=20)
    assert len(replayed) == 20 * BATCHES
    seen = set()
    for views, logits in replayed:
        key = tuple(views.order.tolist())
        torch.testing.assert_close(logits, source[key], rtol=0, atol=0)  # fp16 kept as fp16: exact
        seen.add(key)
    assert kept - 4 <= len(seen) <= kept  # the pool, drawn from with replacement


@pytest.mark.parametrize("fill, k", [("renormalize", 2), ("uniform", 1), ("min", 2)])
def test_topk_keeps_the_k_largest_within_its_bound(bank, tmp_path, fill, k):
    out = compress(bank, tmp_path, method="topk", k=k, fill=fill)
    (orig, _), (back, _) = rows(read_all(bank)), rows(read_all(out))
    p, q = F.log_softmax(orig / T, 1), F.log_softmax(back / T, 1)
    top = p.topk(k, 1).indices
    if fill == "renormalize":  # the kept classes share all the mass, in their proportions; the others none
        kept = p.gather(1, top)
        torch.testing.assert_close(q.gather(1, top), kept - kept.logsumexp(1, keepdim=True), atol=2e-3, rtol=2e-3)
        assert q.exp().scatter(1, top, 0).max() < 1e-9
        return
    torch.testing.assert_close((back / T).gather(1, top), p.gather(1, top), atol=2e-3, rtol=2e-3)  # kept as they were
    if fill == "uniform":  # KL ≤ (the remaining mass) · log(K − k)
        assert torch.equal(q.topk(k, 1).indices, top)
        mass = 1 - p.gather(1, top).exp().sum(1)
        kl = (p.exp() * (p - q)).sum(1)
        assert (kl <= mass * math.log(3 - k) + 1e-3).all() and kl.mean() > 0
    else:  # the other class takes the smallest kept value
        rest = torch.ones_like(orig, dtype=torch.bool).scatter(1, top, False)
        torch.testing.assert_close(back[rest], back.gather(1, top).min(1).values, atol=0, rtol=0)


def test_lowrank_error_is_the_singular_value_tail(bank, tmp_path):
    orig, order = rows(read_all(bank))
    for options, bound in (({"rank": 1}, lambda s: s[1:].square().sum()),
                           ({"energy": 0.9}, lambda s: 0.1 * s.square().sum()),
                           ({"rank": 3}, lambda s: 0 * s.sum())):
        back, _ = rows(read_all(compress(bank, tmp_path, name=str(options), method="lowrank", **options)))
        for i in range(24):
            z = orig[order == i].double()
            s = torch.linalg.svdvals(z - z.mean(0))
            error = (back[order == i].double() - z).square().sum()
            assert error <= bound(s) * 1.01 + 1e-3, (options, i)
            if "rank" in options:  # Eckart–Young: the truncation error is exactly the tail
                assert error >= bound(s) * 0.99 - 1e-3, (options, i)


@pytest.mark.parametrize("dtype, step", [("int8", 1 / 254), ("int4", 1 / 14), ("float16", 2**-11),
                                         ("bfloat16", 2**-8)])
@pytest.mark.parametrize("width", [7, 6])  # int4 packs two values to a byte: odd rows are padded
def test_quantize_error_is_within_half_a_step(dtype, step, width):
    x = torch.randn(50, width) * torch.logspace(-3, 2, 50)[:, None]
    x[3] = 0
    indices = torch.arange(50, dtype=torch.int16)
    back = dequantize(Quantize({}, {"dtype": dtype})({"logits": x, "indices": indices}))
    assert torch.equal(back["indices"], indices) and back["logits"].shape == x.shape and back["logits"][3].eq(0).all()
    assert ((back["logits"] - x).abs() <= x.abs().amax(1, keepdim=True) * step * 1.01 + 1e-30).all()


def test_manifest_records_chain_sizes_ratio_and_kl(bank, tmp_path):
    out = compress(bank, tmp_path, method="lowrank+quantize", rank=1, zstd_level=5)
    art = open_artifact(out)
    info = art.section["bank"]
    assert verify(out).intact and art.parents[0]["role"] == "labels"
    assert info["methods"] == ["lowrank", "quantize"] and [s["method"] for s in info["chain"]] == info["methods"]
    assert info["original_bytes"] == sum(e["size"] for n, e in open_artifact(bank).files.items()
                                         if n.startswith("bank/"))
    assert info["bytes"] == sum(e["size"] for n, e in art.files.items() if n.startswith("bank/"))
    assert info["ratio"] == pytest.approx(info["original_bytes"] / info["bytes"]) and info["ratio"] > 4
    parts = info["files"]["parts"]
    assert set(info["files"]) == {"shared", "parts"} and len(parts) == 1 and parts[0]["batches"] == EPOCHS * BATCHES
    assert all(f["name"].endswith(".zst") for f in (info["files"]["shared"], parts[0]["labels"]))
    (orig, _), (back, _) = rows(read_all(bank)), rows(read_all(out))
    kl = F.kl_div(F.log_softmax(back / T, 1), F.log_softmax(orig / T, 1), log_target=True, reduction="batchmean")
    assert info["kl"] == pytest.approx(float(kl), rel=1e-4, abs=1e-7) and info["kl"] > 0
    src, dst = sorted((bank / "images").rglob("*.png")), sorted((out / "images").rglob("*.png"))
    assert len(dst) == 24 and all(os.path.samefile(a, b) for a, b in zip(src, dst))


def test_views_are_drawn_again_from_the_seed_or_else_stored(bank, tmp_path, monkeypatch):
    source = read_all(bank)
    drawn = compress(bank, tmp_path, name="drawn", method="topk", k=2)
    assert open_artifact(drawn).section["bank"]["views_from_seed"] and not list((drawn / "bank").glob("views-*"))
    real = layout.drawn_views
    monkeypatch.setattr(layout, "drawn_views", lambda info, size, e: real(info | {"seed": info["seed"] + 1}, size, e))
    stored = compress(bank, tmp_path, name="stored", method="topk", k=2)
    monkeypatch.undo()
    assert not open_artifact(stored).section["bank"]["views_from_seed"]
    for path in (drawn, stored):
        for (a, _), (b, _) in zip(source, read_all(path)):
            assert all(torch.equal(x, y) for x, y in zip(a.tensors().values(), b.tensors().values()))


@pytest.mark.parametrize("chain, options", [("topk", {"k": 1}), ("prune+quantize", {"keep": 0.5, "pick": "random"}),
                                            ("lowrank+quantize", {"energy": 0.9})])
def test_a_bank_streamed_in_parts_and_passes_reads_back_as_one_written_whole(bank, tmp_path, monkeypatch, chain,
                                                                             options):
    """compress-labels holds a part at a time (and lowrank sums a few images per pass): the stored bank replays
    the same labels as one written in a single part and a single pass, and records the same KL."""
    whole = compress(bank, tmp_path, name="whole", method=chain, **options)
    monkeypatch.setattr(compression, "MEMORY_BYTES", 7 * 4 * 3)  # 7 views in memory: parts of 2 batches; lowrank: 1
    # image per pass
    parts = compress(bank, tmp_path, name="parts", method=chain, **options)
    a, b = open_artifact(whole).section["bank"], open_artifact(parts).section["bank"]
    assert len(a["files"]["parts"]) == 1 and len(b["files"]["parts"]) == -(-a["chain"][0].get("batches", 30) // 2)
    assert b["kl"] == pytest.approx(a["kl"], rel=1e-4, abs=1e-7)
    for (va, la), (vb, lb) in zip(read_all(whole), read_all(parts), strict=True):
        assert torch.equal(va.order, vb.order)
        torch.testing.assert_close(la, lb, atol=0.02, rtol=0)  # int8 scales per part row: within a step


@pytest.mark.parametrize("chain, options", [
    ("prune", {"keep": 0.5}), ("topk", {}), ("lowrank", {"energy": 0.95}), ("quantize", {"zstd_level": 3}),
    ("prune+topk+quantize", {"keep": 0.5, "k": 2, "zstd_level": 3}),
    ("prune+lowrank+quantize", {"rank": 1, "dtype": "bfloat16"}),
])
def test_student_trains_from_each_compressed_form(bank, tmp_path, chain, options):
    labels = compress(bank, tmp_path, method=chain, **options)
    out = train_student(labels, StudentConfig(model_options=TINY, epochs=4, lr=1e-2), tmp_path / "s")
    art = open_artifact(out)
    assert art.section["labels"] == "bank" and art.parents[0]["role"] == "labels"
    assert art.metrics["tiny:test"]["top1"] > 0.5


def reseal(path, name, data, out):
    """A copy of a labels artifact whose file `name` holds `data`, with a manifest that vouches for it."""
    art = open_artifact(path)
    with ArtifactWriter(out, "labels", art.dataset, stage="test", config={}) as w:
        for f in art.files:
            if f != "README.md":
                w.path(f).write_bytes(data if f == name else (path / f).read_bytes())
        w.section = art.section
    return out


def test_zstd_frames_that_expand_too_far_or_are_truncated_are_refused(bank, tmp_path):
    out = compress(bank, tmp_path, method="quantize", zstd_level=3)
    entry = open_artifact(out).section["bank"]["files"]["parts"][0]["labels"]
    frame = (out / entry["name"]).read_bytes()
    bomb = zstandard.ZstdCompressor().compress(bytes(entry["raw_bytes"] + 10**6))
    for name, data, error in (("bomb", bomb, "expand to .* past the"), ("cut", frame[:-8], "truncated or corrupt")):
        with pytest.raises(DcondError, match=error):
            read_all(reseal(out, entry["name"], data, tmp_path / name), epochs=1)  # a part is read when replayed


def test_bad_requests_are_clear_errors(bank, tmp_path):
    for options, error in (({"method": "topk+prune"}, "--method topk\\+prune: a chain"),
                           ({"method": "svd"}, "unknown label-compression method 'svd'"),
                           ({"method": "lowrank"}, "needs --rank R or --energy E"), ({"keep": 0}, "--keep")):
        with pytest.raises(DcondError, match=error):
            CompressConfig(**options)
    with pytest.raises(DcondError, match="--k 3 keeps every class"):
        compress(bank, tmp_path, name="k3", method="topk", k=3)
    once = compress(bank, tmp_path, method="topk")
    with pytest.raises(DcondError, match="already compressed"):
        compress(once, tmp_path, name="twice", method="topk")
    assert not (tmp_path / "k3").exists() and not (tmp_path / "twice").exists()


def test_cli_compress_then_train_student(cli, bank, tmp_path):
    r = cli("compress-labels", bank, "--method", "prune+topk", "--keep", 0.5, "--k", 1, "--zstd-level", 3,
            "--out", tmp_path / "c")
    assert r.code == 0 and r.stdout.strip() == str(tmp_path / "c"), r.stderr
    chain = open_artifact(tmp_path / "c").section["bank"]["chain"]
    assert chain[1] == {"method": "topk", "k": 1, "fill": "renormalize"}
    r = cli("train-student", *TINY_MODEL, "--epochs", 2, stdin=r.stdout)
    assert r.code == 0 and open_artifact(r.stdout.strip()).kind == "model", r.stderr
    r = cli("compress-labels", bank, "--method", "prune+nothing", "--out", tmp_path / "bad")
    assert r.code == 1 and "unknown label-compression method 'nothing'" in r.stderr and not (tmp_path / "bad").exists()
