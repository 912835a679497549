"""Methods as plug-ins: one module per method in this folder, each defining ``METHOD``.

A method module must import only light modules at import time (NumPy, the standard
library, ``itermask.methods.base``); torch and the networks are imported inside its
functions, so that the workflow (which asks a method which inputs it needs while it builds
the DAG) never imports torch. ``tests/methods/test_registry.py`` checks this.
"""
from __future__ import annotations

import pkgutil
from functools import lru_cache
from importlib import import_module

from itermask.errors import ConfigError
from itermask.methods.base import InputSpec, Method

__all__ = ["InputSpec", "Method", "get", "names"]


def names() -> list[str]:
    """Names of the available methods (the modules of this folder, except ``base``)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "base" and not m.name.startswith("_"))


@lru_cache(maxsize=None)
def get(name: str) -> Method:
    """The method called ``name`` (module ``itermask.methods.<name>``, attribute ``METHOD``)."""
    if name not in names():
        raise ConfigError(f"unknown method '{name}' (available: {', '.join(names())})")
    method = import_module(f"itermask.methods.{name}").METHOD
    if method.name != name:
        raise ConfigError(f"itermask.methods.{name}.METHOD is named '{method.name}'")
    return method
