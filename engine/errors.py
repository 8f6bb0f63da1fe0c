"""Errors the user can act on.  Each carries a one-line message; the CLI prints it
and exits non-zero, the GUI shows it.  Anything else is a bug."""

from __future__ import annotations


class TandemError(Exception):
    exit_code = 1


class ModelFileError(TandemError):
    """Missing, unreadable, not GGUF, truncated, or failed its checksum."""

    exit_code = 2


class ChecksumError(ModelFileError):
    pass


class IncompatiblePairError(TandemError):
    """The draft's vocabulary does not match the target's."""

    exit_code = 3


class ContextOverflowError(TandemError):
    """The prompt does not fit in the context."""

    exit_code = 4


class SourceUnavailableError(TandemError):
    """A download source could not be used (offline, unreachable, not found)."""

    exit_code = 5


class EngineError(TandemError):
    """llama.cpp refused an operation (decode failed, could not allocate)."""

    exit_code = 6


class Cancelled(TandemError):
    exit_code = 130
