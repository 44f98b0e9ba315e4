"""Posts as text: the posts' Jinja environment, with thin filters over ``safe_markdown`` (the one way
untrusted text reaches a post) and typed YAML front matter."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import jinja2
import yaml

from . import postformat, safe_markdown, templating
from .errors import RenderError
from .models import PaperPage, Post

YAML_PLAIN = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:[.-][A-Za-z0-9_]+)*")
YAML_1_1_WORDS = frozenset({"y", "n", "yes", "no", "true", "false", "on", "off", "null"})
YAML_ESCAPE = re.compile("[\x7f-\x9f\u2028\u2029\ud800-\udfff\ufeff\ufffe\uffff]")


def local_time(moment: datetime, tz: str) -> str:
    return moment.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")


def environment(user_dir: Path | None = None) -> jinja2.Environment:
    """The posts' environment: a user's ``templates/`` overrides the packaged copy file by file."""
    env = templating.environment([user_dir] if user_dir else [], keep_trailing_newline=True)
    env.filters.update(
        md=md_inline,
        md_block=md_block,
        url=md_url,
        quote=md_quote,
        yaml_str=yaml_str,
        yaml_list=yaml_list,
    )
    env.filters["local"] = local_time
    env.globals.update(postformat.TEMPLATE_GLOBALS)
    env.globals["SUMMARY_OPEN"] = "<summary>"
    return env


def md_inline(text: str, heading: bool = False) -> str:
    """One line of arXiv text (or a page's title, class, reason) as literal Markdown."""
    return safe_markdown.plain(text, heading=heading)


def md_block(text: str) -> str:
    """A model answer: paragraphs, lists, emphasis, code and maths kept, everything else literal."""
    return safe_markdown.markdown(text)


def md_url(value: str) -> str:
    """A link target: http(s) or a site path, percent-encoded; anything else becomes ``#``."""
    return safe_markdown.link_target(value)


def md_quote(text: str) -> str:
    """A Markdown blockquote, every line prefixed."""
    return "\n".join(f"> {line}" if line.strip() else ">" for line in str(text).split("\n"))


def yaml_str(value: str) -> str:
    """A double-quoted YAML scalar that Psych (Jekyll) and PyYAML read back as ``value``: JSON's escapes,
    plus ``\\uXXXX`` for what YAML 1.1 cannot hold unescaped (DEL, C1 controls, U+2028/9, BOM, ...)."""
    dumped = json.dumps(str(value), ensure_ascii=False)
    return YAML_ESCAPE.sub(lambda m: f"\\u{ord(m[0]):04x}", dumped)


def yaml_plain(value: str) -> bool:
    """Whether ``value`` can stay unquoted: an ASCII word with single ``.``/``-`` separators (``cs.SD``)
    that is no YAML 1.1 boolean or null and reads back as itself. Numbers, dates, times, ``~``, ``.nan``,
    ``:symbols`` and ``<<`` cannot match: they do not start with a letter."""
    return (
        YAML_PLAIN.fullmatch(value) is not None
        and value.lower() not in YAML_1_1_WORDS
        and yaml.safe_load(value) == value
    )


def yaml_list(values: Iterable[str]) -> str:
    """A YAML flow sequence of strings, plain where that is provably the same string."""
    return "[" + ", ".join(v if yaml_plain(v) else yaml_str(v) for v in map(str, values)) + "]"


def render_post(post: Post, env: jinja2.Environment, template: str = "post.md.j2") -> str:
    return render_template(env, template, post=post)


def render_page(page: PaperPage, env: jinja2.Environment, template: str = "paper.md.j2") -> str:
    return render_template(env, template, page=page)


def render_template(env: jinja2.Environment, template: str, **values: object) -> str:
    try:
        return env.get_template(template).render(**values)
    except jinja2.TemplateError as exc:
        where = f" ({exc.filename}:{exc.lineno})" if isinstance(exc, jinja2.TemplateSyntaxError) else ""
        raise RenderError(f"template {template}{where}: {exc.message or exc}") from None
