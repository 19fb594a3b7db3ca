"""Artifact format v1: the only code that reads or writes artifact folders (spec: docs/artifact-format.md).

An artifact is a directory holding `dcond.json` (the manifest), a `README.md` card and the content files.
The manifest lists every other file with its size and sha256; readers check a file against it before
trusting it. Writers build the whole folder beside the target and rename it into place.

Reading and checking manifests needs only the standard library, so `inspect` and `verify` answer at once;
torch, safetensors, zstandard and Pillow are imported by the functions that read or write tensors and images.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Iterable
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dcond import __version__
from dcond.errors import DcondError
from dcond.spec import DatasetSpec
from dcond.validate import Fields

if TYPE_CHECKING:
    import torch

FORMAT, FORMAT_VERSION = "dcond-artifact", 1
MANIFEST, CARD, METRICS = "dcond.json", "README.md", "metrics.json"
ANNOTATIONS = frozenset({CARD, METRICS})  # may change after creation (evaluate adds metrics); not in the digest
KINDS = ("model", "images", "labels", "generator")
IMAGES_DIR = "images"
ZSTD_SUFFIX = ".zst"  # a file zstandard-compressed as a whole
TMP_SUFFIX = ".tmp"  # a file being written (atomic_path); never part of an artifact
MAX_MANIFEST_BYTES = 256 << 20
MAX_FOLDER_NAME = 100  # characters of a class name kept in its folder's name (the index keeps folders apart)
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def content_digest(manifest: dict[str, Any]) -> str:
    """The seal over everything the manifest says (content, dataset, provenance, lineage, card), except the
    digest itself and the entries of the annotations that may change after creation (card, metrics)."""
    body = {k: v for k, v in manifest.items() if k != "digest"}
    body["files"] = {k: v for k, v in manifest["files"].items() if k not in ANNOTATIONS}
    return "sha256:" + hashlib.sha256(_canonical(body)).hexdigest()


def _listed_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)


class Artifact:
    """A validated, opened artifact. Files are checked against the manifest when read."""

    def __init__(self, path: Path, manifest: dict[str, Any]):
        self.path, self.manifest = path, manifest

    kind = property(lambda self: self.manifest["kind"])
    digest = property(lambda self: self.manifest["digest"])
    files = property(lambda self: self.manifest["files"])
    parents = property(lambda self: self.manifest.get("parents", []))
    producer = property(lambda self: self.manifest.get("producer", {}))

    @property
    def dataset(self) -> DatasetSpec:
        """The dataset spec, with a source path recorded relative to the artifact made absolute again."""
        spec = DatasetSpec.from_dict(self.manifest["dataset"])
        if "path" in spec.source:
            spec.source["path"] = str(self.located(spec.source["path"]))
        return spec

    def located(self, recorded: str) -> Path:
        """Where a path the manifest records (relative to the artifact; absolute in artifacts made by older
        versions) is on this machine."""
        return (self.path / recorded).resolve()

    def parent_paths(self, role: str) -> list[Path]:
        return [self.located(p["path"]) for p in self.parents if p["role"] == role]

    @property
    def section(self) -> dict[str, Any]:
        """The kind-specific part of the manifest (manifest["model"] for a model, and so on)."""
        return self.manifest.get(self.kind, {})

    def file(self, name: str) -> Path:
        """Path of a listed file, after checking its size and sha256 against the manifest."""
        entry = self.files.get(name)
        if entry is None:
            raise DcondError(f"{self.path} has no file '{name}' in its manifest")
        path = self.path / name
        if not path.is_file():
            raise DcondError(f"{self.path}: '{name}' is missing (run `dcond verify {self.path}`)")
        if not _inside(self.path, path):
            raise DcondError(f"{self.path}: '{name}' is a link to a file outside the artifact; not reading it")
        if path.stat().st_size != entry["size"] or sha256_file(path) != entry["sha256"]:
            raise DcondError(f"{self.path}: '{name}' is corrupted: its checksum does not match the manifest")
        return path

    def tensors(self, name: str, raw_size: int | None = None) -> dict[str, torch.Tensor]:
        """A safetensors file; one ending in `.zst` must expand to exactly `raw_size` bytes (what the manifest
        records), so a crafted frame cannot make the reader allocate more."""
        path = self.file(name)
        if not name.endswith(ZSTD_SUFFIX):
            return read_tensors(path)
        if raw_size is None:
            raise DcondError(f"{self.path}: the manifest gives no uncompressed size for '{name}'")
        return parse_tensors(unzstd(path.read_bytes(), raw_size, path), path)

    def json(self, name: str) -> Any:
        try:
            return json.loads(self.file(name).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
            raise DcondError(f"{self.path}: '{name}' is not valid JSON ({e})") from None

    @property
    def metrics(self) -> dict[str, Any]:
        """{evaluation: {metric: value}} from metrics.json."""
        metrics = self.json(METRICS) if METRICS in self.files else {}
        if not isinstance(metrics, dict) or not all(isinstance(m, dict) for m in metrics.values()):
            raise DcondError(f"{self.path}: '{METRICS}' is not an object of evaluations")
        return metrics


def plain_tensor(t: torch.Tensor) -> torch.Tensor:
    """The tensor as safetensors stores it: on the CPU, contiguous (a channels-last weight is not, and
    safetensors refuses it). Copies only when it has to."""
    return t.detach().to("cpu").contiguous()


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DcondError(f"{path} is not a readable safetensors file ({e})") from None
    return parse_tensors(data, path)


def parse_tensors(data: bytes, path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load as load_safetensors

    try:
        return load_safetensors(data)
    except (SafetensorError, ValueError) as e:
        raise DcondError(f"{path} is not a readable safetensors file ({e})") from None


def unzstd(data: bytes, size: int, path: Path) -> bytes:
    """One zstandard frame that declares, and expands to, exactly `size` bytes."""
    import zstandard

    try:
        declared = zstandard.frame_content_size(data)
    except zstandard.ZstdError:
        raise DcondError(f"{path} is not a zstandard file") from None
    if declared < 0:
        raise DcondError(f"{path}: the zstandard frame does not declare its size; dcond reads only frames that do")
    if declared > size:
        raise DcondError(f"{path}: the zstandard frame would expand to {declared} bytes, past the {size} bytes "
                         "the manifest allows")
    try:
        out = zstandard.ZstdDecompressor().decompress(data, max_output_size=size, allow_extra_data=False)
    except zstandard.ZstdError as e:
        raise DcondError(f"{path}: truncated or corrupt zstandard frame ({e})") from None
    if len(out) != size:
        raise DcondError(f"{path}: the zstandard frame holds {len(out)} bytes; the manifest expects {size}")
    return out


def open_artifact(path: Path | str, kinds: Iterable[str] | None = None) -> Artifact:
    """Open an artifact to use it: its manifest well-formed and sealed (the digest matches), and every file
    it lists present with the recorded size, so a run fails before its first step rather than midway.
    (Contents are checked against their sha256 as they are read.) `kinds` restricts the accepted kinds."""
    with _locked(Path(path), exclusive=False):
        art = read_manifest(path, kinds)
        problems = quick_check(art)
    if problems:
        raise DcondError(f"{art.path}: {problems[0]}; refusing it (see `dcond verify {art.path}`)")
    return art


def quick_check(art: Artifact) -> list[str]:
    """What can be seen without reading the files: an edited manifest, and files missing or of another size."""
    problems = [] if content_digest(art.manifest) == art.digest else \
        ["the manifest was edited after the artifact was made (its digest does not match)"]
    for name, entry in art.files.items():
        file = art.path / name
        if not file.is_file():
            problems.append(f"'{name}' is missing")
        elif file.stat().st_size != entry["size"]:
            problems.append(f"'{name}' has {file.stat().st_size} bytes; the manifest records {entry['size']}")
    return problems


def read_manifest(path: Path | str, kinds: Iterable[str] | None = None) -> Artifact:
    """The artifact with its manifest checked for form only, for `verify` and `inspect`, which report damage
    rather than refuse it."""
    path = Path(path)
    if not path.exists():
        raise DcondError(f"{path} does not exist")
    if not (path / MANIFEST).is_file():
        raise DcondError(f"{path} is not a dcond artifact (no {MANIFEST})")
    if (path / MANIFEST).stat().st_size > MAX_MANIFEST_BYTES:
        raise DcondError(f"{path / MANIFEST} is larger than {MAX_MANIFEST_BYTES} bytes; not reading it")
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise DcondError(f"{path / MANIFEST} is not valid JSON ({type(e).__name__}: {str(e)[:80]})") from None
    _validate_manifest(path, manifest)
    kinds = tuple(kinds or KINDS)
    if manifest["kind"] not in kinds:
        raise DcondError(f"{path} is a {manifest['kind']} artifact; this needs a {' or '.join(kinds)} artifact")
    return Artifact(path, manifest)


def _validate_manifest(path: Path, m: Any) -> None:
    """The manifest's form: what every reader relies on (kind sections are checked by the code that reads them)."""
    where = f"{path / MANIFEST}:"
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise DcondError(f"{where} 'format' is not '{FORMAT}'")
    if m.get("format_version") != FORMAT_VERSION:
        raise DcondError(f"{path} has artifact format version {m.get('format_version')!r}; "
                         f"this dcond reads version {FORMAT_VERSION}")
    f = Fields(m, where[:-1])
    f.str("kind", KINDS)
    f.str("digest")
    f.str("created", optional=True)
    files = f.section("files")
    for name in files.data:
        entry = files.section(name)
        entry.int("size", 0, 1 << 50)
        entry.str("sha256")
        if not name or Path(name).is_absolute() or ".." in Path(name).parts or name == MANIFEST or "\\" in name:
            raise files.bad(name, "points outside the artifact")
    producer = f.section("producer")
    producer.str("stage")
    argv = producer.list("argv")
    if not all(isinstance(a, str) for a in argv):
        raise producer.bad("argv", "is not a list of strings")
    for key in ("parents", "lineage"):
        for i, entry in enumerate(f.list(key)):
            item = Fields(entry, f"{where[:-1]}.{key}[{i}]")
            item.str("digest"), item.str("kind", KINDS)
    card = f.section("card")
    for key in ("title", "summary"):
        card.str(key, optional=True)
    if not all(isinstance(line, str) for line in card.list("usage", optional=True) or []):
        raise card.bad("usage", "is not a list of strings")
    f.section(m["kind"])
    DatasetSpec.from_dict(f.section("dataset").data, f"{where[:-1]}.dataset")


@dataclass
class VerifyReport:
    path: Path
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    digest_ok: bool = True
    checked: int = 0

    @property
    def intact(self) -> bool:
        return not (self.missing or self.extra or self.mismatched) and self.digest_ok


def verify(path: Path | str) -> VerifyReport:
    """Recompute every checksum; report missing, extra and mismatched files separately."""
    with _locked(Path(path), exclusive=False):
        art = read_manifest(path)
        report = VerifyReport(art.path)
        for name, entry in sorted(art.files.items()):
            p = art.path / name
            if not p.is_file() or not _inside(art.path, p):
                report.missing.append(name)
            elif p.stat().st_size != entry["size"] or sha256_file(p) != entry["sha256"]:
                report.mismatched.append(name)
            report.checked += 1
        report.extra = [n for n in _listed_files(art.path) if n not in art.files]
    report.digest_ok = content_digest(art.manifest) == art.digest
    return report


def _inside(root: Path, path: Path) -> bool:
    """Whether `path` (after symbolic links) lies in the artifact: a link out of it is not its content."""
    return path.resolve().is_relative_to(root.resolve())


def parent_entry(art: Artifact, role: str, out: Path) -> dict[str, Any]:
    return {"role": role, "kind": art.kind, "digest": art.digest, "path": portable(str(art.path.resolve()), out),
            "stage": art.producer.get("stage")}


def portable(value: Any, out: Path) -> Any:
    """`value` with every absolute path in it (strings and `--flag=PATH`, in nested lists and dicts) written
    relative to the artifact folder `out`, so that a manifest names no folder of the machine it was made on and
    still finds its parents and data after the chain is moved or copied as a whole. A path that shares nothing
    with `out` but the file-system root keeps only its name: a relative path up to `/` would spell it out."""
    if isinstance(value, dict):
        return {k: portable(v, out) for k, v in value.items()}
    if isinstance(value, list):
        return [portable(v, out) for v in value]
    if not isinstance(value, str):
        return value
    flag, eq, rest = value.partition("=")
    if eq and flag.startswith("--"):
        return f"{flag}={portable(rest, out)}"
    if not os.path.isabs(value):
        return value
    path, base = os.path.abspath(value), os.path.abspath(out)
    if os.path.commonpath([path, base]) == os.sep:
        return os.path.basename(path)
    return Path(os.path.relpath(path, base)).as_posix()


def _lineage(parents: list[Artifact]) -> list[dict[str, Any]]:
    """Every ancestor once, oldest first, so an artifact shows where it came from without its parents at hand."""
    seen: dict[str, dict[str, Any]] = {}
    for p in parents:
        for a in p.manifest.get("lineage", []) + [{"digest": p.digest, "kind": p.kind,
                                                   "stage": p.producer.get("stage")}]:
            seen.setdefault(a["digest"], a)
    return list(seen.values())


def config_key(config: dict[str, Any]) -> str:
    """A stable hash of a stage's configuration (and input digests): the key of its resumable work folder."""
    return hashlib.sha256(_canonical(json.loads(json.dumps(config, default=str)))).hexdigest()


def default_out(stage: str, root: Path = Path("runs")) -> Path:
    """A new folder under ./runs named after the stage and the time."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out, n = root / f"{stage}-{stamp}", 1
    while out.exists():
        n += 1
        out = root / f"{stage}-{stamp}-{n}"
    return out


class ArtifactWriter:
    """Builds an artifact in a work folder beside `out` and renames it into place when complete.

    On failure the work folder is removed, unless `resume_key` is given: then it is kept under a name
    derived from that key, and a later writer with the same key continues from what is in it.
    Under torchrun every rank opens the same writer and may write its share of the files into the work
    folder; rank 0 seals and renames it once all ranks are done.
    """

    def __init__(self, out: Path | None, kind: str, dataset: DatasetSpec, *, stage: str, config: dict[str, Any],
                 parents: Iterable[tuple[str, Artifact]] = (), force: bool = False, resume_key: str | None = None):
        if kind not in KINDS:
            raise ValueError(f"unknown artifact kind {kind}")
        from dcond.distributed import world

        self.world = world()
        self.out = self.world.share(Path(out) if out is not None else default_out(stage))
        self.kind, self.dataset, self.stage = kind, dataset, stage
        self.config = json.loads(json.dumps(config, default=str))  # paths and the like, as the manifest holds them
        self._parents = list(parents)
        self.force, self.resume_key = force, resume_key
        self.section: dict[str, Any] = {}
        self.metrics: dict[str, Any] = {}
        self.card: dict[str, Any] = {"title": f"dcond {kind} artifact", "summary": "", "usage": []}
        _check_target(self.out, force)
        self.dir: Path = Path()

    def __enter__(self) -> "ArtifactWriter":
        parent = self.out.resolve().parent
        parent.mkdir(parents=True, exist_ok=True)
        if self.resume_key is None:
            temp = tempfile.mkdtemp(prefix=f".{self.out.name}.", suffix=".tmp", dir=parent) if self.world.is_main \
                else None
            self.dir = Path(self.world.share(temp))
        else:
            self.dir = parent / f".{self.stage}-{self.resume_key[:16]}.partial"
            self.dir.mkdir(exist_ok=True)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.world.barrier()  # every rank's files are in place
            if self.world.is_main:
                self._commit()
            self.world.barrier()  # no rank reports the artifact before it exists
        elif self.resume_key is None and self.world.is_main:
            shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def scratch(self) -> Path:
        """A folder for resumable intermediate state; removed before the artifact is committed."""
        path = self.dir / ".scratch"
        path.mkdir(exist_ok=True)
        return path

    def path(self, name: str) -> Path:
        p = self.dir / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def save_tensors(self, name: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None,
                     zstd_level: int = 0) -> int:
        """Write a safetensors file, zstandard-compressed as a whole with `zstd_level` > 0 (then `name` must end
        in `.zst`). Returns its uncompressed size, which a reader of a compressed file needs."""
        import zstandard
        from safetensors.torch import save as safetensors_bytes
        from safetensors.torch import save_file

        tensors = {k: plain_tensor(v) for k, v in tensors.items()}
        if not zstd_level:
            with atomic_path(self.path(name)) as tmp:
                save_file(tensors, tmp, metadata=metadata)
            return self.path(name).stat().st_size
        if not name.endswith(ZSTD_SUFFIX):
            raise ValueError(f"a zstandard-compressed file's name must end in {ZSTD_SUFFIX}: {name}")
        data = safetensors_bytes(tensors, metadata=metadata)
        with atomic_path(self.path(name)) as tmp:
            tmp.write_bytes(zstandard.ZstdCompressor(level=zstd_level).compress(data))
        return len(data)

    def write_json(self, name: str, obj: Any) -> None:
        with atomic_path(self.path(name)) as tmp:
            tmp.write_text(json.dumps(obj, indent=2) + "\n")

    def _commit(self) -> None:
        shutil.rmtree(self.dir / ".scratch", ignore_errors=True)
        for stale in self.dir.rglob(f"*{TMP_SUFFIX}"):  # half-written by a process killed in an earlier run
            stale.unlink()
        if self.metrics:
            self.write_json(METRICS, self.metrics)
        out = self.out.resolve()
        parents = [parent_entry(a, role, out) for role, a in self._parents]
        manifest: dict[str, Any] = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "kind": self.kind,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "dataset": portable(self.dataset.to_dict(), out), self.kind: self.section,
            "producer": portable(_producer(self.stage, self.config), out), "parents": parents,
            "lineage": _lineage([a for _, a in self._parents]), "card": self.card,
        }
        manifest["files"] = {n: _entry(self.dir / n) for n in _listed_files(self.dir) if n != CARD}
        manifest["digest"] = content_digest(manifest)
        _seal(self.dir, manifest, self.metrics)
        _shareable(self.dir)
        _replace_dir(self.dir, self.out)


def _producer(stage: str, config: dict[str, Any]) -> dict[str, Any]:
    import torch

    return {"stage": stage, "argv": ["dcond", *sys.argv[1:]] if Path(sys.argv[0]).name == "dcond" else sys.argv,
            "config": config, "seed": config.get("seed"), "dcond_version": __version__,
            "torch_version": torch.__version__, "threads": torch.get_num_threads(), "python": platform.python_version()}


def _entry(path: Path) -> dict[str, Any]:
    return {"size": path.stat().st_size, "sha256": sha256_file(path)}


def _seal(root: Path, manifest: dict[str, Any], metrics: dict[str, Any]) -> None:
    """Given manifest["files"] listing the content and manifest["digest"], write the card and then the manifest,
    each atomically."""
    _atomic_write(root / CARD, render_card(manifest, metrics))
    manifest["files"] = dict(sorted((manifest["files"] | {CARD: _entry(root / CARD)}).items()))
    _atomic_write(root / MANIFEST, json.dumps(manifest, indent=2) + "\n")


def _shareable(root: Path) -> None:
    """Give the folder the modes the umask allows (temporary folders and some writers create private files)."""
    umask = os.umask(0)
    os.umask(umask)
    for p in [root, *root.rglob("*")]:
        p.chmod((0o777 if p.is_dir() else 0o666) & ~umask)


@contextmanager
def atomic_path(path: Path):
    """A temporary name beside `path` to write to; renamed to `path` when the block succeeds, removed when it
    fails. The name is this process's own, so ranks that write the same file never write into each other's,
    and a file under its final name is always whole."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _atomic_write(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _check_target(out: Path, force: bool) -> None:
    if not out.exists():
        return
    if not force:
        raise DcondError(f"{out} already exists; pass --force to replace it, or choose another --out")
    if not out.is_dir() or not ((out / MANIFEST).is_file() or not any(out.iterdir())):
        raise DcondError(f"{out} exists and is not a dcond artifact; not replacing it, even with --force")


def _replace_dir(src: Path, out: Path) -> None:
    _check_target(out, force=True)
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
        os.replace(src, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, out)


def class_folder(index: int, name: str, num_classes: int) -> str:
    """`007_Sneaker`: the index prefix keeps the class order when other tools sort folders as an ImageFolder."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)[:MAX_FOLDER_NAME]
    return f"{index:0{max(3, len(str(num_classes - 1)))}d}_{safe}"


def save_class_images(w: ArtifactWriter, c: int, images: torch.Tensor, start: int = 0) -> None:
    """Write uint8 C×H×W images of class `c` as PNG files numbered from `start`."""
    spec = w.dataset
    folder = w.dir / IMAGES_DIR / class_folder(c, spec.classes[c], spec.num_classes)
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        _save_png(img.cpu(), folder / f"{start + i:05d}.png")


def describe_images(w: ArtifactWriter) -> None:
    """Record in the kind section how many images each class folder holds."""
    spec = w.dataset
    per_class = [len(list((w.dir / IMAGES_DIR / class_folder(c, name, spec.num_classes)).glob("*.png")))
                 for c, name in enumerate(spec.classes)]
    w.section |= {"images_dir": IMAGES_DIR, "count": sum(per_class), "per_class": per_class}


def written_images(w: ArtifactWriter, classes: list[int] | None = None,
                   per_class: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The images written into `w` so far, in the order readers of the finished artifact will see them: all of
    them, or the first `per_class` of each of `classes`."""
    import torch

    from dcond.data.images import decode_image

    spec, root = w.dataset, w.dir / IMAGES_DIR
    wanted = range(spec.num_classes) if classes is None else classes
    paths, labels = [], []
    for c in wanted:
        found = sorted((root / class_folder(c, spec.classes[c], spec.num_classes)).glob("*.png"))
        paths += found[:per_class]
        labels += [c] * len(found[:per_class])
    if not paths:
        return torch.empty(0, spec.channels, spec.image_size, spec.image_size, dtype=torch.uint8), torch.empty(0)
    return torch.stack([decode_image(p, spec.channels, spec.image_size) for p in paths]), torch.tensor(labels)


# a contact sheet of at most 20 classes × 10 thumbnails of at most 80 pixels: at most 3.8 MB of raw RGB pixels,
# so the PNG stays under 5 MB whatever the images show
PREVIEW_ROWS, PREVIEW_SIDE = 20, 80


def save_preview(w: ArtifactWriter, per_class: int = 10,
                 samples: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
    """preview.png: a contact sheet, one row per class, so a person can look at what was made: the images
    written to `w`, or `samples` (uint8 images and their labels) when it holds no images (a generator). With
    many classes, 20 spread evenly over them; small images are shown at twice their size, large ones shrunk,
    so the sheet stays a few megapixels for ImageNet as for MNIST."""
    import torch
    import torch.nn.functional as F

    spec = w.dataset
    rows = torch.linspace(0, spec.num_classes - 1, min(spec.num_classes, PREVIEW_ROWS)).round().long().tolist()
    images, labels = samples if samples is not None else written_images(w, rows, per_class)
    side = min(2 * spec.image_size, PREVIEW_SIDE)
    sheet = torch.full((spec.channels, len(rows) * side, per_class * side), 255, dtype=torch.uint8)
    for r, c in enumerate(rows):
        shown = images[labels == c][:per_class]
        if not len(shown):
            continue
        thumbs = F.interpolate(shown.float(), size=(side, side), mode="nearest" if side > spec.image_size else
                               "area").round().clamp(0, 255).to(torch.uint8)
        for i, img in enumerate(thumbs):
            sheet[:, r * side:(r + 1) * side, i * side:(i + 1) * side] = img
    _save_png(sheet, w.path("preview.png"))


def _save_png(image: torch.Tensor, path: Path) -> None:
    """A uint8 C×H×W image as a PNG file, written atomically."""
    from PIL import Image

    array = image.permute(1, 2, 0).numpy()
    with atomic_path(path) as tmp:
        Image.fromarray(array[..., 0] if array.shape[2] == 1 else array).save(tmp, format="PNG")


def save_images(w: ArtifactWriter, images: torch.Tensor, labels: torch.Tensor) -> None:
    """Write uint8 N×C×H×W images as PNG class folders and describe them in the kind section."""
    for c in range(w.dataset.num_classes):
        save_class_images(w, c, images[labels == c])
    describe_images(w)


def image_files(art: Artifact) -> tuple[list[Path], list[int]]:
    """The checked PNG files of an images or labels artifact and their class indices, in class order."""
    spec = art.dataset
    folders = {class_folder(c, n, spec.num_classes): c for c, n in enumerate(spec.classes)}
    paths, labels = [], []
    for name in sorted(art.files):
        parts = name.split("/")
        if len(parts) == 3 and parts[0] == IMAGES_DIR and parts[1] in folders:
            paths.append(art.file(name))
            labels.append(folders[parts[1]])
    if not paths:
        raise DcondError(f"{art.path} holds no images under {IMAGES_DIR}/")
    section = Fields(art.section, f"{art.path / MANIFEST}: {art.kind}")
    section.equal("count", len(paths), "the number of images it lists")
    section.equal("per_class", [labels.count(c) for c in range(spec.num_classes)], "the images per class it lists")
    return paths, labels


def update_metrics(art: Artifact, key: str, metrics: dict[str, Any]) -> None:
    """Record metrics (an evaluation) in an existing artifact: metrics.json, card and manifest are rewritten;
    the digest is kept, and an artifact whose manifest no longer matches it is refused, never re-sealed.
    Processes that record in one artifact at once take turns, each adding to what the others recorded."""
    with _locked(art.path):
        current = read_manifest(art.path)
        if current.digest != art.digest:
            raise DcondError(f"{art.path} was made again while in use; not recording metrics in it")
        if content_digest(current.manifest) != current.digest:
            raise DcondError(f"{art.path}: the manifest was edited after the artifact was made; not recording "
                             "metrics in it")
        all_metrics = current.metrics | {key: metrics}
        _atomic_write(art.path / METRICS, json.dumps(all_metrics, indent=2) + "\n")
        manifest = dict(current.manifest)
        manifest["files"] = {k: v for k, v in current.files.items() if k != CARD} | \
            {METRICS: _entry(art.path / METRICS)}
        _seal(art.path, manifest, all_metrics)
    art.manifest = manifest


@contextmanager
def _locked(folder: Path, exclusive: bool = True):
    """A lock on the folder itself (no file is added to it) for the block: exclusive to record in it, shared to
    open it, so that no one opens a new metrics.json under the old manifest. A folder that cannot be locked
    (missing, or on a file system without locks) is used unlocked, as before locks."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        yield
        return
    try:
        with suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # and with it the lock


def render_card(manifest: dict[str, Any], metrics: dict[str, Any]) -> str:
    """A README card: YAML front matter in the style of model and dataset cards, then prose."""
    ds, card, prod = manifest["dataset"], manifest.get("card", {}), manifest["producer"]
    front = {"library_name": "dcond", "dcond_kind": manifest["kind"], "dcond_format_version": FORMAT_VERSION,
             "digest": manifest["digest"], "dataset": ds["name"], "num_classes": len(ds["classes"]),
             "image_size": ds["image_size"], "channels": ds["channels"],
             "parents": [p["digest"] for p in manifest.get("parents", [])],
             "tags": ["dataset-condensation", "dcond", manifest["kind"]]}
    front["metrics"] = {key: {name: round(value, 6) for name, value in m.items() if isinstance(value, (int, float))}
                        for key, m in metrics.items()}
    lines = ["---", *(f"{k}: {json.dumps(v)}" for k, v in front.items()), "---", "",
             f"# {card.get('title', 'dcond artifact')}", ""]
    if card.get("summary"):
        lines += [card["summary"], ""]
    lines += ["## How it was made", "", "```", " ".join(prod["argv"]), "```", "",
              f"Stage `{prod['stage']}`, dcond {prod.get('dcond_version')}, torch {prod.get('torch_version')}, "
              f"seed {prod.get('seed')}, created {manifest['created']}. The full configuration is in `{MANIFEST}`.", ""]
    for p in manifest.get("parents", []):
        lines.append(f"- {p.get('role')}: {p['kind']} artifact `{p['digest']}`")
    lines += ["", f"Dataset: {ds['name']} ({len(ds['classes'])} classes, {ds['channels']}×{ds['image_size']}"
                  f"×{ds['image_size']}).", ""]
    if metrics:
        lines += ["## Metrics", "", "| evaluation | metric | value |", "|---|---|---|"]
        lines += [f"| {key} | {name} | {value:.4f} |" for key, m in metrics.items() for name, value in m.items()
                  if isinstance(value, float)]
        lines.append("")
    lines += ["## How to use", "", "```", *card.get("usage", []), "dcond inspect <this folder>",
              "dcond verify <this folder>", "```", "", "## Files", "", "| files | count | bytes |", "|---|---|---|"]
    lines += [f"| `{name}` | {count:,} | {size:,} |" for name, (count, size) in _file_groups(manifest["files"]).items()]
    return "\n".join(lines) + "\n"


def _file_groups(files: dict[str, dict[str, Any]]) -> dict[str, tuple[int, int]]:
    """Files at the top level by name, the rest by their top folder: (count, bytes). A card stays short for
    any number of images or bank epochs; `dcond inspect` and the manifest list every file."""
    groups: dict[str, tuple[int, int]] = {}
    for name, entry in files.items():
        if name != CARD:
            key = name.split("/", 1)[0] + "/" if "/" in name else name
            count, size = groups.get(key, (0, 0))
            groups[key] = (count + 1, size + entry["size"])
    return groups
