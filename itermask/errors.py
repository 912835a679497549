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
