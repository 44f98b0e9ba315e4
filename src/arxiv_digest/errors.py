"""One error family: library code raises these with context, and click shows them.

Each is a ``click.ClickException`` carrying its exit code, so every command has one error path:
raise, and click prints ``error: <message>`` on stderr and exits with the code. Nothing else
catches and maps errors, except ``command`` in the CLI, which records a failed run in its report
first and raises again.
"""

from __future__ import annotations

import logging
from enum import IntEnum
from typing import IO, Any

import click

log = logging.getLogger(__name__)


class ExitCode(IntEnum):
    """The documented exit codes; the report's ``outcome`` is the member's name in lower case."""

    OK = 0
    FAILED = 1  # runtime failure: arXiv, store, templates, the LLM's key or quota, git
    USAGE = 2  # usage or configuration error
    PENDING = 3  # finished, but some papers are still pending
    LOCKED = 4  # another run holds the lock
    INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


class DigestError(click.ClickException):
    """Base for every error a user should see as one clear message (never a traceback)."""

    exit_code = ExitCode.FAILED

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", file=file, err=file is None)


class UsageError(DigestError):
    """Bad command-line input (an unknown date, a window that has not ended yet)."""

    exit_code = ExitCode.USAGE


class ConfigError(DigestError):
    """Invalid configuration; carries every problem found, each with its key path."""

    exit_code = ExitCode.USAGE

    def __init__(self, problems: list[str], source: str = "config") -> None:
        self.problems = problems
        super().__init__(
            f"{source}: " + "; ".join(problems)
            if len(problems) == 1
            else f"{source}: {len(problems)} problems:\n  " + "\n  ".join(problems)
        )


class ArxivError(DigestError):
    """arXiv could not be queried (after retries) or rejected the query; carries URL and attempts."""

    def __init__(self, message: str, *, url: str = "", attempts: int = 0) -> None:
        self.url = url
        self.attempts = attempts
        detail = f" (after {attempts} attempt{'s' if attempts != 1 else ''})" if attempts else ""
        super().__init__(f"arXiv: {message}{detail}")


class StoreError(DigestError):
    """The SQLite store is unusable (corrupt, newer schema, locked)."""


class RenderError(DigestError):
    """A template failed to render; nothing was written."""


class Interrupted(DigestError):
    """Ctrl-C: what was written is whole (atomic writes, store transactions)."""

    exit_code = ExitCode.INTERRUPTED

    def __init__(self) -> None:
        super().__init__("interrupted; posts already written are complete, the next run finishes the rest")


class InternalError(DigestError):
    """A bug: one line naming the exception; ``-vv`` logs the traceback."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"internal error: {type(cause).__name__}: {cause} (run with -vv for details)")

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(self.format_message(), file=file, err=file is None)


def as_digest_error(exc: BaseException) -> DigestError:
    """Any exception as the error the user sees: our own as it is, Ctrl-C and bugs wrapped."""
    if isinstance(exc, DigestError):
        return exc
    if isinstance(exc, KeyboardInterrupt):
        return Interrupted()
    if isinstance(exc, OSError) and exc.strerror:  # the file system failed where no clearer error covers it
        return DigestError(f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror)
    log.debug("internal error", exc_info=exc)
    return InternalError(exc)
