"""Independent units of work (a class, or a chunk of one class's images) with their own seeds.

A stage that makes images plans its units, and each unit's images are written as soon as it is done,
with a marker, so an interrupted run resumes with the unfinished units only; and since every unit has its
own seed, the result does not depend on which units ran when (or, later, on which process ran them).
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch

from dcond.artifact import ArtifactWriter, save_class_images
from dcond.log import info, progress


@dataclass(frozen=True)
class Unit:
    index: int
    cls: int
    start: int  # first image index within the class
    count: int
    seed: int

    def generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed)


def plan_units(num_classes: int, ipc: int, per_unit: int | None, seed: int) -> list[Unit]:
    """Class by class, in chunks of `per_unit` images (default: the whole class)."""
    per_unit = per_unit or ipc
    units = []
    for c in range(num_classes):
        for start in range(0, ipc, per_unit):
            index = len(units)
            units.append(Unit(index, c, start, min(per_unit, ipc - start), seed * 1_000_003 + index))
    return units


def run_units(w: ArtifactWriter, units: list[Unit], make: Callable[[Unit], torch.Tensor],
              description: str) -> None:
    """Make and write every unit not already finished in `w` (a resumed run keeps finished ones)."""
    done_dir = w.scratch / "units"
    done_dir.mkdir(exist_ok=True)
    todo = [u for u in units if not (done_dir / f"{u.index}.done").exists()]
    if len(todo) < len(units):
        info(f"resuming: {len(units) - len(todo)} of {len(units)} units already done")
    with progress(description, len(units)) as task:
        task.advance(len(units) - len(todo))
        for unit in todo:
            images = make(unit)
            save_class_images(w, unit.cls, images, unit.start)
            (done_dir / f"{unit.index}.done").touch()  # after the images: a marked unit is complete
            task.advance(1, f"class {unit.cls}")
