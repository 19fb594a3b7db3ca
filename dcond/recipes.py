"""Recipes: the settings a method's authors' released code uses for data of one shape. A method with no flags
runs the recipe for the data at hand (`recipe_for`); `--recipe` names another; every flag given wins over
its recipe. Each method's module lists its recipes with the repository and commit they were read from
(docs/official/); docs/methods.md sets them beside dcond's defaults."""

from typing import Any

from dcond.errors import DcondError
from dcond.spec import DatasetSpec

RECIPES = ("cifar10", "cifar100", "tiny-imagenet", "imagenet")


def recipe_for(spec: DatasetSpec) -> str:
    """CIFAR-10's scripts for data of up to 64 pixels and 10 classes, CIFAR-100's up to 100 classes,
    Tiny-ImageNet's beyond (up to 64 pixels), ImageNet's for larger images."""
    if spec.image_size > 64:
        return "imagenet"
    return "cifar10" if spec.num_classes <= 10 else "cifar100" if spec.num_classes <= 100 else "tiny-imagenet"


def check(choice: str) -> None:
    if choice not in ("auto", *RECIPES):
        raise DcondError(f"--recipe must be auto or one of {', '.join(RECIPES)}")


def fill(choice: str, spec: DatasetSpec, recipes: dict[str, dict[str, Any]], given: dict[str, Any]) -> dict[str, Any]:
    """The recipe's settings (the one for `spec` when `choice` is auto), with every value in `given` that is
    not None in their place, and the recipe's name under "recipe"."""
    name = recipe_for(spec) if choice == "auto" else choice
    chosen = recipes.get(name, {})
    return chosen | {k: v for k, v in given.items() if v is not None or k not in chosen} | {"recipe": name}
