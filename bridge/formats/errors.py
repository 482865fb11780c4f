"""The one error type every reader and writer raises for bad input, and the warning for odd input."""
from __future__ import annotations

import os

# As bridge.protocol's (which may not be imported from here): the longest message, and the longest
# path or value a message echoes, cut keeping the start and the end.
MESSAGE_LIMIT, VALUE_LIMIT = 1000, 300


def clip(text: str, limit: int = VALUE_LIMIT) -> str:
    text = str(text)
    if len(text) <= limit:
        return text
    keep = max(limit - 40, 2)
    return f"{text[:keep - keep // 3]}...({len(text) - keep:,} characters)...{text[len(text) - keep // 3:]}"


class FormatError(ValueError):
    """A file that cannot be read or written, with the file and the problem named."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = os.fspath(path) if path is not None else None
        self.problem = clip(problem, MESSAGE_LIMIT)  # a 100 MB image name in a model must not be echoed whole
        super().__init__(f"{clip(self.path)}: {self.problem}" if self.path else self.problem)


class FormatWarning(UserWarning):
    """A file that was read, but not exactly as written (trailing bytes, ignored data, lossy output).

    Raised through :mod:`warnings`, so the add-on can turn it into a WARNING report and tests can
    assert on it with ``pytest.warns``.
    """


def warn(path: str | os.PathLike | None, problem: str) -> None:
    import warnings

    problem = clip(problem, MESSAGE_LIMIT)
    message = f"{clip(os.fspath(path))}: {problem}" if path is not None else problem
    warnings.warn(FormatWarning(message), stacklevel=3)
