"""Commands that look at artifacts: evaluate, inspect, verify."""

import json as jsonlib
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from dcond.artifact import Artifact, quick_check, read_manifest, verify
from dcond.cli.common import (Data, DataRoot, Device, Download, ImageSize, InputArtifact, Json, Subset, data_options,
                              emit, input_path)
from dcond.config import AssessConfig, EvalConfig
from dcond.errors import DcondError
from dcond.student_recipes import STUDENT_RECIPES


def evaluate_cmd(artifact: InputArtifact = None, data: Data = "", data_root: DataRoot = None,
                 download: Download = False, image_size: ImageSize = None, subset: Subset = None,
                 batch_size: int = EvalConfig.batch_size,
                 models: Annotated[str, typer.Option(help="A condensed set: the students' architectures, "
                                                          "comma-separated (any --model name).")] = "convnet",
                 seeds: Annotated[int, typer.Option(help="A condensed set: students per architecture (seeds "
                                                         "0 … N-1).")] = AssessConfig.seeds,
                 epochs: Annotated[Optional[int], typer.Option(help="A condensed set: the students' epochs "
                                                                    "(default: the recipe's).")] = None,
                 recipe: Annotated[str, typer.Option(help="A condensed set: whose student protocol: "
                                                          f"{', '.join(STUDENT_RECIPES.names())}.")] = "dcond",
                 baseline: Annotated[Optional[str], typer.Option(
                     help="A condensed set: 'random' also trains the students on random real images of the same "
                          "IPC (labelled alike), on the images with hard labels and on both without augmentation, "
                          "and reports DD-Ranking's IOR, HLR, LRS and ARS.")] = None,
                 cache: Annotated[Optional[Path], typer.Option(
                     help="A condensed set: keep each student's result in this folder, and take it from there where "
                          "one was trained alike (same protocol, model, seed, kind of device and dcond version): an "
                          "interrupted evaluation resumes, and sets made alike share their random baseline.")] = None,
                 device: Device = EvalConfig.device, json: Json = False) -> None:
    """A model: top-1, top-5 and per-class accuracy on a test split (by default its own dataset). A condensed
    set (images or labels): students of each of --models trained on it with --seeds seeds, under one protocol;
    per model the mean and std of their last-epoch test top-1, recorded in the artifact with the protocol."""
    from dcond.distributed import world
    from dcond.stages.assess import assess
    from dcond.stages.evaluate import evaluate_artifact

    path = input_path(artifact)
    if read_manifest(path).kind in ("images", "labels"):
        cfg = AssessConfig(models=[m.strip() for m in models.split(",")], seeds=seeds, epochs=epochs, recipe=recipe,
                           baseline=baseline, device=device, cache=cache)
        results = assess(path, cfg)
        if world().is_main:  # under torchrun, one rank reports
            _students_table(results)
        emit(path, json, {"students": results})
        return
    opts = data_options(data, data_root, download, image_size, subset)
    metrics = evaluate_artifact(path, opts, EvalConfig(batch_size=batch_size, device=device))
    emit(path, json, {"metrics": metrics})


def _students_table(results: dict[str, Any]) -> None:
    scored = all("scores" in r for r in results.values())
    table = Table("model", "top-1 mean ± std", "runs", *(("random", "IOR", "HLR", "LRS", "ARS") if scored else ()),
                  "protocol", title="students (last epoch)", box=None)
    for model, r in results.items():
        extra = ()
        if scored:
            s, rnd = r["scores"], r["baseline"]["random"]
            extra = (f"{rnd['top1_mean']:.2%} ± {rnd['top1_std']:.2%}", f"{s['ior']:+.2%}",
                     "—" if s["hlr"] is None else f"{s['hlr']:.2%}", "—" if s["lrs"] is None else f"{s['lrs']:.4f}",
                     f"{s['ars']:.4f}")
        table.add_row(model, f"{r['top1_mean']:.2%} ± {r['top1_std']:.2%}",
                      ", ".join(f"{v:.2%}" for v in r["runs"]), *extra, r["protocol_digest"][:12])
    Console(stderr=True, width=None if sys.stderr.isatty() else 160).print(table)  # a log is not cut at 80 columns


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


def _flat(section: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested sections as `bank.epochs`-style keys; long lists left out of the summary."""
    rows: dict[str, Any] = {}
    for key, value in section.items():
        if isinstance(value, dict):
            rows |= _flat(value, f"{prefix}{key}.")
        elif not isinstance(value, list) or len(str(value)) < 120:
            rows[prefix + key] = value
    return rows


def describe(art: Artifact) -> dict[str, Any]:
    ds, prod = art.dataset, art.producer
    return {"path": str(art.path), "kind": art.kind, "digest": art.digest, "created": art.manifest.get("created"),
            "dataset": {"name": ds.name, "classes": len(ds.classes), "shape": [ds.channels, ds.image_size,
                                                                               ds.image_size]},
            "made_by": {"argv": prod.get("argv"), "dcond": prod.get("dcond_version"),
                        "torch": prod.get("torch_version"), "threads": prod.get("threads"),
                        "seed": prod.get("seed")},
            "files": len(art.files), "bytes": sum(e["size"] for e in art.files.values()),
            art.kind: _flat(art.section),
            "parents": art.parents, "lineage": art.manifest.get("lineage", []),
            "metrics": {k: {n: v for n, v in m.items() if isinstance(v, (int, float))} for k, m in art.metrics.items()}}


def inspect_cmd(artifact: InputArtifact = None, json: Json = False) -> None:
    """A readable summary of an artifact (kind, dataset, sizes, lineage, metrics), without loading tensors.
    A damaged one is shown, then named as such, with a non-zero exit."""
    art = read_manifest(input_path(artifact))
    d = describe(art)
    if json:
        print(jsonlib.dumps(d | {"problems": quick_check(art)}, indent=2))
    else:
        _print_summary(d)
    problems = quick_check(art)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise DcondError(f"{art.path} is damaged: {problems[0]}{more}; run `dcond verify {art.path}`")


def _print_summary(d: dict[str, Any]) -> None:
    made = d["made_by"]
    threads = f", threads {made['threads']}" if made["threads"] else ""  # older artifacts lack it
    rows = [("kind", d["kind"]), ("digest", d["digest"]),
            ("dataset", f"{d['dataset']['name']}: {d['dataset']['classes']} classes, "
                        f"{'×'.join(map(str, d['dataset']['shape']))}"),
            ("made by", f"{' '.join(made['argv'] or [])} (dcond {made['dcond']}, torch {made['torch']}{threads}, "
                        f"seed {made['seed']}), {d['created']}"),
            ("size", f"{d['files']} files, {_size(d['bytes'])}")]
    rows += [(f"{d['kind']}.{k}", str(v)) for k, v in d[d["kind"]].items()]
    rows += [("parent", f"{p.get('role')}: {p['kind']} {p['digest'][:19]}… at {p.get('path')}") for p in d["parents"]]
    if d["lineage"]:
        rows.append(("lineage", " → ".join(f"{a['kind']} {a['digest'][7:15]} ({a.get('stage')})"
                                           for a in d["lineage"])))
    rows += [(f"metric {key}", ", ".join(f"{n} {v:.4f}" if isinstance(v, float) else f"{n} {v}" for n, v in m.items()))
             for key, m in d["metrics"].items()]
    width = max(len(name) for name, _ in rows)
    print(d["path"])
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")


def verify_cmd(artifact: InputArtifact = None, json: Json = False) -> None:
    """Recompute every checksum; report missing, extra and mismatched files. Exit code 0 only when intact."""
    report = verify(input_path(artifact))
    problems = {"missing": report.missing, "extra": report.extra, "mismatched": report.mismatched}
    if json:
        print(jsonlib.dumps({"path": str(report.path), "intact": report.intact, "digest_ok": report.digest_ok,
                             **problems}))
    else:
        for label, names in problems.items():
            for name in names:
                print(f"{label}: {name}")
        if not report.digest_ok:
            print("manifest: its digest does not match its file list (the manifest was edited)")
        print(f"{'intact' if report.intact else 'NOT intact'}: {report.path} ({report.checked} files checked)")
    if not report.intact:
        counts = [f"{len(names)} {label}" for label, names in problems.items() if names]
        counts += [] if report.digest_ok else ["an edited manifest"]
        raise DcondError(f"{report.path} is not intact: {', '.join(counts)}")
