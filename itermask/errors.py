"""Error types that name the dataset, subject and file a problem belongs to."""
from __future__ import annotations

from pathlib import Path


class ItermaskError(Exception):
    """Base class for every error the pipeline raises on purpose."""


class InputError(ItermaskError):
    """Bad input data: says which dataset, subject and file, and what is wrong."""

    def __init__(
        self,
        problem: str,
        *,
        path: str | Path | None = None,
        dataset: str | None = None,
        subject: str | None = None,
    ) -> None:
        self.problem = problem
        self.path = None if path is None else str(path)
        self.dataset = dataset
        self.subject = subject
        parts = []
        if dataset is not None:
            parts.append(f"dataset '{dataset}'")
        if subject is not None:
            parts.append(f"subject '{subject}'")
        if self.path is not None:
            parts.append(f"file '{self.path}'")
        where = ", ".join(parts)
        super().__init__(f"{where}: {problem}" if where else problem)

    def with_context(self, *, dataset: str | None = None, subject: str | None = None) -> "InputError":
        """Return a copy with dataset/subject filled in where they were unknown."""
        return InputError(
            self.problem,
            path=self.path,
            dataset=self.dataset if self.dataset is not None else dataset,
            subject=self.subject if self.subject is not None else subject,
        )


class ConfigError(ItermaskError):
    """The configuration is invalid: says which key and what was expected."""


class UnknownName(ConfigError, KeyError):
    """A dataset, experiment or table name the config does not declare (a mistyped target). A
    KeyError too, so lookups that expect one keep working; printed without KeyError's quotes."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class Named(dict):
    """The config's datasets, experiments or tables by name: an unknown name raises
    :class:`UnknownName` listing the known ones (``kind`` names them, ``key`` is the config key)."""

    def __init__(self, items: object = (), *, kind: str = "name", key: str = "") -> None:
        super().__init__(items)  # type: ignore[arg-type]
        self.kind, self.key = kind, key

    def __missing__(self, name: object) -> None:
        known = ", ".join(sorted(map(str, self))) or "none"
        raise UnknownName(f"unknown {self.kind} '{name}': config '{self.key}' declares or derives {known}")
