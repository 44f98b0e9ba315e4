"""A post's page is rendered around a mark and its body's bytes put in the mark's place only where
that gives exactly the page Jinja renders with the body: whatever a user's templates do with
``content``, both ways give the same bytes. The templates that change it replace a word the mark
never holds, so only the analysis of the templates, not the mark's check, can keep them apart."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from arxiv_digest.site.manifest import SourceInfo
from arxiv_digest.site.templates import TEMPLATES, environment, render_around, template_dirs, template_facts

BODY = '<h2 id="a">Ünïcode 语音 <em>and</em> text</h2>\n<p>abc <a href="../x.html">link</a> $x^2$</p>\n'.encode()
POST = SourceInfo("2026-01-15-arxiv.md", "d", "Title", date(2026, 1, 15), "2026/01/15/arxiv.html", ("arxiv",))
SITE_GLOBALS = {"site": {"title": "T", "base_url": "", "search": True}, "asset_version": "v", "paper_pages": False}

# user templates (post.html, and what it loads) -> whether content is printed only as it is
VARIANTS: dict[str, tuple[dict[str, str], bool]] = {
    "packaged": ({}, True),
    "extends the packaged": ({"post.html": '{% extends "!default/post.html" %}'}, True),
    "own block": ({"post.html": '{% extends "base.html" %}{% block main %}<x>{{ content }}</x>{% endblock %}'}, True),
    "in a loop": ({"post.html": "{% for i in range(2) %}{{ content }}{% endfor %}"}, True),
    "never shown": ({"post.html": "{% if false %}{{ content }}{% endif %}none"}, True),
    "filtered": ({"post.html": '{{ content|replace("语音", "X") }}'}, False),
    "measured": ({"post.html": "{% if content|length > 5 %}long {% endif %}{{ content }}"}, False),
    "joined": ({"post.html": '{{ content ~ "!" }}'}, False),
    "filter block": ({"post.html": '{% filter replace("语音", "X") %}{{ content }}{% endfilter %}'}, False),
    "set block": ({"post.html": '{% set x %}{{ content }}{% endset %}{{ x|replace("语音", "X") }}'}, False),
    "macro": ({"post.html": '{% macro m() %}{{ content }}{% endmacro %}{{ m()|replace("语音", "X") }}'}, False),
    "block filtered by self": (
        {"post.html": '{% block b %}{{ content }}{% endblock %}{{ self.b()|replace("语音", "X") }}'},
        False,
    ),
    "block filtered by its parent": (
        {
            "base.html": '{% filter replace("语音", "X") %}{% block main %}{% endblock %}{% endfilter %}',
            "post.html": '{% extends "base.html" %}{% block main %}{{ content }}{% endblock %}',
        },
        False,
    ),
    "super filtered": (
        {
            "base.html": "{% block main %}{{ content }}{% endblock %}",
            "post.html": '{% extends "base.html" %}{% block main %}{{ super()|replace("语音", "X") }}{% endblock %}',
        },
        False,
    ),
    "recursive loop filtered": (
        {
            "post.html": "{% for x in [1] recursive %}{% if x == 2 %}{{ content }}{% else %}"
            '{{ loop([2])|replace("语音", "X") }}{% endif %}{% endfor %}'
        },
        False,
    ),
    "include filtered": (
        {
            "part.html": "{{ content }}",
            "post.html": '{% filter replace("语音", "X") %}{% include "part.html" %}{% endfilter %}',
        },
        False,
    ),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_page_rendered_around_its_body_is_the_page_rendered_with_it(tmp_path: Path, variant: str) -> None:
    files, verbatim = VARIANTS[variant]
    mine = tmp_path / "templates"
    mine.mkdir()
    for name, source in files.items():
        (mine / name).write_text(source, encoding="utf-8")
    env = environment(template_dirs((mine,)), SITE_GLOBALS, tmp_path / "compiled")
    facts = template_facts(env, TEMPLATES, tmp_path / "references.json")
    assert ("post.html" in facts.verbatim) is verbatim

    context = {"post": POST, "newer": None, "older": None, "head_title": POST.title}
    around = render_around(env, "post.html", POST.url, BODY, "post.html" in facts.verbatim, **context)
    rendered = render_around(env, "post.html", POST.url, BODY, False, **context)
    assert around == rendered
    if variant == "packaged":
        assert BODY in around

    kept = template_facts(env, TEMPLATES, tmp_path / "references.json")  # from the kept file, unparsed
    assert kept == facts
