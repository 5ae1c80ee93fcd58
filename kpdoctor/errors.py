"""Errors that the CLI turns into one clear line and an exit code.

Every error raised on bad input carries *where* (file, line, node) so the user
can fix the input without reading a traceback.
"""

from __future__ import annotations


class KpdoctorError(Exception):
    """Base class; `exit_code` is what the CLI exits with."""

    exit_code = 2

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class InputError(KpdoctorError):
    """Malformed or inconsistent user input (file, flag, snapshot, bundle)."""

    exit_code = 2


class UnreachableError(KpdoctorError):
    """The cluster or a required node could not be reached at all."""

    exit_code = 3
