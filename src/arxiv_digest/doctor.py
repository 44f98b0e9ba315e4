"""`arxiv-digest doctor`: check each part a nightly run depends on and give a clear verdict."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime

import httpx
import yaml

from . import render
from .arxiv import ArxivClient
from .config import Config
from .errors import DigestError
from .models import Author, Paper, Post, PostEntry, Texts
from .polite import PoliteHttp, RetryPolicy
from .probe import live_probe
from .store import Store
from .window import window_for


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None  # None: skipped
    detail: str

    @property
    def verdict(self) -> str:
        return {True: "ok", False: "FAIL", None: "skipped"}[self.ok]


def _sample_post(config: Config) -> Post:
    when = datetime(2026, 1, 14, 12, tzinfo=UTC)
    paper = Paper(
        arxiv_id="2601.00001",
        version=1,
        entry_id="http://arxiv.org/abs/2601.00001v1",
        title='A {{ hostile }} <b>"title"</b>: with $x_1$',
        summary="An abstract & more.",
        authors=(Author("Zoë Example"),),
        published=when,
        updated=when,
        primary_category="cs.SD",
        categories=("cs.SD",),
        abs_url="https://arxiv.org/abs/2601.00001v1",
        pdf_url="https://arxiv.org/pdf/2601.00001v1",
    )
    window = window_for(date(2026, 1, 15), config.window.timezone, config.window.anchor)
    return Post(
        window,
        config.window.timezone,
        "CST",
        "CST",
        config.window.anchor,
        config.arxiv.categories,
        1,
        (PostEntry(paper, Texts("译文。", "1)  \n- a\n\n2)  \n- b\n\n3)  \n- c")),),
    )


def check_templates(config: Config) -> Check:
    env = render.environment(config.site.templates_dir)
    text = render.render_post(_sample_post(config), env)
    front = yaml.safe_load(text.split("---\n")[1])
    if not isinstance(front, dict) or "title" not in front:
        return Check("templates", False, "post.md.j2 does not produce front matter with a title")
    for name in ("prompts/translate.j2", "prompts/explain.j2", "prompts/page.j2"):
        blocks = env.get_template(name).blocks
        if not {"system", "user"} <= set(blocks):
            return Check("templates", False, f"{name} needs blocks 'system' and 'user'")
    return Check("templates", True, "post.md.j2 renders valid front matter; prompts have system and user blocks")


def check_store(config: Config) -> Check:
    store = Store(config.store.path)
    try:
        verdict = store.db.execute("PRAGMA quick_check").fetchone()[0]
        version = store.db.execute("PRAGMA user_version").fetchone()[0]
        papers = store.db.execute("SELECT count(*) FROM papers").fetchone()[0]
        posts = store.db.execute("SELECT count(*) FROM posts").fetchone()[0]
        pending = store.pending_count()
    finally:
        store.close()
    if verdict != "ok":
        return Check("store", False, f"{config.store.path}: integrity check says {verdict}")
    return Check(
        "store", True, f"{config.store.path}: schema v{version}, {papers} papers, {posts} posts, {pending} pending"
    )


def check_posts_dir(config: Config) -> Check:
    folder = config.site.posts_dir
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".doctor-"):
        pass
    return Check("posts", True, f"{folder} is writable")


def check_arxiv(config: Config) -> Check:
    cfg = config.arxiv
    client = httpx.Client(headers={"User-Agent": cfg.user_agent}, timeout=cfg.timeout, trust_env=False)
    with client:
        http = PoliteHttp(client, interval=0, policy=RetryPolicy(0, 0, 0))
        batch = next(ArxivClient(http, cfg.api_url, 1).batches(f"cat:{cfg.categories[0]}"))
    return Check("arXiv", True, f"{cfg.api_url} answers ({batch.total_results} papers in {cfg.categories[0]})")


def check_llm(config: Config) -> Check:
    cfg = config.llm
    if not config.llm_enabled:
        why = "llm.provider is none" if cfg.provider == "none" else f"${cfg.api_key_env} is not set"
        return Check("LLM", None, f"{why}: papers stay pending with their English abstracts")
    serves, detail = live_probe(config)
    return Check("LLM", serves, detail)


def run_checks(config: Config) -> Iterator[Check]:
    steps: list[tuple[str, Callable[[Config], Check]]] = [
        ("templates", check_templates),
        ("store", check_store),
        ("posts", check_posts_dir),
        ("arXiv", check_arxiv),
        ("LLM", check_llm),
    ]
    for name, step in steps:
        try:
            yield step(config)
        except (DigestError, OSError, httpx.HTTPError, ValueError, yaml.YAMLError) as exc:
            yield Check(name, False, str(exc) or type(exc).__name__)
