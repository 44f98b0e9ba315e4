"""safe_markdown: what is kept, what becomes visible text, and that kramdown (through real Jekyll) and
CommonMark (pulldown-cmark, the site's renderer) show the same text for code spans and maths."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import lxml.html
import pyromark
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arxiv_digest import safe_markdown
from arxiv_digest.postformat import apply_liquid_raw
from arxiv_digest.safe_markdown import link_target, markdown, plain
from arxiv_digest.site.markdown import convert

from .reference_posts import reference_post
from .site_support import text
from .test_fuzz_kramdown import examples
from .test_site_jekyll import CURLY_QUOTES, jekyll_fragments

PWNED = "document.title='PWNED'"


def reference_answers() -> list[str]:
    texts = []
    for name in ("daily-post-2026-01-15.md", "daily-post-2025-10-31.md"):
        post, _ = reference_post(name)
        texts += [text for entry in post.entries for text in (entry.texts.translation, entry.texts.explainer)]
    return texts


@pytest.mark.parametrize(
    "answer",
    [
        *reference_answers(),
        "1)  \n- **研究背景**：基于MERT_330与wav2vec_2的模型，误差降低2~6 dB（约8.5%至12.3%）。  \n"
        "  - 嵌套：$x_{i}^{2}$ 与 $\\alpha_1$，代码 `<rewrite>` 与 `{<a>, <b>}`\n\n2)  \n- *斜体* 与 **粗体**",
        "1. 第一\n2. 第二\n   - 嵌套\n\n段落  \n换行，见 https://github.com/a/b_c 与 $$\\frac{a}{b}$$",
    ],
)
def test_normal_answers_are_written_back_unchanged(answer: str) -> None:
    assert markdown(answer) == answer


@pytest.mark.parametrize(
    ("answer", "written"),
    [
        # raw HTML, comments, injected template tags
        (f"a <script>{PWNED}</script> b", f"a &lt;script&gt;{PWNED}&lt;/script&gt; b"),
        (
            "<details>\n<summary>x</summary>\n</details>",
            "&lt;details&gt;  \n&lt;summary&gt;x&lt;/summary&gt;  \n&lt;/details&gt;",
        ),
        ("</div></details>", "&lt;/div&gt;&lt;/details&gt;"),
        ("<!-- c -->", "&lt;!-- c --&gt;"),
        # links, images, reference definitions, footnotes, abbreviations: their source, as text
        (f"[点我](javascript:{PWNED})", f"\\[点我\\](javascript:{PWNED})"),
        ("![i](https://e.org/x.png)", "!\\[i\\](https://e.org/x.png)"),
        ("<https://e.org>", "&lt;https://e.org&gt;"),
        (f"[x][r]\n\n[r]: javascript:{PWNED}", f"\\[x\\]\\[r\\]\n\n\\[r\\]: javascript:{PWNED}"),
        (
            f"- a\n  - [x][r]\n\n        [r]: javascript:{PWNED}",
            f"- a\n  - \\[x\\]\\[r\\]\n\n    \\[r\\]: javascript:{PWNED}",
        ),
        ("[^1]\n\n[^1]: note", "\\[^1\\]\n\n\\[^1\\]: note"),
        ("*[HTML]: Hyper", "\\*\\[HTML\\]: Hyper"),
        # kramdown's attribute lists and extensions, Liquid
        ('**b**{: onclick="x"} {::comment}c{:/comment}', '**b**&#123;: onclick="x"} &#123;::comment}c&#123;:/comment}'),
        ("{{ site.title }} {% include x %}", "&#123;{ site.title }} &#123;% include x %}"),
        # block syntax: headings, setext underlines, quotes, fences, indented code, rules, tables
        ("# 标题 {#id}", "\\# 标题 &#123;#id}"),
        ("标题\n===", "标题  \n\\==="),
        ("> 引用\n> - 列表", "&gt; 引用  \n&gt; - 列表"),
        ("```html\n<b>\n\n</b>\n```", "&#96;&#96;&#96;html  \n&lt;b&gt;\n\n&lt;/b&gt;  \n&#96;&#96;&#96;"),
        ("    indented", "indented"),
        ("---\ntitle: x\n---", "\\---\n\ntitle: x  \n\\---"),
        ("a | b\n--|--\n1 | 2", "a \\| b\n\\--\\|--\n1 \\| 2"),
        # what kramdown alone reads as markup
        (": 定义", "\\: 定义"),
        ("^", "&#94;"),
        ("a\\\nb", "a  \nb"),  # CommonMark's hard break
        ("a\\\\\nb", "a&#92;\nb"),  # an escaped backslash; kramdown's GFM parser reads "\\\\" + newline as <br>
        ("~~删除~~", "&#126;~删除&#126;~"),
        # code spans: one representation both read alike, or the source as text
        ("\\`<b>x</b>`", "&#96;&lt;b&gt;x&lt;/b&gt;&#96;"),
        ("``<b>x</b>` `", "&#96;&#96;&lt;b&gt;x&lt;/b&gt;&#96; &#96;"),
        ("`a\n\n<b>`", "&#96;a\n\n&lt;b&gt;&#96;"),
        ("`` a`b ``", "`` a`b ``"),
        ("``` a``b ```", "&#96;&#96;&#96; a&#96;&#96;b &#96;&#96;&#96;"),
        ("`a|b`", "&#96;a\\|b&#96;"),
        # maths: kept as $…$ in a form both renderers show alike, or shown as its source
        ("$a<b$ 与 $x^*$", "$a&lt;b$ 与 $x^&#42;$"),
        ("$$a<b$$", "&#36;&#36;a&lt;b&#36;&#36;"),
        ("$a$$b$", "$a$&#36;b&#36;"),
        ("价格 $5 与 $10", "价格 &#36;5 与 &#36;10"),
        # "N)" is text for kramdown, after a list marker it is escaped
        ("1) 一\n- 2) 二", "1) 一\n- 2\\) 二"),
        # nested lists on one line cannot read as a rule
        ("- - - x", "- * - x"),
        ("- - - ", "\\- - -"),  # a rule, shown
    ],
)
def test_everything_outside_the_allow_list_is_visible_text(answer: str, written: str) -> None:
    assert markdown(answer) == written


def test_control_characters_are_shown_and_line_endings_are_line_endings() -> None:
    # a form feed or vertical tab after four spaces makes kramdown 2.4 loop forever
    assert markdown("a\r\nb\rc\n    \fx\v\x00\x1b\x7f\x85\u2028\u2029\x9b") == "a\nb\nc\n␌x␋␀␛␡␤␤␤\ufffd"
    assert plain("a\r\n  b\f\x00") == "a b␌␀"
    assert markdown("\ue000\ue001") == "\ufffd\ufffd"  # the parser's own stand-ins cannot be smuggled in


@pytest.mark.parametrize(
    ("text", "written"),
    [
        ("UniTok-Audio: A Unified Audio Generation Framework", "UniTok-Audio: A Unified Audio Generation Framework"),
        ("#1. <img src=x onerror=alert(1)> & &amp; C#", "\\#1. &lt;img src=x onerror=alert(1)&gt; & &amp;amp; C\\#"),
        (
            "- **not bold** [not](a link) `not code` |a|",
            "\\- \\*\\*not bold\\*\\* \\[not\\](a link) &#96;not code&#96; \\|a\\|",
        ),
        (
            "Rate $\\mathcal{O}(n_1)$ and $$x<y$$ cost $5",
            "Rate $\\mathcal{O}(n_1)$ and &#36;&#36;x&lt;y&#36;&#36; cost &#36;5",
        ),
        ("C:\\path\\to \\`x\\` \\\\", "C:\\path\\to &#92;&#96;x&#92;&#96; &#92;&#92;"),
        ("{{ site }} {% raw %} {: .c} {::comment}", "&#123;{ site }} &#123;% raw %} &#123;: .c} &#123;::comment}"),
        ("1) ok 2. ok", "1) ok 2. ok"),
        ("2025. A year", "2025\\. A year"),
        ("a_b 1_2 _c d_ 中_文", "a_b 1\\_2 \\_c d\\_ 中_文"),
    ],
)
def test_arxiv_metadata_is_plain_text(text: str, written: str) -> None:
    assert plain(text, heading=True) == written


def test_links_only_go_to_http_or_the_site() -> None:
    assert link_target("https://arxiv.org/abs/2601.00001v1") == "https://arxiv.org/abs/2601.00001v1"
    assert link_target("/papers/2601.00001/") == "/papers/2601.00001/"
    assert (
        link_target('https://e.org/a b(c)<d>{{x}}|"%zz') == "https://e.org/a%20b%28c%29%3Cd%3E%7B%7Bx%7D%7D%7C%22%25zz"
    )
    assert [link_target(u) for u in ("javascript:x", "//evil.org", "/\\evil.org", " data:x", "HTTP://x")] == ["#"] * 5


def test_nesting_is_bounded() -> None:
    deep = markdown("- " * 400 + "x")
    assert deep.count("\n") == 0 and deep.endswith("x")
    assert markdown("*" * 300 + "x" + "*" * 300).count("x") == 1


# --- properties over a grammar of hostile fragments ----------------------------------------------

FRAGMENTS = [
    *(f"<script>{PWNED}</script>", "\\`", "`", "``", "```", "`<b>`", "``<b>` `", "\n", "\n\n", "\r", "  \n", "\t"),
    *("[x][r]", "[r]: javascript:x", "[a](javascript:x)", "<javascript:x>", "{::comment}", "{: .c}", "{{ x }}"),
    *("{% raw %}", "<!--", "</div>", "<details>", "===", "---", "- ", "* ", "1. ", "1) ", "# ", "> ", "    "),
    *("$", "$$", "$x_1$", "$$a<b$$", "|", "~~", "^", ": ", "**", "*", "_", "\\", "&", "&lt;", "<", ">", "'"),
    *("MERT_330", "2~6", "中文", "**标签**：", "（ADT）", "  - ", "      - ", "\f", "\x00", "\u2028"),
]
HOSTILE = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=3), max_size=25).map("".join)
KEPT = {"Paragraph", "List", "Item", "Emphasis", "Strong"}
LEAVES = {"Text", "Code", "InlineMath", "DisplayMath", "SoftBreak", "HardBreak"}


def commonmark(text: str) -> list[object]:
    """What the site's parser sees in a written text (after Liquid, with ``1)`` as text as in kramdown)."""
    source = safe_markdown._neutralise(apply_liquid_raw(text))
    return list(pyromark.events(source, options=pyromark.Options.ENABLE_MATH))


def outside_allow_list(events: list[object]) -> list[str]:
    found = []
    for event in events:
        kind, value = (event, None) if isinstance(event, str) else next(iter(event.items()))
        if kind in ("Start", "End"):
            name = value if isinstance(value, str) else next(iter(value))
            found += [] if name in KEPT else [name]
        elif kind not in LEAVES:
            found.append(kind)
    return found


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(HOSTILE)
def test_written_answers_hold_only_allowed_markdown(answer: str) -> None:
    written = markdown(answer)
    assert outside_allow_list(commonmark(written)) == []
    # writing it again changes nothing a CommonMark reader sees
    again = markdown(apply_liquid_raw(written))
    assert commonmark(again) == commonmark(written)


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(HOSTILE)
def test_written_metadata_is_one_line_of_text(text: str) -> None:
    written = plain(text)
    assert "\n" not in written
    assert {next(iter(e)) if isinstance(e, dict) else e for e in commonmark(written)} <= {
        "Start",
        "End",
        "Text",
        "InlineMath",
        "DisplayMath",
    }
    assert outside_allow_list(commonmark(written)) == []


# --- one representation, the same text in kramdown and CommonMark --------------------------------

CODE = st.text(st.sampled_from("`` ` a<b>&$|{}%\\*_中\n"), min_size=1, max_size=12)
TEX = st.text(st.sampled_from("ab_^{}\\*<>&'\"-.|`~#:x1 "), min_size=1, max_size=12).filter(
    lambda t: t.strip() == t and "$" not in t
)
TYPOGRAPHY = {**CURLY_QUOTES, ord("–"): "--", ord("—"): "---", ord("…"): "..."}
KRAMDOWN_MATH = re.compile(r"\\\((.*?)\\\)|\\\[(.*?)\\\]", re.S)


def code_in_answer(code: str) -> str:
    """``code`` as a code span in a model answer: delimited by a longer backtick run, padded."""
    ticks = "`" * (max((len(run) for run in re.findall("`+", code)), default=0) + 1)
    return markdown(f"码 {ticks} {code} {ticks} 尾")


@pytest.mark.skipif(shutil.which("jekyll") is None, reason="jekyll is not installed")
def test_code_spans_and_maths_show_the_same_text_in_kramdown_and_commonmark(tmp_path: Path) -> None:
    """Code spans are written with one backtick (two, padded, around single backticks) or not at all;
    maths as ``$…$`` with character references; kramdown and the site read them alike (one Jekyll
    build over 200 drawn code contents and 200 TeX strings, inline and display)."""
    codes, texs = examples(CODE, 200), examples(TEX, 200)
    fragments = [code_in_answer(c) for c in codes]
    fragments += [plain(f"${t}$") for t in texs] + [plain(f"$${t}$$") for t in texs]
    built = jekyll_fragments(tmp_path, "markdown: kramdown\n", fragments)
    for fragment, kramdown in zip(fragments, built, strict=True):
        source = apply_liquid_raw(fragment)
        cmark = lxml.html.fromstring(f"<div>{pyromark.html(source)}</div>")
        site = lxml.html.fromstring(f"<div>{convert(source).html}</div>")
        assert [c.text_content() for c in kramdown.iter("code")] == [c.text_content() for c in cmark.iter("code")]
        kramdown_text = KRAMDOWN_MATH.sub(lambda m: f"$${m[1] or m[2]}$$", kramdown.text_content())
        if not fragment.startswith("$"):  # not maths: kramdown typesets quotes and dashes, as in any text
            kramdown_text = kramdown_text.translate(TYPOGRAPHY)
        assert "".join(kramdown_text.split()) == visible(site), fragment


def visible(element: lxml.html.HtmlElement) -> str:
    """What the site shows, without whitespace; a formula (MathML) as its TeX between dollars."""
    return "".join(text(element).split())
