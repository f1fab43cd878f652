"""AiosError, the one base of every error AIOS reports. Imports nothing (the CLI loads it
on its fast path)."""
from __future__ import annotations



class AiosError(Exception):
    """Something went wrong in AIOS."""

    def __init__(self, message: str = ""):
        super().__init__(message or (self.__doc__ or "").strip())


class SpawnError(AiosError, OSError):
    """A process could not be started."""

    def __init__(self, message: str = "", err: int | None = None):
        super().__init__(message)
        self.errno = err

    def __str__(self) -> str:
        return self.args[0]
