"""A new build folder started from what another site's last build left: its build state (every
source's row, the conversion cache) and its search index with the index's state. ``serve`` starts
its preview this way from the published site, so that its first build converts and indexes only
what changed since the last ``arxiv-digest site``; it still renders every page, whose links carry
the preview's address. Starting the preview beside a site of 3,000 posts took 46 s, a full build.

The copy must be of one finished build. A build of the published site marks its state incomplete
before it changes a file, and publishes its index's ``meta.gz`` last; so what is copied is used
only when the copied state says it is complete, and that build's state was complete, with the same
``meta.gz``, both before and after the copy. Otherwise it is removed again and the preview's first
build is a full one, as without it. A site without search (``site.search: false``) has only its
state to copy, in one consistent backup.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

from ..search_docs import META, STATE
from .manifest import STATE_FILE, renderer_version
from .options import SiteOptions, state_folder
from .search import FOLDER


def copy_last_build(published: SiteOptions, site_dir: Path, state_dir: Path) -> bool:
    """Copy the state of the last build of ``published`` into ``state_dir``, and its search index
    into ``site_dir``; returns whether it did (never over what is there already)."""
    source = state_folder(published)
    build_state, index_state, index = state_dir / STATE_FILE, state_dir / FOLDER, site_dir / FOLDER
    renderer = renderer_version()
    ended = _finished_build(published, renderer)
    if ended is None or any(path.exists() for path in (build_state, index_state, index)):
        return False
    try:
        _backup(source / STATE_FILE, build_state)
        if published.search:
            _backup(source / FOLDER / STATE, index_state / STATE)
            shutil.copytree(published.site_dir / FOLDER, index)
        # (the copy is opened read-write: a read-only connection would leave its WAL files behind)
        copied = _finished(build_state, renderer, sqlite3.connect) and _finished_build(published, renderer) == ended
    except (OSError, sqlite3.Error):  # a file replaced or removed meanwhile, too (shutil.Error is an OSError)
        copied = False
    if not copied:
        build_state.unlink(missing_ok=True)
        for folder in (index_state, index):
            shutil.rmtree(folder, ignore_errors=True)
    return copied


def _finished_build(options: SiteOptions, renderer: str) -> bytes | None:
    """The published index's ``meta.gz`` (which a build that changed the index replaced; empty for a
    site without search) when the last build of ``options`` finished, by this code (``renderer``:
    another's conversions are of no use); None while one runs, or when there is none."""
    if not _finished(state_folder(options) / STATE_FILE, renderer, _read_only):
        return None
    try:
        return (options.site_dir / FOLDER / META).read_bytes() if options.search else b""
    except OSError:
        return None


def _finished(state: Path, renderer: str, connect: Callable[[Path], sqlite3.Connection]) -> bool:
    """Whether the build state at ``state`` is of a build that finished, by the code of ``renderer``."""
    try:
        with closing(connect(state)) as db:
            meta = dict(db.execute("SELECT name, value FROM meta WHERE name IN ('complete', 'renderer')"))
    except (OSError, sqlite3.Error):
        return False
    return meta == {"complete": "1", "renderer": renderer}


def _backup(path: Path, copy: Path) -> None:
    """A consistent copy of the SQLite database at ``path``, even while another process writes it."""
    copy.parent.mkdir(parents=True, exist_ok=True)
    with closing(_read_only(path)) as source, closing(sqlite3.connect(copy)) as target:
        source.backup(target)


def _read_only(path: Path) -> sqlite3.Connection:
    if not path.is_file():  # (connecting would create it)
        raise FileNotFoundError(path)
    return sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
