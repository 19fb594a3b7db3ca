"""Independent units of work (a class, or a chunk of one class's images) with their own seeds.

A stage that makes images plans its units, and each unit's images are written as soon as it is done,
with a marker, so an interrupted run resumes with the unfinished units only; and since every unit has its
own seed, the result does not depend on which units ran when (or, later, on which process ran them).
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch

from dcond.artifact import ArtifactWriter, save_class_images
from dcond.distributed import world
from dcond.errors import DcondError
from dcond.log import info, progress
from dcond.seeds import stream_seed


def class_generator(seed: int, c: int) -> torch.Generator:
    """Class c's own stream. `select` plans one unit per class, so its unit c draws from this same stream: EDC's
    real starting images are `select random`'s of the same seed, and the two pair image for image."""
    return torch.Generator().manual_seed(stream_seed(seed, c))


@dataclass(frozen=True)
class Unit:
    """Images start … start+count-1 of each class in `classes`."""

    index: int
    classes: tuple[int, ...]
    start: int
    count: int
    seed: int

    def generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed)

    @property
    def labels(self) -> torch.Tensor:
        """The class of each image the unit makes, class-major."""
        return torch.tensor(self.classes).repeat_interleave(self.count)


def plan_units(num_classes: int, ipc: int, per_unit: int, seed: int, classes_per_unit: int = 1) -> list[Unit]:
    """Chunks of `per_unit` images of each of `classes_per_unit` consecutive classes (every class at once when
    it is the number of classes)."""
    groups = [tuple(range(c, min(c + classes_per_unit, num_classes))) for c in range(0, num_classes, classes_per_unit)]
    units = []
    for classes in groups:
        for start in range(0, ipc, per_unit):
            index = len(units)
            units.append(Unit(index, classes, start, min(per_unit, ipc - start), stream_seed(seed, index)))
    return units


def run_units(w: ArtifactWriter, units: list[Unit], make: Callable[[Unit], torch.Tensor],
              description: str) -> None:
    """Make and write every unit not already finished in `w` (a resumed run keeps finished ones); under
    torchrun each rank takes every N-th unfinished unit. `make(unit)` returns the unit's images
    class-major, as `unit.labels` lists them."""
    done_dir = w.scratch / "units"
    done_dir.mkdir(exist_ok=True)

    def unfinished() -> list[Unit]:
        return [u for u in units if not (done_dir / f"{u.index}.done").exists()]

    # rank 0 decides what is left: ranks that start later must not see their peers' fresh work as done
    todo = [units[i] for i in world().share([u.index for u in unfinished()])]
    if len(todo) < len(units):
        info(f"resuming: {len(units) - len(todo)} of {len(units)} units already done")
    mine = world().shard(todo)
    with progress(description, len(mine)) as task:
        for unit in mine:
            images = make(unit)
            images = images.view(len(unit.classes), unit.count, *images.shape[1:])
            for c, class_images in zip(unit.classes, images):
                save_class_images(w, c, class_images, unit.start)
            (done_dir / f"{unit.index}.done").touch()  # after the images: a marked unit is complete
            task.advance(1)
    world().barrier()  # later steps read every rank's images
    if unfinished():
        raise DcondError(f"{len(unfinished())} unit(s) were not made; run the command again to finish them")
