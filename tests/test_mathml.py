"""TeX -> MathML for the site: typical formulas convert, what cannot be shown faithfully stays TeX
source, and the site's sanitiser keeps the MathML while nothing executable gets through."""

from __future__ import annotations

import json
import re
from pathlib import Path

import lxml.html
import nh3
import pytest

from arxiv_digest.mathml import MATHML_ATTRIBUTES, MATHML_TAGS, math_html, tex_to_mathml

LISTINGS = Path(__file__).parent / "fixtures" / "listings" / "cs.SD-eess.AS-2025-05-to-09.json"
MATHS = re.compile(  # the site's maths spans: $…$ and $$…$$
    r"\$\$(?P<display>(?:(?!\n[ \t]*\n)[^$])+?)\$\$|(?<![\\$])\$(?P<inline>[^\s$](?:[^$\n]*?[^\s$\\])?)\$(?![\d$])"
)
CLEANER = nh3.Cleaner(  # the site's tags for post bodies plus the MathML allow-list
    tags={"p", "span", "a", "img", "strong"} | MATHML_TAGS,
    attributes={"a": {"href"}} | {tag: set(names) for tag, names in MATHML_ATTRIBUTES.items()},
    allowed_classes={"span": {"math", "display"}},
    url_schemes={"http", "https"},
)


def elements(fragment: str) -> list[tuple[str, dict[str, str]]]:
    return [(e.tag, dict(e.attrib)) for e in lxml.html.fragment_fromstring(fragment, create_parent="div").iter()]


@pytest.mark.parametrize(
    ("tex", "expected"),
    [
        ("h_i", "<msub><mi>h</mi><mi>i</mi></msub>"),
        (r"\alpha \in (0,1)", "<mi>α</mi><mo>∈</mo>"),
        (r"36.61\%", "<mn>36.61</mn><mi>%</mi>"),
        (r"\mathbb{R}^n", "<msup><mi>ℝ</mi><mi>n</mi></msup>"),
        (r"\frac{a}{b}", "<mfrac><mrow><mi>a</mi></mrow><mrow><mi>b</mi></mrow></mfrac>"),
        (r"\textbf{MagiCodec}", '<mtext mathvariant="bold">MagiCodec</mtext>'),
    ],
)
def test_typical_formulas_become_mathml(tex: str, expected: str) -> None:
    out = math_html(tex)
    assert out.startswith('<span class="math"><math xmlns="http://www.w3.org/1998/Math/MathML" display="inline">')
    assert expected in out
    assert f'<annotation encoding="application/x-tex">{tex}</annotation>' in out.replace("&amp;", "&")


def test_display_maths_is_marked_as_such() -> None:
    assert math_html("x^2", display=True).startswith('<span class="math display"><math xmlns=')
    assert 'display="block"' in math_html("x^2", display=True)


@pytest.mark.parametrize(
    "tex",
    [
        "18% and 54",  # a bare % is a TeX comment: the converter would drop the rest
        r"\cite{smith}",  # an unknown command would be left as text
        r"\href{javascript:alert(1)}{here}",  # href is not allowed
        r"\style{color:red}{x}",
        r"\color{red}{x}",
        r"\text{a < b}",  # copied through unescaped: not well-formed
        r"\text{<img src=x onerror=alert(1)>}",
        r"\def\x{y}",  # converts to nothing
        "x^{",  # raises
    ],
)
def test_what_cannot_be_converted_stays_tex_source(tex: str) -> None:
    assert tex_to_mathml(tex) is None
    out = math_html(tex)
    assert out.startswith('<span class="math">$') and "<math" not in out
    assert lxml.html.fragment_fromstring(out).text_content() == f"${tex}$"


def test_the_sanitiser_keeps_every_converted_formula_of_the_listings() -> None:
    papers = json.loads(LISTINGS.read_text(encoding="utf-8"))
    found = {
        (m["display"] or m["inline"], bool(m["display"]))
        for p in papers
        for f in ("title", "abstract")
        for m in MATHS.finditer(p[f])
    }
    converted = [math_html(tex, display) for tex, display in found if tex_to_mathml(tex, display)]
    assert len(found) == 104 and len(converted) == 100
    for fragment in converted:
        assert CLEANER.clean(fragment) == fragment


def test_the_sanitiser_drops_what_could_run_or_load() -> None:
    hostile = (
        '<span class="math"><math display="inline" onclick="alert(1)">'
        '<mrow href="javascript:alert(1)" style="color:red"><mi xlink:href="javascript:alert(1)">x</mi></mrow>'
        '<semantics><mi>y</mi><annotation-xml encoding="text/html"><img src=x onerror=alert(1)></annotation-xml>'
        '</semantics><maction actiontype="statusline"><mi>z</mi></maction><mglyph src="x.png"></mglyph></math></span>'
    )
    cleaned = CLEANER.clean(hostile)
    attributes = {name for _, attrs in elements(cleaned) for name in attrs}
    assert attributes == {"class", "display"}
    assert {tag for tag, _ in elements(cleaned)} == {"div", "span", "math", "mrow", "mi", "semantics"}
    assert "onerror" not in cleaned and "img" not in cleaned
