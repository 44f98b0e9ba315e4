"""The site's Jinja templates: a user's folders first, the packaged ``templates/site`` behind them."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
from markupsafe import Markup, escape

from .. import templating
from ..files import write_atomic
from ..postformat import TEMPLATE_GLOBALS
from .listings import category_slug
from .manifest import PaperLink, digest
from .options import SiteError

TEMPLATES = (
    *("base.html", "_macros.html", "index.html", "post.html", "category.html", "categories.html"),
    *("archive.html", "search.html", "feed.xml", "paper.html", "topic.html", "topics.html"),
)
_LINK = re.compile(r"^(https?://|/(?!/))", re.I)


def template_dirs(user_dirs: Sequence[Path]) -> list[Path]:
    """``user_dirs`` that exist, then the packaged ``templates/site``."""
    try:
        return templating.search_path(user_dirs, "site")
    except FileNotFoundError as exc:
        raise SiteError(str(exc)) from None


def tree(dirs: Iterable[Path]) -> Iterator[tuple[Path, str]]:
    """Every file of the template folders (static files included) and its relative path."""
    for base in dirs:
        for path in sorted(base.rglob("*")):
            rel = path.relative_to(base).as_posix()
            if path.is_file() and not any(p.startswith(".") or p == "__pycache__" for p in rel.split("/")):
                yield path, rel


def link(target: str | None) -> str:
    """A link from a record (a paper's arXiv, PDF or page URL): http(s) or a site path, else ``#``."""
    return target if target and _LINK.match(target) else "#"


def paper_items(href: Markup, papers: Iterable[PaperLink]) -> Markup:
    """A post card's papers as ``<li>`` links to their headings (titles are sanitised HTML): in a
    Jinja loop each line cost 8 µs, and the listings of 1,000 posts have 300,000 of them."""
    lines = (
        f'    <li><a href="{href}#{escape(p.anchor)}">{p.title}</a></li>'
        if p.anchor
        else f'    <li><a href="{href}">{p.title}</a></li>'
        for p in papers
    )
    return Markup("\n".join(lines))


def environment(dirs: Sequence[Path], site_globals: dict[str, Any], compiled: Path) -> jinja2.Environment:
    """The site's templates; compiled ones are kept in ``compiled`` (by name and source checksum):
    compiling them took 0.2 s of every build, in the build process and again in each worker."""
    escape = jinja2.select_autoescape(["html", "xml"])
    env = templating.environment(dirs[:-1], "site", autoescape=escape, compiled=compiled)
    env.auto_reload = False  # one build renders thousands of files: no stat of the template for each
    env.globals.update(TEMPLATE_GLOBALS)
    env.globals.update(site_globals)
    env.filters["category_slug"] = category_slug
    env.filters["link"] = link
    env.globals["paper_items"] = paper_items
    return env


def compile_template(env: jinja2.Environment, template: str) -> jinja2.Template:
    try:
        return env.get_template(template)
    except jinja2.TemplateSyntaxError as exc:
        raise SiteError(f"template {exc.filename or exc.name}:{exc.lineno}: {exc.message}") from None


@dataclass(frozen=True)
class TemplateFacts:
    """What the build knows of its templates without rendering them."""

    digests: dict[str, str]  # each template's digest with every template it loads
    verbatim: frozenset[str]  # those that, with all they load, print ``content`` only as it is


def template_facts(env: jinja2.Environment, names: Iterable[str], kept: Path) -> TemplateFacts:
    """Each of ``names`` (and every template they load) with a digest of its source and of every
    template it loads (extends, include, import), transitively: an edit re-renders only the files
    that show it (``post.html`` only the posts, ``base.html`` no feed). A template that loads one by
    a computed name depends on them all. What each source loads, and whether it prints ``content``
    only verbatim (``_Parsed``), is kept in the file ``kept`` by the source's digest: parsing the
    templates again cost 0.1 s of every build."""
    try:
        known = json.loads(kept.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    used: dict[str, dict[str, Any]] = {}
    sources: dict[str, str | None] = {}
    loads: dict[str, set[str]] = {}
    computed: set[str] = set()
    plain: set[str] = set()
    waiting = list(names)
    while waiting:
        name = waiting.pop()
        if name in sources:
            continue
        source = _source(env, name)
        sources[name] = source
        if source is None:  # ``include ... ignore missing``: adding it later changes the digest
            loads[name] = set()
            plain.add(name)
            continue
        source_digest = digest(source)
        found = _Parsed.from_json(known.get(source_digest)) or _parse(env, name, source, source_digest)
        used[source_digest] = found.to_json()
        if None in found.loads:
            computed.add(name)
        if found.verbatim:
            plain.add(name)
        loads[name] = {ref for ref in found.loads if ref is not None}
        waiting += loads[name]

    def closure(name: str) -> set[str]:
        seen, todo = set(), [name]
        while todo:
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                todo += loads[current]
        return seen

    if used != known:
        write_atomic(kept, json.dumps(used), durable=False)
    every = ""
    if computed:
        templates = [n for n in env.list_templates() if not n.removeprefix("!default/").startswith("static/")]
        every = digest(sorted((n, _source(env, n)) for n in templates))
    digests = {
        name: every if closure(name) & computed else digest(sorted((n, sources[n]) for n in closure(name)))
        for name in sources
    }
    verbatim = frozenset(name for name in sources if not closure(name) & computed and closure(name) <= plain)
    return TemplateFacts(digests, verbatim)


@dataclass(frozen=True)
class _Parsed:
    """What a template's source loads (None for a computed name), and whether it prints ``content``
    only verbatim: as ``{{ content }}``, in nothing but blocks, conditions, (non-recursive) loops and ``with``, and
    with no ``self`` or ``super()``, through which a block's output can be filtered. Then a page can
    be rendered around a mark and the body's bytes put in its place (``render_around``)."""

    loads: tuple[str | None, ...]
    verbatim: bool

    @classmethod
    def from_json(cls, value: Any) -> _Parsed | None:
        """The kept facts of a source, None when there are none (or they are not as written)."""
        loads = value.get("loads") if isinstance(value, dict) else None
        if isinstance(loads, list) and all(ref is None or isinstance(ref, str) for ref in loads):
            verbatim = value.get("verbatim")  # a dict: it has loads
            return cls(tuple(loads), verbatim) if isinstance(verbatim, bool) else None
        return None

    def to_json(self) -> dict[str, Any]:
        return {"loads": list(self.loads), "verbatim": self.verbatim}


_parsed: dict[str, _Parsed] = {}  # by source digest, for the process (serve builds again and again)
_PASS_THROUGH = (
    *(jinja2.nodes.Template, jinja2.nodes.Output, jinja2.nodes.Block, jinja2.nodes.If, jinja2.nodes.For),
    jinja2.nodes.With,
)


def _parse(env: jinja2.Environment, name: str, source: str, source_digest: str) -> _Parsed:
    if source_digest not in _parsed:
        try:
            tree = env.parse(source)
        except jinja2.TemplateSyntaxError as exc:
            raise SiteError(f"template {exc.filename or name}:{exc.lineno}: {exc.message}") from None
        loads = tuple(jinja2.meta.find_referenced_templates(tree))
        _parsed[source_digest] = _Parsed(loads, _prints_verbatim(tree, "content", through=True))
    return _parsed[source_digest]


def _passes_through(node: jinja2.nodes.Node) -> bool:
    """Whether what is printed inside ``node`` reaches the output unchanged (not so in a recursive
    loop, whose ``loop()`` output can be filtered)."""
    if isinstance(node, jinja2.nodes.For):
        return not node.recursive
    return isinstance(node, _PASS_THROUGH)


def _prints_verbatim(node: jinja2.nodes.Node, variable: str, through: bool) -> bool:
    """Whether ``variable`` appears under ``node`` only printed as it is. ``through``: ``node`` and
    every node above it pass their output on unchanged; below a node that does not (a filter block,
    a macro, ``set`` of a block), no ``variable`` may appear, and no block or include that could
    print it."""
    for child in node.iter_child_nodes():
        if isinstance(child, jinja2.nodes.Name) and child.name in (variable, "self", "super"):
            safe = child.name == variable and through and isinstance(node, jinja2.nodes.Output)
        elif isinstance(child, (jinja2.nodes.Block, jinja2.nodes.Include)) and not through:
            safe = False
        else:
            safe = _prints_verbatim(child, variable, through and _passes_through(child))
        if not safe:
            return False
    return True


def _source(env: jinja2.Environment, name: str) -> str | None:
    """A template's source, None when there is none."""
    try:
        return env.loader.get_source(env, name)[0]  # type: ignore[union-attr]  # the site's has a loader
    except jinja2.TemplateNotFound:
        return None
    except UnicodeDecodeError as exc:
        raise SiteError(f"template {name}: not UTF-8 ({exc.reason} at byte {exc.start})") from None


def render(env: jinja2.Environment, template: str, path: str, **context: Any) -> str:
    """Render with ``root``, the relative way back to the site root, so the site works from any folder."""
    template_object = compile_template(env, template)
    try:
        return template_object.render(root="../" * path.count("/"), path=path, **context)
    except jinja2.TemplateError as exc:
        raise SiteError(f"template {template} (for {path}): {exc.message or exc}") from None


_MARK = f"\x00{os.urandom(16).hex()}\x00"  # what a page is rendered around: no text can hold it
_MARK_UTF8 = _MARK.encode()


def render_around(
    env: jinja2.Environment, template: str, path: str, body: bytes, verbatim: bool, **context: Any
) -> bytes:
    """``template`` rendered with ``content``: the sanitised HTML ``body`` (UTF-8, as the build state
    keeps it), as UTF-8. Where the template prints ``content`` only verbatim (``verbatim``, from
    ``TemplateFacts``) and once, it is rendered around a mark, and the body's bytes take the mark's
    place: a post's 100 KB of mostly Chinese HTML cost 0.3 ms to decode and 0.3 ms to encode again,
    a third of rewriting a post after a template change."""
    if verbatim:
        page = render(env, template, path, content=Markup(_MARK), **context).encode()
        head, mark, tail = page.partition(_MARK_UTF8)
        if mark and _MARK_UTF8 not in tail:
            return b"".join((head, body, tail))
    return render(env, template, path, content=Markup(body.decode()), **context).encode()
