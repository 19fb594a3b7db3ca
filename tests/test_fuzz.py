"""A seeded quick subset of the fuzz campaign (benchmarks/fuzz.py runs the long one): mutated manifests,
safetensors files, zstandard frames, PNGs and folder structures, each through verify, inspect and the
stages that read that kind of artifact. Every outcome must be success on intact data or one error line."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import fuzz  # noqa: E402


def test_mutated_artifacts_fail_cleanly_or_not_at_all(tmp_path):
    cases = fuzz.campaign(tmp_path, mutations=60, seed=0)
    outcomes = [o for c in cases for o in c.outcomes.values()]
    assert len(cases) == 60 and any(c.resealed for c in cases) and "refused" in outcomes and "ok" in outcomes
    assert fuzz.failures(cases) == []
