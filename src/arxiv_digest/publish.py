"""`--commit`: record new and updated posts in git, so a nightly job's history is the blog's history."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from .errors import DigestError


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


def commit_posts(posts: Sequence[Path], message: str) -> str | None:
    """Commit ``posts`` (only those git sees as new or changed); return the short hash, or None."""
    if not posts:
        return None
    folder = posts[0].parent
    _git(folder, "rev-parse", "--show-toplevel")
    names = [str(p) for p in posts]
    _git(folder, "add", "--", *names)
    if not _git(folder, "diff", "--cached", "--name-only", "--", *names).strip():
        return None
    _git(folder, "commit", "--quiet", "-m", message, "--", *names)
    return _git(folder, "rev-parse", "--short", "HEAD").strip()
