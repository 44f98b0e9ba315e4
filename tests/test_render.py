"""Golden tests against the reference posts, and hostile text staying inert."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
import yaml

from arxiv_digest import render
from arxiv_digest.models import Author, Paper, PostEntry, Texts
from arxiv_digest.postformat import PENDING_LINE

from .reference_posts import reference_post


@pytest.mark.parametrize("name", ["daily-post-2026-01-15.md", "daily-post-2025-10-31.md"])
def test_reference_posts_come_back_byte_for_byte(name: str) -> None:
    post, expected = reference_post(name)
    assert len(post.entries) == post.fetched  # the parser saw every block
    assert render.render_post(post, render.environment()) == expected


def _hostile_paper(**changes: object) -> Paper:
    base = Paper(
        arxiv_id="2601.00001",
        version=2,
        entry_id="http://arxiv.org/abs/2601.00001v2",
        title='{{ site }} {% include x %} <script>alert(1)</script> "quoted": a\\b $x_1$ |a| C#',
        summary="#1. <img src=x onerror=alert(1)> & &amp; {{ page.title }} --- $$ \\frac{a}{b} $$",
        authors=tuple(Author(f"Ñame Ø {i}") for i in range(133)),
        published=datetime(2026, 1, 14, 1, 0, tzinfo=UTC),
        updated=datetime(2026, 1, 14, 1, 0, tzinfo=UTC),
        primary_category="cs.SD",
        categories=("cs.SD", "eess.AS"),
        abs_url="https://arxiv.org/abs/2601.00001v2",
        pdf_url="https://arxiv.org/pdf/2601.00001v2",
    )
    return replace(base, **changes)


def test_hostile_text_is_inert_markdown_and_liquid() -> None:
    post, _ = reference_post("daily-post-2025-10-31.md")
    explainer = "1)  \n- **背景**：<script>x</script> `<keep>` {% endraw %}\n\n2)  \n- b\n\n3)  \n- c"
    post = replace(
        post,
        entries=(
            PostEntry(_hostile_paper(), Texts(None, None)),
            PostEntry(_hostile_paper(arxiv_id="2601.00002"), Texts("译文 {{ x }}", explainer)),
        ),
    )
    text = render.render_post(post, render.environment())
    front = yaml.safe_load(text.split("---\n")[1])
    assert front == {
        "layout": "post",
        "title": "arXiv Daily – 2025-10-31",
        "tags": ["arxiv", "cs.SD", "eess.AS"],
    }
    assert "<script>" not in text and "<img" not in text
    assert "`<keep>`" in text  # code spans are literal already
    # Liquid: every `{{` / `{%` from the data is behind a raw tag
    stripped = text.replace("{% raw %}{{% endraw %}", "")
    assert "{{" not in stripped and "{%" not in stripped
    assert "&#124;a&#124;" in text and "C\\#" in text and "\\#1." in text
    assert PENDING_LINE in text and text.count("<details>") == 1


def test_yaml_filters_quote_anything() -> None:
    for value in ['a: "b"', "- x", "{{ y }}", "it's", "\\", "#c"]:
        assert yaml.safe_load(f"k: {render.yaml_str(value)}") == {"k": value}
    assert yaml.safe_load(f"k: {render.yaml_list(['cs.SD', 'a: b', 'x,y'])}") == {"k": ["cs.SD", "a: b", "x,y"]}


def test_user_template_overrides_packaged_one(tmp_path) -> None:
    (tmp_path / "post.md.j2").write_text("custom {{ post.entries | length }}\n")
    post, _ = reference_post("daily-post-2025-10-31.md")
    assert render.render_post(post, render.environment(tmp_path)) == "custom 2\n"
