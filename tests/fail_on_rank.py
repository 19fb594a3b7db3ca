"""`dcond` with rank 1 failing as it writes its first unit: for the distributed failure test (run by torchrun)."""

import os

import dcond.units as units
from dcond.cli import main
from dcond.errors import DcondError


def _fail(*args, **kwargs):
    raise DcondError("simulated failure on this rank")


if os.environ.get("RANK") == "1":
    units.save_class_images = _fail
main()
