"""What a client reports when a job cannot start: a message and what to do about it."""
from __future__ import annotations


class StartError(RuntimeError):
    """A bridge job could not start (no interpreter, one already running, a remote upload failed);
    ``hint`` tells the artist what to do about it."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint


class RemoteError(StartError):
    """A remote machine could not be reached, or a transfer to or from it failed."""
