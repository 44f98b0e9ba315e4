"""`arxiv-digest doctor`: check each part a nightly run depends on and give a clear verdict.

``preflight`` is the offline part of it that every ``run``/``generate`` does first, so a broken
template or an unwritable folder is reported before a request or a token is spent.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import jinja2
import yaml

from . import render, templating
from .arxiv import ArxivClient
from .config import Config
from .errors import ConfigError, DigestError
from .models import Author, Paper, Post, PostEntry, Texts
from .polite import PoliteHttp, RetryPolicy, tls_context
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


PROMPTS = ("prompts/translate.j2", "prompts/explain.j2", "prompts/page.j2")


def _shown(path: str | None) -> str:
    """A template's file, relative to the working folder when it is inside it."""
    if not path:
        return "a template"
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


def _syntax_problem(exc: jinja2.TemplateSyntaxError) -> str:
    return f"{_shown(exc.filename or exc.name)}, line {exc.lineno}: {exc.message}"


def template_problems(config: Config, *, site: bool) -> list[str]:
    """Every post, page and prompt template compiles and every prompt has its ``system`` and ``user``
    blocks; with ``site``, every site template parses too. One line per problem, naming file and line."""
    problems = []
    env = render.environment(config.site.templates_dir)
    for name in env.list_templates(filter_func=lambda n: n.endswith(".j2") and not n.startswith("!default/")):
        try:
            blocks = env.get_template(name).blocks
        except jinja2.TemplateSyntaxError as exc:
            problems.append(_syntax_problem(exc))
            continue
        if name in PROMPTS and not {"system", "user"} <= set(blocks):
            missing = " and ".join(b for b in ("system", "user") if b not in blocks)
            source = _shown(env.loader.get_source(env, name)[1])  # type: ignore[union-attr]
            problems.append(f"{source}: a prompt needs a {{% block {missing} %}}; it has none")
    if site:
        site_env = templating.environment([config.site.templates_dir / "site"], "site")
        for name in site_env.list_templates(extensions=("html", "xml")):
            if name.startswith(("!default/", "static/")):
                continue
            source, filename, _ = site_env.loader.get_source(site_env, name)  # type: ignore[union-attr]
            try:
                site_env.parse(source, name, filename)  # parse only: the site adds its own filters
            except jinja2.TemplateSyntaxError as exc:
                problems.append(_syntax_problem(exc))
    return problems


def folder_problem(key: str, folder: Path) -> str | None:
    """Why files cannot be written in ``folder`` (created on first write if missing), or None."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "" if existing == folder else f"cannot create {folder}: "
        return f"{key}: {where}{existing} is a file, not a folder"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        return f"{key}: cannot write in {existing} ({exc.strerror})"
    return None


def preflight(config: Config) -> None:
    """Raise one ``ConfigError`` (exit 2) listing what would make a run fail before it spends anything:
    a template that does not compile, a prompt without its blocks, an unwritable folder."""
    folders = [("site.posts_dir", config.site.posts_dir), ("store.path", config.store.path.parent)]
    if config.pages.enabled and config.pages.dir:
        folders.append(("pages.dir", config.pages.dir))
    problems = template_problems(config, site=False)
    problems += [problem for key, folder in folders if (problem := folder_problem(key, folder))]
    if problems:
        raise ConfigError(problems, "cannot start")


def check_templates(config: Config) -> Check:
    problems = template_problems(config, site=True)
    if problems:
        return Check("templates", False, "; ".join(problems))
    env = render.environment(config.site.templates_dir)
    text = render.render_post(_sample_post(config), env)
    front = yaml.safe_load(text.split("---\n")[1])
    if not isinstance(front, dict) or "title" not in front:
        return Check("templates", False, "post.md.j2 does not produce front matter with a title")
    return Check(
        "templates", True, "post, page, prompt and site templates compile; post.md.j2 renders valid front matter"
    )


def check_store(config: Config) -> Check:
    store = Store(config.store.path, config.store.lock_wait)
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
    problem = folder_problem("site.posts_dir", folder)
    return Check("posts", problem is None, problem or f"{folder} is writable")


def check_arxiv(config: Config) -> Check:
    cfg = config.arxiv
    client = httpx.Client(
        headers={"User-Agent": cfg.user_agent}, timeout=cfg.timeout, trust_env=False, verify=tls_context()
    )
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
