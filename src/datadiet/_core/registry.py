"""Name -> entry registries for every extension point, and the ``datadiet.plugins`` entry-point group.

A :class:`Registry` maps names to entries (a class, like a selector, or an object, like a metric). Entries
come from three places: the modules that register them on import, the registry's *builtins* (modules
imported the first time it is queried, so a light module can own a registry its heavy users fill), and
installed plugins. A plugin is an entry point in the group ``datadiet.plugins`` that names a module (or a
callable taking no arguments) registering things when loaded:

.. code-block:: toml

    [project.entry-points."datadiet.plugins"]
    my_plugin = "my_package.datadiet_plugin"

Plugins load lazily, once, the first time any registry is queried (``names``, ``get``, ``contains``,
``create``), so an installed package extends Python, the CLI and YAML configs alike. A plugin that fails to
load raises :class:`PluginError` naming its entry point and distribution; a name registered twice is
refused naming both owners.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar, cast

from datadiet._core.checks import did_you_mean
from datadiet.errors import DatadietError, ParameterError, PluginError

T = TypeVar("T")

PLUGIN_GROUP = "datadiet.plugins"
"""The entry-point group that datadiet loads plugins from."""


class Registry(Generic[T]):
    """A dict from name to entry with a ``register`` decorator and helpful errors.

    Parameters
    ----------
    what : str
        What an entry is, for messages ("selector", "metric", ...).
    builtins : tuple of str
        Modules that register the built-in entries, imported on the first query.

    Examples
    --------
    >>> reg = Registry("widget")
    >>> @reg.register("dial")
    ... class Dial:
    ...     def __init__(self, *, size: int = 1):
    ...         self.size = size
    >>> reg.create("dial", size=3).size
    3
    """

    def __init__(self, what: str, *, builtins: tuple[str, ...] = ()) -> None:
        self.what = what
        self.builtins = builtins
        self._entries: dict[str, T] = {}
        self._owners: dict[str, str] = {}
        self._from_plugins: set[str] = set()
        self._ready = False

    def register(self, name: str, entry: Any = None) -> Any:
        """Register ``entry`` under ``name``; without ``entry``, a decorator that registers its argument.

        A class gets ``name`` as its ``name`` attribute.
        """

        def decorator(obj: Any) -> Any:
            owner = _PLUGINS.owner(obj)
            if name in self._entries:
                raise ParameterError(
                    f"A {self.what} named {name!r} is already registered (by {self._owners[name]}); "
                    f"{owner} cannot register it again. Rename one of them."
                )
            if isinstance(obj, type):
                obj.name = name  # type: ignore[attr-defined]
            self._entries[name] = cast(T, obj)
            self._owners[name] = owner
            if _PLUGINS.current is not None:
                self._from_plugins.add(name)
            return obj

        return decorator if entry is None else decorator(entry)

    def unregister(self, name: str) -> None:
        """Remove ``name`` (a test's or a session's own entry); an unknown name lists the options."""
        self.get(name)
        del self._entries[name], self._owners[name]
        self._from_plugins.discard(name)

    def names(self) -> list[str]:
        """The registered names, sorted."""
        self._load()
        return sorted(self._entries)

    def registered(self) -> list[str]:
        """The registered names in registration order, built-ins first, then those of plugins."""
        self._load()
        own = [name for name in self._entries if name not in self._from_plugins]
        return own + [name for name in self._entries if name in self._from_plugins]

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def contains(self, name: object) -> bool:
        """Whether ``name`` is registered."""
        return name in self

    def get(self, name: str) -> T:
        """The entry ``name``; an unknown name lists the options (with a "did you mean")."""
        self._load()
        if name not in self._entries:
            hint = did_you_mean(name, self.names())
            raise ParameterError(f"Unknown {self.what} {name!r}.{hint} Available: {self.names()}.")
        return self._entries[name]

    def owner(self, name: str) -> str:
        """Who registered ``name``: a module, or a plugin with its distribution."""
        self.get(name)
        return self._owners[name]

    def parameters(self, name: str) -> dict[str, Any]:
        """Constructor parameters of ``name`` (a class; else its call signature) and their defaults."""
        entry = self.get(name)
        target = entry.__init__ if isinstance(entry, type) else entry
        signature = inspect.signature(target)  # type: ignore[arg-type]
        return {p.name: p.default for p in signature.parameters.values() if p.name != "self"}

    def create(self, name: str, /, **params: Any) -> Any:
        """``get(name)(**params)``, refusing parameters its signature does not take (listing the valid)."""
        entry = self.get(name)
        valid = self.parameters(name)
        unknown = sorted(set(params) - set(valid))
        if unknown:
            hint = did_you_mean(unknown[0], valid)
            raise ParameterError(
                f"Unknown parameter(s) {unknown} for {self.what} {name!r}.{hint} "
                f"Valid: {sorted(valid) or 'none'}."
            )
        return entry(**params)  # type: ignore[operator]

    def _load(self) -> None:
        """Import the builtins and load the plugins, once (again after a failure)."""
        if self._ready:
            return
        self._ready = True  # set first: a module being imported may query this registry
        try:
            for module in self.builtins:
                importlib.import_module(module)
            _PLUGINS.load()
        except BaseException:
            self._ready = False
            raise


class _Plugins:
    """The ``datadiet.plugins`` entry points: loaded once each, with who registered what."""

    def __init__(self) -> None:
        self.loaded: set[tuple[str, str, str]] = set()
        self.current: str | None = None

    def owner(self, obj: Any) -> str:
        if self.current is not None:
            return self.current
        return f"module {getattr(obj, '__module__', None) or type(obj).__module__!r}"

    def load(self) -> None:
        """Load every entry point of the group not loaded yet; a failure raises :class:`PluginError`."""
        if self.current is not None:  # a plugin being loaded queried a registry
            return
        for point in _entry_points():
            key = (_dist_name(point), point.name, point.value)
            if key in self.loaded:
                continue
            with self._loading(point):
                _run(point)
            self.loaded.add(key)

    @contextmanager
    def _loading(self, point: importlib.metadata.EntryPoint) -> Iterator[None]:
        label = f"plugin {point.name!r} ({point.value}) of distribution {_dist_label(point)}"
        self.current = label
        try:
            yield
        except DatadietError:
            raise
        except Exception as exc:
            raise PluginError(
                f"The datadiet plugin entry point {point.name!r} = {point.value!r} (group "
                f"{PLUGIN_GROUP!r}) of distribution {_dist_label(point)} failed to load: "
                f"{type(exc).__name__}: {exc}. Fix or uninstall that package."
            ) from exc
        finally:
            self.current = None


_PLUGINS = _Plugins()


def load_plugins() -> None:
    """Load the installed ``datadiet.plugins`` entry points now (registries otherwise do it on first use)."""
    _PLUGINS.load()


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    seen: dict[tuple[str, str, str], importlib.metadata.EntryPoint] = {}
    for point in importlib.metadata.entry_points(group=PLUGIN_GROUP):
        seen.setdefault((_dist_name(point), point.name, point.value), point)
    return sorted(seen.values(), key=lambda p: (_dist_name(p), p.name))


def _run(point: importlib.metadata.EntryPoint) -> None:
    loaded: Any = point.load()
    if callable(loaded) and not inspect.ismodule(loaded):
        loaded()


def _dist_name(point: importlib.metadata.EntryPoint) -> str:
    dist = getattr(point, "dist", None)
    return "" if dist is None else str(dist.metadata["Name"])


def _dist_label(point: importlib.metadata.EntryPoint) -> str:
    dist = getattr(point, "dist", None)
    return "'(unknown)'" if dist is None else f"'{dist.metadata['Name']} {dist.version}'"
