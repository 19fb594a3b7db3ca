"""Fuzz everything that reads an artifact: mutate one file of a small artifact (its manifest, a safetensors
file, a zstandard frame, a PNG, or the folder's structure), sometimes re-sealing the manifest so that the
checksums pass and the damage reaches the parsers, then run `verify`, `inspect` and the stages that consume
that kind of artifact on it, in this process, each under a time limit.

Every outcome must be success on intact data or exactly one `error: …` line (a DcondError) with a non-zero
exit. A failure is any of:
  traceback  an exception escaped the command, or stderr shows a traceback
  internal   the one line is dcond's "internal error" (an exception it did not expect)
  hang       the command ran past the time limit
  oom        it ran out of memory (under the address-space limit set here)
  silent     exit 0 on damage the command read or vouched for: `verify` on any change the checksums cover,
             a consumer on an unsealed change to a file it read, or on a re-sealed tensor poisoned with a
             value its role forbids (NaN, an index out of range, a crop outside the image)

Usage: .venv/bin/python benchmarks/fuzz.py --mutations 1000 [--seed 0] [--out benchmarks/out/fuzz]
Prints a table of outcomes by file type and writes every case to OUT/cases.jsonl; exits 1 on any failure.
The test suite runs a seeded quick subset (tests/test_fuzz.py).
"""

import argparse
import contextlib
import io
import json
import random
import resource
import shutil
import signal
import struct
import sys
import zlib
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import zstandard
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from conftest import make_image_folder, reseal  # noqa: E402  (the test suite's tiny folders, and re-sealing)

import dcond.artifact as artifact  # noqa: E402
from dcond.cli import main as dcond_main  # noqa: E402

MANIFEST = artifact.MANIFEST
TINY = ["--model-opt", "width=8", "--model-opt", "depth=2"]
TIME_LIMIT_S = 120
# what a tensor may hold, by name: (low, high) bounds; any float must also be finite
# ("n": a count of the tiny artifacts' images, classes or batches, all below 100)
ROLES = {"order": (0, "n"), "mix_perm": (0, "n"), "boxes": (0, 1), "flips": (0, 1), "mix_lam": (0, 1),
         "mix_box": (0, 1), "indices": (0, "n"), "pool": (0, "n"), "var": (0, float("inf")),
         "running_var": (0, float("inf")), "count": (0, float("inf"))}
POISON = [float("nan"), float("inf"), -5, 10**6, 1e9]
JSON_POISON = [-5, 0, 2**63, 1e9, 1e308, float("nan"), "", "HACKED", None, [], {}, True, "../escape", "/etc/passwd",
               "x" * 10_000, [1] * 1000]


def build(root: Path) -> dict[str, Path]:
    """The artifacts to damage: a teacher, images, a dense bank, a compressed (zstd) bank and a generator."""
    from dcond.data import DataOptions
    from dcond.stages.compress import CompressConfig, compress_labels
    from dcond.stages.generative import GenerativeConfig, train_generator
    from dcond.stages.relabel import RelabelConfig, relabel
    from dcond.stages.select import SelectConfig, select
    from dcond.stages.teacher import TeacherConfig, train_teacher

    folder = make_image_folder(root / "tiny", test_per_class=2)
    teacher = train_teacher(DataOptions(str(folder), image_size=12),
                            TeacherConfig(epochs=1, batch_size=8, model_options={"width": 8, "depth": 2}),
                            root / "teacher")
    images = select(teacher, DataOptions(""), SelectConfig(method="random", ipc=2), root / "images")
    labels = relabel(images, [teacher], RelabelConfig(epochs=2, batch_size=4), root / "labels")
    compressed = compress_labels(labels, CompressConfig(method="prune+topk+quantize", keep=0.5, k=2, zstd_level=3),
                                 root / "compressed")
    generator = train_generator(teacher, DataOptions(""), GenerativeConfig(
        latent_dim=4, width=4, depth=1, iterations=2, gen_batch=2, real_batch=2, checkpoint_every=2, device="cpu"),
        root / "generator")
    return {"teacher": teacher, "images": images, "labels": labels, "compressed": compressed,
            "generator": generator}


def consumers(name: str, target: Path, arts: dict[str, Path], out: Path) -> list[list]:
    """The commands that read an artifact of this role (besides verify and inspect)."""
    student = ["train-student", target, *TINY, "--epochs", 2, "--out", out / "student"]
    return {
        "teacher": [["evaluate", target],
                    ["relabel", arts["images"], "--teacher", target, "--epochs", 1, "--out", out / "relabel"],
                    ["synthesize", target, "--method", "classwise", "--ipc", 1, "--iterations", 1, "--out",
                     out / "synth"]],
        "images": [student, ["relabel", target, "--teacher", arts["teacher"], "--epochs", 1, "--out", out / "rl"]],
        "labels": [student, ["compress-labels", target, "--method", "prune+quantize", "--keep", 0.5, "--out",
                             out / "compressed"]],
        "compressed": [student],
        "generator": [["sample", target, "--ipc", 1, "--out", out / "sample"],
                      ["train-student", target, "--fresh-samples", 1, *TINY, "--epochs", 1, "--out", out / "s"]],
    }[name]


# ---- mutations: each takes (artifact folder, file name, rng) and returns what it did, or None if it cannot apply

def flip_bytes(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.choice([1, 1, 2, 8])):
        i = rng.randrange(len(b))
        b[i] ^= rng.randrange(1, 256)
    return bytes(b)


def byte_mutation(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    op = rng.choice(["flip", "flip-head", "truncate", "append", "insert", "empty", "zeros"])
    if op == "flip":
        return op, flip_bytes(data, rng)
    if op == "flip-head":
        return op, flip_bytes(data[:64], rng) + data[64:]
    if op == "truncate":
        return op, data[: rng.randrange(len(data))]
    if op == "append":
        return op, data + bytes(rng.randrange(256) for _ in range(rng.choice([1, 16, 4096])))
    if op == "insert":
        i = rng.randrange(len(data))
        return op, data[:i] + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64))) + data[i:]
    if op == "empty":
        return op, b""
    return op, bytes(len(data))


def json_mutation(text: str, rng: random.Random) -> tuple[str, str]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return "bytes", text[: len(text) // 2]
    paths = list(_paths(obj))
    path = rng.choice(paths)
    parent, key = _parent(obj, path)
    op = rng.choice(["poison", "poison", "delete", "retype"])
    if op == "delete" and isinstance(parent, dict):
        del parent[key]
    elif op == "retype":
        parent[key] = rng.choice([[parent[key]], {"v": parent[key]}])
    else:
        parent[key] = rng.choice(JSON_POISON)
        op = f"poison={json.dumps(parent[key])[:20]}"
    return f"json:{op}@{'.'.join(map(str, path))[:60]}", json.dumps(obj)


def _paths(obj, prefix=()):
    children = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else []
    for key, value in children:
        yield prefix + (key,)
        yield from _paths(value, prefix + (key,))


def _parent(obj, path):
    for key in path[:-1]:
        obj = obj[key]
    return obj, path[-1]


def header_mutation(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """Rewrite one tensor's dtype, shape or offsets in a safetensors header (the length field follows)."""
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8: 8 + n])
    name = rng.choice([k for k in header if k != "__metadata__"])
    field = rng.choice(["dtype", "shape", "data_offsets"])
    header[name][field] = {"dtype": rng.choice(["F64", "I64", "U8", "BOOL", "F8_E4M3", "XX"]),
                           "shape": rng.choice([[], [2**40], [-1], [0, 3], [10**6, 10**6]]),
                           "data_offsets": rng.choice([[0, 0], [0, 2**62], [5, 3], [0, len(data)]])}[field]
    body = json.dumps(header).encode()
    return f"header:{field}", struct.pack("<Q", len(body)) + body + data[8 + n:]


def poison_tensor(data: bytes, rng: random.Random) -> tuple[str, bytes, bool]:
    """Set one element of one tensor to a poison value; returns also whether its role forbids that value."""
    tensors = load_safetensors(data)
    name = rng.choice(sorted(tensors))
    t = tensors[name].clone()
    if t.numel() == 0:
        return "poison:empty", data, False
    value = rng.choice(POISON if t.is_floating_point() else [v for v in POISON if isinstance(v, int)])
    if not t.is_floating_point():
        info = torch.iinfo(t.dtype)
        value = max(info.min, min(info.max, value))
    t.view(-1)[rng.randrange(t.numel())] = value
    tensors[name] = t
    lo, hi = ROLES.get(name.rsplit(".", 1)[-1], (-float("inf"), float("inf")))
    forbidden = not torch.isfinite(torch.tensor(float(value))) or value < lo or value > (100 if hi == "n" else hi)
    return f"poison:{name}={value}", save_safetensors(tensors, metadata=_metadata(data)), forbidden


def _metadata(data: bytes) -> dict[str, str] | None:
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8: 8 + n]).get("__metadata__")


def png_mutation(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    op = rng.choice(["bomb", "resize", "mode", "garbage"])
    if op == "bomb":  # a valid IHDR that declares a huge image
        w, h = rng.choice([(60000, 60000), (2**31 - 1, 1), (1, 2**31 - 1), (20000, 20000)])
        ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
        chunk = b"IHDR" + ihdr
        return op, data[:8] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + data[33:]
    from PIL import Image

    buf = io.BytesIO()
    if op == "resize":
        Image.new("L", (rng.choice([1, 13, 300]), 12)).save(buf, format="PNG")
    elif op == "mode":
        Image.new(rng.choice(["RGBA", "I;16", "P", "1"]), (12, 12)).save(buf, format="PNG")
    else:
        return op, b"\x89PNG\r\n\x1a\n" + bytes(rng.randrange(256) for _ in range(100))
    return op, buf.getvalue()


def zstd_mutation(data: bytes, rng: random.Random) -> tuple[str, bytes, bool]:
    op = rng.choice(["no-size", "huge", "poison"])
    raw = zstandard.ZstdDecompressor().decompress(data)
    if op == "no-size":
        return op, zstandard.ZstdCompressor(write_content_size=False).compress(raw), False
    if op == "huge":
        return op, zstandard.ZstdCompressor().compress(bytes(64 << 20)), False
    what, poisoned, forbidden = poison_tensor(raw, rng)
    return f"zstd-{what}", zstandard.ZstdCompressor().compress(poisoned), forbidden


def structural_mutation(root: Path, name: str, rng: random.Random) -> tuple[str, str]:
    """Delete a file, swap it for a link out of the folder, link its whole folder out, or add a file;
    returns the file concerned and what was done."""
    path = root / name
    op = rng.choice(["delete", "symlink-out", "extra"] + (["dir-link"] if "/" in name else []))
    if op == "delete":
        path.unlink()
    elif op == "symlink-out":
        path.unlink()
        path.symlink_to("/etc/hostname")
    elif op == "extra":
        name = "stowaway.bin"
        (root / name).write_bytes(b"x")
    else:
        outside = root.parent / f"{root.name}-outside"
        shutil.copytree(path.parent, outside)
        shutil.rmtree(path.parent)
        path.parent.symlink_to(outside.resolve())
    return name, f"structure:{op}"


@dataclass
class Case:
    index: int
    role: str
    file: str
    mutation: str
    resealed: bool
    forbidden: bool  # a poisoned value the tensor's role forbids
    outcomes: dict  # command -> outcome
    failed_lines: dict  # command -> the last line it wrote, for the failures


def mutate(root: Path, rng: random.Random) -> tuple[str, str, bool]:
    """Damage one file of the artifact at `root`; returns (file, what was done, whether it is forbidden data)."""
    names = [MANIFEST] + sorted(artifact.read_manifest(root).files)
    types = sorted({file_type(n) for n in names})  # each parser gets its share, however many PNGs there are
    kind = rng.choice(types)
    name = rng.choice([n for n in names if file_type(n) == kind])
    path = root / name
    if rng.random() < 0.1:
        return *structural_mutation(root, name, rng), False
    data = path.read_bytes()
    forbidden = False
    if name.endswith(".json"):
        what, text = json_mutation(data.decode(), rng) if rng.random() < 0.7 else ("bytes", None)
        new = text.encode() if text is not None else byte_mutation(data, rng)[1]
    elif name.endswith(".safetensors"):
        kind = rng.choice(["poison", "poison", "header", "bytes"])
        if kind == "poison":
            what, new, forbidden = poison_tensor(data, rng)
        else:
            what, new = header_mutation(data, rng) if kind == "header" else byte_mutation(data, rng)
    elif name.endswith(".zst"):
        what, new, forbidden = zstd_mutation(data, rng) if rng.random() < 0.6 else (*byte_mutation(data, rng), False)
    elif name.endswith(".png"):
        what, new = png_mutation(data, rng) if rng.random() < 0.6 else byte_mutation(data, rng)
    else:
        what, new = byte_mutation(data, rng)
    if new == data:
        new = data + b"\0"
    path.write_bytes(new)
    return name, what, forbidden


def _same_meaning(text: str, path: Path) -> bool:
    """Whether a changed manifest still seals the same (a byte flip in white space, an edit of an annotation's
    entry, which the digest leaves out by design): nothing for a reader to detect."""
    try:
        return _sealed(json.loads(path.read_text())) == _sealed(json.loads(text))
    except (ValueError, OSError, TypeError, AttributeError, KeyError):
        return False


def _sealed(manifest: dict) -> dict:
    body = {k: v for k, v in manifest.items() if k != "digest"} | {"digest": manifest.get("digest")}
    body["files"] = {k: v for k, v in manifest["files"].items() if k not in artifact.ANNOTATIONS}
    return body


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang


def run_command(args: list) -> tuple[str, str]:
    """Run `dcond ARGS` in this process; classify the outcome (see the module docstring). Returns it with the
    last line of stderr (or the escaped exception)."""
    outcome, text = _run(args)
    lines = text.strip().splitlines()
    return outcome, lines[-1][:300] if lines else ""


def _run(args: list) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    saved = sys.argv, sys.stdin
    sys.argv, sys.stdin = ["dcond", *map(str, args)], io.StringIO("")
    code, escaped = 0, None
    signal.alarm(TIME_LIMIT_S)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            dcond_main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except Hang:
        return "hang", err.getvalue()
    except MemoryError:
        return "oom", err.getvalue()
    except BaseException as e:  # noqa: BLE001  (anything that escapes the CLI is a failure to report)
        escaped = e
    finally:
        signal.alarm(0)
        sys.argv, sys.stdin = saved
    text = err.getvalue()
    errors = [line for line in text.splitlines() if "error: " in line]
    if escaped is not None or "Traceback" in text:
        return "traceback", f"{text}\n{type(escaped).__name__}: {escaped}"
    if "can't allocate" in text or "out of memory" in text.lower():
        return "oom", text
    if code == 0:
        return "ok", text
    if len(errors) != 1 or not text.rstrip().splitlines()[-1].startswith("error: "):
        return "traceback", text
    return "internal" if "internal error" in errors[0] else "refused", text


FAILURES = ("traceback", "internal", "hang", "oom", "silent")


def judge(command: str, outcome: str, manifest: bool, read: bool, resealed: bool, forbidden: bool) -> str:
    """An exit 0 is silent acceptance when the command read or vouched for damage it could have seen:
    `verify` vouches for every checksum, `inspect` for the manifest's seal; a consumer for the files it
    read, which must also hold no value their role forbids."""
    if outcome != "ok":
        return outcome
    if command == "verify":
        damaged = not resealed
    elif command == "inspect":
        damaged = manifest and not resealed
    else:
        damaged = read and (not resealed or forbidden)
    return "silent" if damaged else "ok"


def campaign(work: Path, mutations: int, seed: int, log=None) -> list[Case]:
    """`mutations` cases over fresh copies of the artifacts built under `work`."""
    arts = build(work / "originals")
    reads: set = set()
    real_file = artifact.Artifact.file

    def recording_file(self, name):  # which files a command reads, to judge an exit 0 on damage
        reads.add((self.path.resolve(), name))
        return real_file(self, name)

    artifact.Artifact.file = recording_file
    rng, cases, roles = random.Random(seed), [], list(arts)
    try:
        for i in range(mutations):
            role = roles[i % len(roles)]
            case_dir = work / f"case{i}"
            target = Path(shutil.copytree(arts[role], case_dir / role, symlinks=True))
            before = (target / MANIFEST).read_text()
            name, what, forbidden = mutate(target, rng)
            resealed = rng.random() < 1 / 3 or name == MANIFEST and _same_meaning(before, target / MANIFEST)
            if resealed:
                reseal(target)
            outcomes, lines = {}, {}
            for args in [["verify", target], ["inspect", target], *consumers(role, target, arts, case_dir)]:
                reads.clear()
                outcome, line = run_command(args)
                read = name == MANIFEST or (target.resolve(), name) in reads
                outcomes[args[0]] = judge(args[0], outcome, name == MANIFEST, read, resealed, forbidden)
                if outcomes[args[0]] in FAILURES:
                    lines[args[0]] = line
            case = Case(i, role, name, what, resealed, forbidden, outcomes, lines)
            cases.append(case)
            if log is not None:
                log.write(json.dumps(asdict(case)) + "\n")
                log.flush()
            shutil.rmtree(case_dir, ignore_errors=True)
    finally:
        artifact.Artifact.file = real_file
    return cases


def failures(cases: list[Case]) -> list[tuple[Case, str, str]]:
    return [(c, cmd, o) for c in cases for cmd, o in c.outcomes.items() if o in FAILURES]


def file_type(name: str) -> str:
    return MANIFEST if name == MANIFEST else Path(name).suffix or name


def table(cases: list[Case]) -> str:
    kinds = sorted({o for c in cases for o in c.outcomes.values()})
    rows = Counter()
    for c in cases:
        for o in c.outcomes.values():
            rows[(file_type(c.file), c.resealed, o)] += 1
    types = sorted({(file_type(c.file), c.resealed) for c in cases})
    lines = ["| file | re-sealed | artifacts | " + " | ".join(kinds) + " |", "|---|---|---|" + "---|" * len(kinds)]
    for t, sealed in types:
        n = sum(1 for c in cases if (file_type(c.file), c.resealed) == (t, sealed))
        lines.append(f"| {t} | {'yes' if sealed else 'no'} | {n} | " +
                     " | ".join(str(rows[(t, sealed, k)]) for k in kinds) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mutations", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "fuzz")
    parser.add_argument("--memory-gb", type=float, default=8.0, help="address-space limit of this process")
    args = parser.parse_args()
    limit = int(args.memory_gb * (1 << 30))
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    torch.set_num_threads(1)
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    with open(args.out / "cases.jsonl", "w") as log:
        cases = campaign(args.out / "work", args.mutations, args.seed, log)
    print(table(cases))
    bad = failures(cases)
    print(f"\n{len(cases)} mutated artifacts, {sum(len(c.outcomes) for c in cases)} commands, "
          f"{sum(c.resealed for c in cases)} re-sealed; failures: {len(bad)} "
          f"({', '.join(f'{k} {v}' for k, v in Counter(o for _, _, o in bad).items()) or 'none'})")
    for c, cmd, o in bad[:50]:
        print(f"  case {c.index} {c.role}/{c.file} {c.mutation} resealed={c.resealed}: {cmd} -> {o}: "
              f"{c.failed_lines.get(cmd, '')}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
