"""One error family: library code raises these with context; only the CLI maps them to exit codes."""

from __future__ import annotations


class DigestError(Exception):
    """Base for every error a user should see as one clear message (never a traceback)."""

    exit_code = 1


class UsageError(DigestError):
    """Bad command-line input (an unknown date, a window that has not ended yet)."""

    exit_code = 2


class ConfigError(DigestError):
    """Invalid configuration; carries every problem found, each with its key path."""

    exit_code = 2

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
