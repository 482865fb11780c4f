"""The one error type every reader and writer raises for bad input."""
from __future__ import annotations

import os


class FormatError(ValueError):
    """A file that cannot be read or written, with the file and the problem named."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = os.fspath(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)
