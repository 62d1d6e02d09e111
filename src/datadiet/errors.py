"""Every error datadiet raises for bad input: one root, :class:`DatadietError`, and a class per kind of fault.

Each class also derives from the built-in exception a caller would expect (``ValueError`` for a wrong value,
``TypeError`` for a wrong type, ``OSError``-free on purpose), so ``except ValueError`` keeps working. The CLI
prints a ``DatadietError`` (or an ``OSError``) as one line and exits with code 2; anything else is a bug and
shows its traceback.

>>> from datadiet.errors import DatadietError, ParameterError
>>> issubclass(ParameterError, DatadietError) and issubclass(ParameterError, ValueError)
True
"""

from __future__ import annotations


class DatadietError(Exception):
    """The root of every error datadiet raises for input a user can fix; the message names the fix."""


class ParameterError(DatadietError, ValueError):
    """A parameter, argument or input array has a wrong value (out of range, wrong shape, unknown name)."""


class ParameterTypeError(DatadietError, TypeError, ValueError):
    """A parameter, argument or input array has a wrong type (also a ``ValueError``, as scikit-learn's
    ``InvalidParameterError`` is, so ``except ValueError`` catches every bad parameter)."""


class ConfigError(DatadietError, ValueError):
    """A config file or dict is malformed (the message names the YAML key)."""


class DatasetError(DatadietError, ValueError):
    """A dataset is malformed (duplicate ids, empty texts, missing or unknown labels, ...)."""


class MissingAssetError(DatasetError, ImportError):
    """The package that holds an embedded dataset or model is not installed (or lacks the file)."""


class NotFoundError(DatadietError, KeyError):
    """A named thing (a checkpoint epoch, an attached embedding table) is not there; the message lists what
    is."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class MissingDependencyError(DatadietError, ImportError):
    """An optional dependency is not installed; the message says what to install."""


class FieldError(DatadietError, ValueError):
    """A field of a JSON record is of the wrong type or out of range (the message is the problem)."""


class PluginError(DatadietError, ImportError):
    """An installed plugin failed to load; the message names its entry point and distribution."""


class StoreError(DatadietError, RuntimeError):
    """A store entry is corrupt, incomplete, mismatched or locked; the message says how to fix it."""


class RunFolderError(DatadietError, ValueError):
    """A reference-run folder is missing files, damaged, or belongs to another run."""


__all__ = [
    "ConfigError",
    "DatadietError",
    "DatasetError",
    "FieldError",
    "MissingAssetError",
    "MissingDependencyError",
    "NotFoundError",
    "ParameterError",
    "ParameterTypeError",
    "PluginError",
    "RunFolderError",
    "StoreError",
]
