"""Errors raised by training/ml for bad input.

Both are ValueError subclasses so that a caller who only knows "bad input" can catch
ValueError; the message always names the file and line, or the path, that is wrong.
"""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """A data file is unusable: empty, malformed JSON, a missing or wrong field.

    `path` and `line` (1-based, None for a whole-file problem) are kept as attributes so a
    service can store them; the message already contains them.
    """

    def __init__(self, path: str | Path, message: str, *, line: int | None = None) -> None:
        self.path = str(path)
        self.line = line
        where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class ModelNotFound(ValueError):
    """A base model or adapter folder does not exist or is not a model folder."""

    def __init__(self, path: str | Path, what: str = "model") -> None:
        self.path = str(path)
        super().__init__(f"{what} folder not found or not a {what} folder: {self.path}")
