"""Name -> builder registries for models, datasets and methods.

A new model, dataset or method is one module plus a `@REGISTRY.register("name")` line;
everything else (the CLI, the tests) finds it through the registry.
"""

from collections.abc import Callable
from typing import Generic, TypeVar

from dcond.errors import DcondError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = entry
            return entry

        return add

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise DcondError(f"unknown {self.kind} '{name}' (known: {', '.join(self.names())})") from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries
