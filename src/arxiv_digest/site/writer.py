"""Writing the site's files: each path once per build, only when what it shows changed since the last
build, atomically."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import jinja2

from ..files import SwapWriter
from .manifest import digest, key
from .markdown import absolute_links
from .options import SiteError
from .templates import render


class Writer:
    """One build's outputs: records each path with the key of what it shows, skips it when the last
    build wrote it with the same key (``old``), refuses to write one path twice, and removes at the
    end what the last build wrote and this one did not. ``config`` is the digest of everything that
    every file depends on (options, code, assets), ``templates`` each template's digest (with the
    templates it loads)."""

    def __init__(
        self,
        site_dir: Path,
        env: jinja2.Environment,
        config: str,
        templates: dict[str, str],
        old: dict[str, str],
        full: bool,
        base_url: str,
        files: SwapWriter,
    ) -> None:
        self.site_dir = site_dir
        self.files = files
        self.prefix = str(site_dir) + os.sep
        self.env = env
        self.config = config
        self.templates = templates
        self.old = old
        self.full = full
        self.base_url = base_url.rstrip("/")
        self.outputs: dict[str, str] = {}
        self.written: list[str] = []
        self.skipped = 0
        self._queued: list[tuple[str, str, Callable[[], dict[str, Any]]]] = []

    def stale(self, rel: str, key: str) -> bool:
        """Record ``rel`` as an output; True when it must be (re)written."""
        self._record(rel, key)
        if not self.full and self.old.get(rel) == key and os.path.isfile(self.prefix + rel):
            self.skipped += 1
            return False
        self.written.append(rel)
        return True

    def unchanged(self, rel: str) -> bool:
        """Record ``rel`` as the last build wrote it, without keying it, when the caller knows that
        its key has not changed (see ``basis``); False when it must be keyed after all: a full
        build, or the file is gone."""
        return self.all_unchanged((rel,))

    def all_unchanged(self, rels: Sequence[str]) -> bool:
        """``unchanged`` for all of ``rels``, or for none of them (nothing recorded). A loop, not
        ``all()`` over a generator, which cost a fifth more per call: every build makes one for each
        page it keeps (17,000 at 10,000 posts)."""
        if self.full:
            return False
        for rel in rels:
            if rel not in self.old or not os.path.isfile(self.prefix + rel):
                return False
        for rel in rels:
            self._record(rel, self.old[rel])
        self.skipped += len(rels)
        return True

    def _record(self, rel: str, key: str) -> None:
        if rel in self.outputs:
            raise SiteError(f"two pages would be written to {rel}")
        self.outputs[rel] = key

    def basis(self) -> str:
        """What every key starts from: the config and the templates. While it stays the same, a file
        whose own parts are unchanged has the key the last build gave it."""
        return digest(self.config, sorted(self.templates.items()))

    def key(self, template: str, *parts: str, loads: tuple[str, ...] = ()) -> str:
        """The key of a file rendered with ``template`` (and with the templates ``loads`` names, whose
        macros the build calls itself) from what ``parts`` name."""
        return key(self.config, *(self.templates[name] for name in (template, *loads)), template, *parts)

    def render(self, rel: str, key_parts: Iterable[str], template: str, **context: Any) -> None:
        """Queue ``template`` for ``rel`` unless the last build wrote it from the same ``key_parts``."""
        if self.stale(rel, self.key(template, *key_parts)):
            self.queue(rel, template, lambda: context)

    def queue(self, rel: str, template: str, context: Callable[[], dict[str, Any]]) -> None:
        """Render ``template`` to ``rel`` with what ``take_queued`` hands out. The context is made
        only then, in the process that renders it: a full build's listings show every post's
        papers, and decoding them all here first cost 40 MB at 3,000 posts, in this process and
        again in each forked one."""
        self._queued.append((rel, template, context))

    def take_queued(self) -> list[Callable[[], None]]:
        """Everything queued (listings, feeds), each as a task that renders and writes it: the build
        runs them in processes forked then, which share this one's memory (shipping a listing's
        posts to a worker would cost more than rendering it)."""
        queued, self._queued = self._queued, []
        return [partial(self._render, *item) for item in queued]

    def _render(self, rel: str, template: str, context: Callable[[], dict[str, Any]]) -> None:
        self.write(rel, render(self.env, template, rel, **context()))

    def write(self, rel: str, data: str | bytes) -> None:
        """Atomic, so a server reading the folder never sees half a file; not fsynced: a build can be repeated."""
        self.files.write(self.prefix + rel, data)

    def absolute(self, rel: str) -> str:
        return f"{self.base_url}/{rel}"

    def absolute_links(self, body_html: str, rel: str) -> str:
        """Links of HTML shown at ``rel``, for a feed: resolved against its public URL."""
        return absolute_links(body_html, rel, self.absolute(rel))

    def atom_id(self, rel: str) -> str:
        """The public URL when there is one; otherwise a stable URN, as Atom ids must be absolute."""
        if self.base_url:
            return self.absolute(rel)
        return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'arxiv-digest:' + rel)}"

    def clean(self) -> tuple[str, ...]:
        """Delete what earlier builds wrote and this one did not."""
        removed = sorted(set(self.old) - set(self.outputs))
        for rel in removed:
            target = self.site_dir / rel
            target.unlink(missing_ok=True)
            for parent in target.parents:  # the folders it leaves empty; someone may have deleted them
                if parent == self.site_dir:
                    break
                try:
                    parent.rmdir()
                except FileNotFoundError:
                    continue
                except OSError:  # not empty
                    break
        return tuple(removed)
