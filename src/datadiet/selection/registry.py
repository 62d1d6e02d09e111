"""Name -> class registries, so new selectors plug in without edits elsewhere."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from datadiet._core.checks import did_you_mean
from datadiet.errors import ParameterError

T = TypeVar("T")


class Registry(Generic[T]):
    """A dict from name to class with a ``register`` decorator and helpful errors.

    >>> reg = Registry("widget")
    >>> @reg.register("dial")
    ... class Dial:
    ...     def __init__(self, *, size: int = 1):
    ...         self.size = size
    >>> reg.create("dial", size=3).size
    3
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self._entries: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def decorator(cls: type[T]) -> type[T]:
            if name in self._entries:
                raise ParameterError(f"A {self.what} named {name!r} is already registered.")
            cls.name = name  # type: ignore[attr-defined]
            self._entries[name] = cls
            return cls

        return decorator

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str) -> type[T]:
        if name not in self._entries:
            hint = did_you_mean(name, self.names())
            raise ParameterError(f"Unknown {self.what} {name!r}.{hint} Available: {self.names()}.")
        return self._entries[name]

    def parameters(self, name: str) -> dict[str, Any]:
        """Constructor parameters of ``name`` and their defaults."""
        signature = inspect.signature(self.get(name).__init__)
        return {p.name: p.default for p in signature.parameters.values() if p.name != "self"}

    def create(self, name: str, **params: Any) -> T:
        cls = self.get(name)
        valid = self.parameters(name)
        unknown = sorted(set(params) - set(valid))
        if unknown:
            hint = did_you_mean(unknown[0], valid)
            raise ParameterError(
                f"Unknown parameter(s) {unknown} for {self.what} {name!r}.{hint} "
                f"Valid: {sorted(valid) or 'none'}."
            )
        return cls(**params)


SELECTORS: Registry[Any] = Registry("selector")
