"""`--commit`: record every file a run wrote (posts, paper pages, ...) in git, so a nightly job's
history is the blog's history and the Actions workflow publishes all of it."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from .errors import DigestError
from .outcome import RunOutcome


class PublishError(DigestError):
    """git refused; the posts are written, only the commit is missing."""


def _git(folder: Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, check=True, timeout=60)
    except FileNotFoundError:
        raise PublishError("--commit needs git, which is not installed") from None
    except subprocess.CalledProcessError as exc:
        raise PublishError(f"git {args[0]} failed: {exc.stderr.strip() or exc.stdout.strip()}") from None
    return done.stdout


def commit_files(paths: Sequence[Path], message: str) -> str | None:
    """Commit ``paths`` (only those git sees as new or changed); return the short hash, or None."""
    if not paths:
        return None
    folder = paths[0].parent
    _git(folder, "rev-parse", "--show-toplevel")
    names = [str(p) for p in dict.fromkeys(paths)]
    _git(folder, "add", "--", *names)
    if not _git(folder, "diff", "--cached", "--name-only", "--", *names).strip():
        return None
    _git(folder, "commit", "--quiet", "-m", message, "--", *names)
    return _git(folder, "rev-parse", "--short", "HEAD").strip()


def _count(count: int, word: str) -> str:
    return f"{count} {word}{'s' if count != 1 else ''}"


def commit_message(outcome: RunOutcome) -> str:
    """``arXiv digest 2026-01-15: 8 papers in 1 post``; git lists the files (pages and others too)."""
    changed = [d for d in outcome.days if d.changed]
    if not changed:
        return f"arXiv digest: {_count(len(outcome.written), 'file')} updated"
    span = f"{changed[0].day}" if len(changed) == 1 else f"{changed[0].day}..{changed[-1].day}"
    papers = sum(d.shown for d in changed)
    return f"arXiv digest {span}: {papers} papers in {_count(len(changed), 'post')}"


def commit_run(outcome: RunOutcome) -> str:
    """git-commit every file the run wrote; say what happened."""
    sha = commit_files(outcome.written, commit_message(outcome)) if outcome.written else None
    if sha is None:
        return "nothing written or changed; nothing to commit"
    return f"committed {_count(len(outcome.written), 'file')} as {sha}"
