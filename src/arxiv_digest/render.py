"""Posts as text: the posts' Jinja environment and the escaping filters that keep arXiv/LLM text
inert under Markdown and Jekyll's Liquid."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2

from . import templating
from .errors import RenderError
from .models import PaperPage, Post

CODE_SPAN = re.compile(r"(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.DOTALL)
ENTITY_LIKE = re.compile(r"&(?=#\d+;|#[xX][0-9a-fA-F]+;|[A-Za-z][A-Za-z0-9]*;)")
LIQUID_OPENER = re.compile(r"\{(?=[{%])")
SAFE_TARGET = r"(?!\s*(?:https?://|/(?!/)|#))"
UNSAFE_INLINE_LINK = re.compile(r"(\]\(\s*)" + SAFE_TARGET + r"[^)]*\)")
UNSAFE_REFERENCE = re.compile(r"^(\s{0,3}\[[^\]]+\]:\s*)" + SAFE_TARGET + r"\S+", re.MULTILINE)
YAML_PLAIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
BLOCK_START = re.compile(r"^(\s*)(#|[-+*=](?=\s|$)|\d+[.)](?=\s|$))")


PENDING_LINE = "（中文译文待生成，暂显示英文摘要。）"
UNAVAILABLE_LINE = "（中文译文暂不可用：模型多次未能生成有效译文，显示英文摘要。）"


def local_time(moment: datetime, tz: str) -> str:
    return moment.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")


def environment(user_dir: Path | None = None) -> jinja2.Environment:
    """The posts' environment: a user's ``templates/`` overrides the packaged copy file by file."""
    env = templating.environment([user_dir] if user_dir else [], keep_trailing_newline=True)
    env.filters.update(
        md=md_inline,
        md_block=md_block,
        url=md_url,
        yaml_str=yaml_str,
        yaml_list=yaml_list,
        code=md_code,
        quote=md_quote,
    )
    env.filters["local"] = local_time
    env.globals["PENDING_LINE"] = PENDING_LINE
    env.globals["UNAVAILABLE_LINE"] = UNAVAILABLE_LINE
    env.globals["SUMMARY_OPEN"] = "<summary>"
    return env


def protect_liquid(text: str) -> str:
    """Jekyll runs Liquid over posts; wrap each ``{`` that opens ``{{`` or ``{%`` in a raw tag."""
    return LIQUID_OPENER.sub("{% raw %}{{% endraw %}", text)


def _escape_html(text: str) -> str:
    """No raw HTML, and no kramdown attribute lists or extensions (``{: onclick=...}``, ``{::...}``)."""
    escaped = ENTITY_LIKE.sub("&amp;", text).replace("<", "&lt;").replace(">", "&gt;")
    return escaped.replace("{:", "\\{:")


def _safe_links(text: str) -> str:
    """Markdown links and reference definitions may only point at http(s), a site path or an anchor."""
    text = UNSAFE_INLINE_LINK.sub(r"\1#)", text)
    return UNSAFE_REFERENCE.sub(r"\1#", text)


def _inert(text: str) -> str:
    """Text outside code spans, made inert for HTML, kramdown and link targets."""
    return _safe_links(_escape_html(text))


def _outside_code(text: str, transform: Any) -> str:
    """Apply ``transform`` to the parts of ``text`` that are not Markdown code spans."""
    parts, last = [], 0
    for match in CODE_SPAN.finditer(text):
        parts.append(transform(text[last : match.start()]))
        parts.append(match.group(0))
        last = match.end()
    parts.append(transform(text[last:]))
    return "".join(parts)


def md_inline(text: str, heading: bool = False) -> str:
    """One line of arXiv text as literal Markdown: no HTML, no tables, no block syntax."""
    text = " ".join(str(text).split())
    text = _outside_code(text, lambda part: _inert(part).replace("|", "&#124;"))
    text = BLOCK_START.sub(r"\1\\\2", text)
    if heading and text.endswith("#"):
        text = text[:-1] + "\\#"
    return protect_liquid(text)


def md_block(text: str) -> str:
    """Multi-line LLM Markdown: its structure is kept, raw HTML and Liquid are neutralised."""
    return protect_liquid(_outside_code(str(text).strip("\n"), _inert))


def md_code(text: str) -> str:
    """Text between the template's backticks: it must not bring backticks of its own."""
    return str(text).replace("`", "'")


def md_quote(text: str) -> str:
    """A Markdown blockquote, every line prefixed."""
    return "\n".join(f"> {line}" if line.strip() else ">" for line in str(text).split("\n"))


def md_url(value: str) -> str:
    """A link target: only http(s) or a site path survives; characters that would end the link are encoded."""
    value = str(value).strip()
    if not re.match(r"^(https?://|/(?!/))", value):
        return "#"
    return protect_liquid(value.replace(" ", "%20").replace("(", "%28").replace(")", "%29").replace("<", "%3C"))


def yaml_str(value: str) -> str:
    """A double-quoted YAML scalar (JSON strings are valid YAML)."""
    return json.dumps(str(value), ensure_ascii=False)


def yaml_list(values: Iterable[str]) -> str:
    return "[" + ", ".join(v if YAML_PLAIN.match(v) else yaml_str(v) for v in values) + "]"


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


def post_quality(text: str) -> tuple[int, int, int]:
    """(papers, translated, explained) of a rendered post; a rewrite must not lower any of them."""
    papers = len(re.findall(r"^## (?!补录)", text, re.MULTILINE))
    pending = text.count(PENDING_LINE) + text.count(UNAVAILABLE_LINE)
    return papers, papers - pending, len(re.findall(r"<summary[^>]*>详细解读</summary>", text))
