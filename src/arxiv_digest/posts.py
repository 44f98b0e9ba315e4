"""Posts and paper pages as files: assemble a window's post from the store, render it, refuse to
replace a better post (judged by the posts' records), write it atomically with its record beside it,
and record what was written.

Every file goes through ``RunFiles.write``, so ``--commit`` records exactly what the run wrote.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import jinja2

from . import postformat, render
from .arxiv import id_slug
from .cache import TextCache
from .config import Config
from .files import remove_stale_temp_files
from .models import LateNote, Paper, PaperPage, Post, PostEntry, Texts, Window
from .outcome import DayOutcome
from .select import select
from .store import Store

log = logging.getLogger(__name__)

TZ_LABELS = {"Asia/Shanghai": ("CST", "CST，北京时间")}


@dataclass
class RunFiles:
    """Every file one run wrote, in order: what ``--commit`` records."""

    paths: list[Path] = field(default_factory=list)

    def write(self, path: Path, text: str, record: postformat.Record) -> None:
        """A post or page and the record beside it (each only when it changed)."""
        self.paths += postformat.write(path, text, record)


def environment(config: Config) -> jinja2.Environment:
    """The posts' templates (a user's folder first), set up for the user's Jekyll."""
    env = render.environment(config.site.templates_dir)
    if config.site.kramdown_parse_block_html:
        env.globals["SUMMARY_OPEN"] = '<summary markdown="span">'
    return env


@dataclass(frozen=True)
class Posts:
    """The posts folder (and the paper pages in it) as the store says they should be."""

    config: Config
    store: Store
    cache: TextCache
    env: jinja2.Environment
    now: Callable[[], datetime]

    @property
    def folders(self) -> set[Path]:
        return {self.config.site.posts_dir, self.config.pages.dir or self.config.site.posts_dir}

    def remove_stale_temp_files(self) -> None:
        for folder in self.folders:
            remove_stale_temp_files(folder)

    # -- assembly ---------------------------------------------------------------------------------
    def post_for(self, window: Window) -> tuple[Post, list[str]]:
        """The post of ``window`` from the store, and the ids it newly shows."""
        papers = self.store.papers_between(window.start, window.end)
        owners = self.store.post_days(p.arxiv_id for p in papers)
        selection = select(
            papers,
            window,
            self.config.arxiv.categories,
            self.config.filter,
            shown_elsewhere=[i for i, d in owners.items() if d != window.day],
            shown_here=[i for i, d in owners.items() if d == window.day],
        )
        tz = self.config.window.timezone
        zone_name = window.end.astimezone(ZoneInfo(tz)).strftime("%Z")
        short, label = TZ_LABELS.get(tz, (zone_name, zone_name))
        post = Post(
            window=window,
            timezone=tz,
            timezone_label=label,
            timezone_short=short,
            anchor=self.config.window.anchor,
            tags=self.config.arxiv.categories,
            fetched=selection.fetched,
            entries=tuple(self.entry(p) for p in selection.shown),
            left_out_by_cap=selection.left_out_by_cap,
            late=tuple(
                LateNote(day=day, title=paper.title, abs_url=paper.abs_url)
                for day, paper in self.store.late_notes(window.day)
            ),
        )
        return post, [p.arxiv_id for p in selection.shown if p.arxiv_id not in owners]

    def entry(self, paper: Paper) -> PostEntry:
        texts = self.cache.texts(paper)
        page = self.page_for(paper, texts)
        return PostEntry(paper=paper, texts=texts, page_url=page.permalink if page else None)

    def page_for(self, paper: Paper, texts: Texts) -> PaperPage | None:
        """The paper's own page, once its translation and page info exist."""
        if not self.config.pages.enabled or texts.page is None or texts.translation is None:
            return None
        day = paper.published.astimezone(ZoneInfo(self.config.window.timezone)).date()
        permalink = self.config.pages.permalink.replace("{id}", id_slug(paper.arxiv_id))
        return PaperPage(paper, day, texts.translation, texts.page, permalink)

    # -- writing ----------------------------------------------------------------------------------
    def write(self, post: Post, new_ids: list[str], files: RunFiles, force: bool = False) -> DayOutcome:
        """Render in memory, refuse to replace a better post, write atomically, then record."""
        day = post.window.day
        if not post.entries:
            return DayOutcome(day, post.fetched, 0, None, "no papers, no post")
        text = render.render_post(post, self.env)
        record = postformat.post_record(post, text, self.env)
        path = self.config.site.posts_dir / f"{day.isoformat()}-arxiv.md"
        if path.exists() and not force:
            old = path.read_text(encoding="utf-8")
            if old == text:
                files.write(path, text, record)  # a post from before records gets its record
                self._record(post, new_ids, path, text)
                self.write_pages(post, files)
                return DayOutcome(day, post.fetched, len(post.entries), path, "unchanged")
            if postformat.better_on_disk(path, record):
                log.warning("%s: kept the existing post, which has more papers or texts than a rewrite would", path)
                return DayOutcome(day, post.fetched, len(post.entries), None, "kept existing better post")
        files.write(path, text, record)
        self._record(post, new_ids, path, text)
        self.write_pages(post, files)
        return DayOutcome(day, post.fetched, len(post.entries), path)

    def write_pages(self, post: Post, files: RunFiles) -> None:
        """Each paper's own page (when enabled), rewritten only when its text changed."""
        folder = self.config.pages.dir or self.config.site.posts_dir
        for entry in post.entries:
            page = self.page_for(entry.paper, entry.texts)
            if page is None:
                continue
            text = render.render_page(page, self.env)
            path = folder / f"{page.day.isoformat()}-{id_slug(entry.paper.arxiv_id)}.md"
            files.write(path, text, postformat.page_record(page, self.env))

    def _record(self, post: Post, new_ids: list[str], path: Path, text: str) -> None:
        stamp = self.now()
        with self.store.transaction():
            self.store.assign(post.window.day, new_ids, stamp)
            for entry in post.entries:
                self.store.set_pending(entry.paper.arxiv_id, not self.cache.complete(entry.texts))
            sha = hashlib.sha256(text.encode()).hexdigest()
            self.store.record_post(
                post.window.day, path, post.fetched, len(post.entries), post.left_out_by_cap, sha, stamp
            )
