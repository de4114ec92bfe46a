"""resque_compat: Python workers and a client that speak Ruby Resque 3.0's wire format.

Importing the package loads nothing heavy (no redis, ssl, requests or pymysql), so the
``resque-py`` entry point can patch gevent first; public names load on first use (PEP 562).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from resque_compat.version import __version__

if TYPE_CHECKING:  # what type checkers see; at run time __getattr__ below imports on first use
    from resque_compat.client import Resque
    from resque_compat.errors import DontPerform, ResqueError
    from resque_compat.registry import job
    from resque_compat.settings import Settings

_LAZY = {
    "Resque": ("resque_compat.client", "Resque"),
    "job": ("resque_compat.registry", "job"),
    "Settings": ("resque_compat.settings", "Settings"),
    "DontPerform": ("resque_compat.errors", "DontPerform"),
    "ResqueError": ("resque_compat.errors", "ResqueError"),
}

# A literal list, so type checkers (and --no-implicit-reexport) see these names as exported.
__all__ = ["__version__", "Resque", "job", "Settings", "DontPerform", "ResqueError"]


def __getattr__(name: str) -> Any:
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'resque_compat' has no attribute {name!r}") from None
    import importlib

    value = getattr(importlib.import_module(module_name), attr)
    globals()[name] = value
    return value
