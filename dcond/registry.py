"""Name -> builder registries for models, datasets and methods.

A new model, dataset or method is one module plus a `@REGISTRY.register("name")` line;
everything else (the CLI, the tests) finds it through the registry. A registry of methods also knows, by
name, the module that registers each one, and imports it only when the name is looked up: listing the
methods (for `--help`) loads neither their code nor torch.
"""

import importlib
from collections.abc import Callable
from typing import Generic, TypeVar

from dcond.errors import DcondError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, modules: dict[str, str] | None = None):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._modules = modules or {}  # name -> the module whose import registers it

    def register(self, name: str) -> Callable[[T], T]:
        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = entry
            return entry

        return add

    def get(self, name: str) -> T:
        try:
            return self._load(name)[name]
        except KeyError:
            raise DcondError(f"unknown {self.kind} '{name}' (known: {', '.join(self.names())})") from None

    def names(self) -> list[str]:
        return sorted(self._entries.keys() | self._modules.keys())

    def __contains__(self, name: str) -> bool:
        return name in self._load(name)

    def _load(self, name: str) -> dict[str, T]:
        if name not in self._entries and name in self._modules:
            importlib.import_module(self._modules[name])
        return self._entries
