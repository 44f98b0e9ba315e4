"""Golden tests against the reference posts, hostile text staying inert, and typed front matter."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import replace
from datetime import UTC, datetime

import pyromark
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arxiv_digest import render
from arxiv_digest.models import Author, Paper, PostEntry, Texts
from arxiv_digest.postformat import PENDING_LINE, apply_liquid_raw

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


TEMPLATE_HTML = ["<details>\n", "<summary>详细解读</summary>\n", '<div markdown="1">\n', "</div>\n", "</details>\n"]


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
    _, front, body = text.split("---\n", 2)
    assert yaml.safe_load(front) == {
        "layout": "post",
        "title": "arXiv Daily – 2025-10-31",
        "tags": ["arxiv", "cs.SD", "eess.AS"],
    }
    # CommonMark finds no HTML but the template's own, and no link but the template's
    events = list(pyromark.events(apply_liquid_raw(body)))
    assert [e.get("Html") for e in events if isinstance(e, dict) and "Html" in e] == TEMPLATE_HTML
    assert not [e for e in events if isinstance(e, dict) and "InlineHtml" in e]
    links = [e["Start"]["Link"]["dest_url"] for e in events if isinstance(e, dict) and "Link" in str(e.get("Start"))]
    assert all(url.startswith("https://arxiv.org/") for url in links)
    # Liquid: the only `{{` / `{%` left are the raw tags' own
    assert "{{" not in text.replace("{% raw %}{{% endraw %}", "") and "{%" not in text.replace(
        "{% raw %}{{% endraw %}", ""
    )
    assert "`<keep>`" in text and "&lt;script&gt;" in text  # code shown as code, HTML as text
    assert "\\|a\\|" in text and "C\\#" in text and "\\#1." in text
    assert PENDING_LINE in text and text.count("<details>") == 1


# YAML 1.1 scalars that are not strings (Psych and PyYAML), and strings that break plain YAML
YAML_TRAPS = [
    *("null", "Null", "NULL", "~", "", "true", "True", "yes", "Yes", "on", "ON", "off", "no", "No", "y", "n"),
    *("2025", "1.5", "1:20", "190:20:30", "2025-01-01", "2001-12-14t21:59:43.10-05:00", "0x1F", "0o17", "0b101"),
    *("017", "1e3", "1_000", "1,000", "+1", "-1", ".5", ".nan", ".NaN", ".inf", "-.inf", "-", "=", "<<", ":sym"),
    *("a: b", "- x", "#c", "{{ y }}", "[a]", "{a}", "it's", '"q"', "\\", "&a", "*a", "!tag", "%x", "@x", "`t`"),
    *("cs.SD", "eess.AS", "arxiv", "a b", " lead", "trail ", "a\nb", "\t", "\u2028", "\x85", "\ufeff", "\x7f"),
    *("\x9b", "\x00", "语音处理", "é", "NaN", "Infinity", "null ", "yes.", "cs..SD", "a-", "_a"),
]
PSYCH = """
require "yaml"; require "json"; require "date"
docs = JSON.parse(STDIN.read)
typed = lambda { |v| v.is_a?(String) ? v : {"not a string" => v.inspect} }
puts JSON.generate(docs.map { |doc|
  # what Jekyll does with front matter (Jekyll::Utils.safe_load_yaml)
  data = Psych.safe_load(doc, permitted_classes: [Date, Time], aliases: true)
  data.transform_values { |v| v.is_a?(Array) ? v.map(&typed) : typed.(v) }
})
"""


def front_matter(values: list[str]) -> str:
    scalars = "".join(f"s{n}: {render.yaml_str(value)}\n" for n, value in enumerate(values))
    return f"{scalars}tags: {render.yaml_list(values)}\n"


def expected(values: list[str]) -> dict[str, object]:
    return {**{f"s{n}": value for n, value in enumerate(values)}, "tags": values}


def psych(documents: list[str]) -> list[object]:
    done = subprocess.run(
        ["ruby", "-e", PSYCH], input=json.dumps(documents), capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def test_front_matter_strings_stay_strings_under_pyyaml() -> None:
    assert yaml.safe_load(front_matter(YAML_TRAPS)) == expected(YAML_TRAPS)
    assert render.yaml_list(["arxiv", "cs.SD", "eess.AS"]) == "[arxiv, cs.SD, eess.AS]"  # the reference's bytes
    assert render.yaml_list(["null", "2025", "1:20", "yes", "cs.SD"]) == '["null", "2025", "1:20", "yes", cs.SD]'


@pytest.mark.skipif(shutil.which("ruby") is None, reason="ruby is not installed")
@settings(max_examples=4, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.text() | st.sampled_from(YAML_TRAPS), max_size=60), min_size=20, max_size=20))
def test_front_matter_strings_stay_strings_under_psych(batches: list[list[str]]) -> None:
    """Jekyll reads front matter with Psych (YAML 1.1): every string, quoted or plain, reads back as
    itself; one ruby process per batch of documents."""
    documents = [front_matter(values) for values in [YAML_TRAPS, *batches]]
    assert psych(documents) == [expected(values) for values in [YAML_TRAPS, *batches]]
    assert [yaml.safe_load(d) for d in documents] == [expected(values) for values in [YAML_TRAPS, *batches]]


def test_user_template_overrides_packaged_one(tmp_path) -> None:
    (tmp_path / "post.md.j2").write_text("custom {{ post.entries | length }}\n")
    post, _ = reference_post("daily-post-2025-10-31.md")
    assert render.render_post(post, render.environment(tmp_path)) == "custom 2\n"
