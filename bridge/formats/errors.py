"""The one error type every reader and writer raises for bad input, and the warning for odd input."""
from __future__ import annotations

import os


class FormatError(ValueError):
    """A file that cannot be read or written, with the file and the problem named."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = os.fspath(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class FormatWarning(UserWarning):
    """A file that was read, but not exactly as written (trailing bytes, ignored data, lossy output).

    Raised through :mod:`warnings`, so the add-on can turn it into a WARNING report and tests can
    assert on it with ``pytest.warns``.
    """


def warn(path: str | os.PathLike | None, problem: str) -> None:
    import warnings

    message = f"{os.fspath(path)}: {problem}" if path is not None else problem
    warnings.warn(FormatWarning(message), stacklevel=3)
