"""Tests for arxiv_digest.fulltext_extract against stored arXiv HTML captures and tiny PDFs.

The HTML fixtures are byte-identical copies of the shared fixtures/fulltext folder (see the
MANIFEST there): one 2026-template page (2508.08468v6) and one ar5iv-template page
(2501.11120v1).  Everything runs offline.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arxiv_digest.fulltext_extract import TRIM_MARKER, latexml_text, pdf_text, trim_for_llm

FIXTURES = Path(__file__).parent / "fixtures" / "fulltext"
AVSE = "2508.08468v6_av_speech_enhancement.html"  # 2026 template, display equations
TELL = "2501.11120v1_tell_me_about_yourself.html"  # ar5iv template, appendices
SHA256 = {
    AVSE: "119c870cfae07489f267b0c752c593bba16d36dee1870c5b573ed1a1ee238387",
    TELL: "e29fc27ecf6a9132a611bea3f4d9c09fddd8daa247bd5bb2a60707b86d0dd141",
}


def _raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@pytest.fixture(scope="module")
def avse() -> str:
    text = latexml_text(_raw(AVSE))
    assert text is not None
    return text


@pytest.fixture(scope="module")
def tell() -> str:
    text = latexml_text(_raw(TELL))
    assert text is not None
    return text


@pytest.mark.parametrize("name", [AVSE, TELL])
def test_fixtures_are_the_manifest_captures(name: str) -> None:
    assert hashlib.sha256(_raw(name)).hexdigest() == SHA256[name]


# ----------------------------------------------------------------------------- latexml_text


def test_avse_keeps_title_abstract_headings(avse: str) -> None:
    assert avse.startswith("# Audio-Visual Speech Enhancement: Architectural Design and Deployment")
    assert "## Abstract\n\nReal-time audio-visual speech enhancement (AVSE) is a key enabler" in avse
    assert "\n## I Introduction\n" in avse
    assert "\n### IV-A Model Architecture and Feature Fusion\n" in avse
    assert "\n## VI CONCLUSION\n" in avse
    assert "Index Terms: Audio-Visual Speech Enhancement, 5G Networks" in avse


def test_tell_keeps_title_abstract_headings(tell: str) -> None:
    assert tell.startswith("# Tell me about yourself: LLMs are aware of their learned behaviors\n\n")
    assert "## Abstract\n\nWe study behavioral self-awareness — an LLM’s ability" in tell
    assert "\n## 1 Introduction\n" in tell
    assert "\n### 3.1 Finetuning on multiple-choice responses (economic decisions)\n" in tell
    assert "\n#### 3.1.1 Design\n" in tell
    assert "\n##### Make Me Say rules\n" in tell  # \paragraph heading
    assert "\n## 8 Conclusion\n" in tell


def test_avse_maths_is_latex_not_mathml(avse: str) -> None:
    # display equations (ltx_equation tables) with their numbers, inline maths as $…$
    assert "\n$$y[n]=x[n]+d[n],$$ (1)\n" in avse
    assert r"$$\mathbf{z}_{t}^{(a)}=\mathcal{E}_{a}(\mathbf{a}_{t}),$$ (4)" in avse
    assert "where $x[n]$ denotes the clean target speech" in avse
    assert "𝐳" not in avse  # MathML presentation text of \mathbf{z}


def test_tell_inline_maths(tell: str) -> None:
    assert r"a latent policy $z\in Z$" in tell
    assert r"$D=\{d^{n}\}_{n=1}^{N}$" in tell
    assert "$$" not in tell  # the page has inline maths only


def test_captions_kept_with_labels(avse: str, tell: str) -> None:
    assert "\n\nFigure 1: Audio-Visual Speech Enhancement AI model architecture.\n\n" in avse
    assert "TABLE I: AVSE Multimedia Profile Configurations" in avse
    assert "(a) Average downlink throughput." in avse  # subfigure caption
    assert "\n\nFigure 6: Models can identify the codeword and their goals" in tell
    assert "Table 1: Overview of experiments for evaluating behavioral self-awareness." in tell
    assert "Refer to caption" not in tell  # image alt text


def test_list_items(avse: str) -> None:
    assert "Our contributions are as follows:\n\n- We present a real-world deployment" in avse
    assert "\n- We derive practical insights and design guidelines" in avse


def test_bibliography_dropped(avse: str, tell: str) -> None:
    # Strings that occur only in each page's reference list.
    assert "Looking to listen at the cocktail party" not in avse
    assert "chaotic encryption" not in avse
    assert "Cited by" not in avse
    assert "Physics of language models" not in tell
    assert "Knowledge of knowledge" not in tell
    # ... while the in-text citations stay.
    assert "with ultra-low latency and high bandwidth [4]." in avse
    assert "(Anthropic, 2024; OpenAI, 2024)" in tell


def test_appendix_and_acknowledgements_dropped(avse: str, tell: str) -> None:
    assert "JB conceived of the project" not in tell  # Appendix A
    assert "We evaluated backdoored models the same way as on Figure 8" not in tell  # Appendix B
    assert "Appendix" not in tell.split("\n## 8 Conclusion\n")[1]
    assert "Niels Warncke" not in tell  # acknowledgements section
    assert "EP/T021063/1" not in avse  # acknowledgements + author notes
    assert "Acknowledg" not in avse + tell


def test_chrome_and_footnote_noise_dropped(avse: str, tell: str) -> None:
    chrome = ["Report Issue", "Back to arXiv", "License: CC BY", "independent nonprofit", "Why HTML?"]
    chrome += ["Instructions for reporting errors", "Generated", "LaTeXML"]
    for phrase in chrome:
        assert phrase not in avse
        assert phrase not in tell
    assert "†" not in tell and "footnotetext" not in tell
    assert "jan.betley@gmail.com" not in tell  # author footnote
    # Footnote text is moved after its paragraph instead of splitting a sentence.
    assert "\n\nFootnote 1: We replicate some of our experiments on open-weight models" in tell


def test_whitespace_normalised(avse: str, tell: str) -> None:
    for text in (avse, tell):
        assert "\n\n\n" not in text
        assert "  " not in text
        assert text == text.strip()
        assert "\u200b" not in text


@pytest.mark.parametrize(
    "page",
    [
        b"<html><body><h1>Conversion to HTML had a Fatal error</h1></body></html>",
        b"<!DOCTYPE html><html><head><title>arXiv</title></head><body><p>No HTML for '2501.00001'.</p></body></html>",
        # LaTeXML shell without any converted paragraph (placeholder page)
        b'<html><body><div class="ltx_page_main"><article class="ltx_document">'
        b'<h1 class="ltx_title">Title</h1></article></div></body></html>',
        b"",
        b"   \n",
        bytes(range(256)) * 8,
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00\xff" * 100,
        b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n",
    ],
)
def test_not_a_latexml_conversion(page: bytes) -> None:
    assert latexml_text(page) is None


def test_minimal_latexml_structure() -> None:
    """Run-in titles, nested/description lists, align rows, listings, trailing sections."""
    html = (
        '<html><body><div class="ltx_page_main"><article class="ltx_document">'
        '<h1 class="ltx_title ltx_title_document">T</h1>'
        '<section class="ltx_section"><h2 class="ltx_title ltx_title_section">'
        '<span class="ltx_tag ltx_tag_section">1 </span>Method</h2>'
        '<div class="ltx_para"><p class="ltx_p">We align</p>'
        '<table class="ltx_equationgroup ltx_eqn_align ltx_eqn_table"><tbody>'
        '<tr class="ltx_equation ltx_eqn_row"><td class="ltx_eqn_cell">'
        '<math alttext="\\displaystyle a" display="inline"><mi>a</mi></math></td>'
        '<td class="ltx_eqn_cell"><math alttext="\\displaystyle=b" display="inline"><mi>b</mi></math></td>'
        '<td class="ltx_eqn_cell ltx_eqn_eqno"><span class="ltx_tag">(1)</span></td></tr>'
        "</tbody></table></div>"
        '<div class="ltx_theorem"><h6 class="ltx_title ltx_runin ltx_title_theorem">Theorem 1.</h6>'
        '<div class="ltx_para"><p class="ltx_p">It holds.</p></div></div>'
        '<div class="ltx_para"><ul class="ltx_itemize"><li class="ltx_item">'
        '<span class="ltx_tag ltx_tag_item">•</span><div class="ltx_para"><p class="ltx_p">one</p>'
        '<ol class="ltx_enumerate"><li class="ltx_item"><span class="ltx_tag ltx_tag_item">1.</span>'
        '<div class="ltx_para"><p class="ltx_p">sub</p></div></li></ol></div></li></ul></div>'
        '<dl class="ltx_description"><dt class="ltx_item"><span class="ltx_tag ltx_tag_item">Key</span></dt>'
        '<dd class="ltx_item"><div class="ltx_para"><p class="ltx_p">value</p></div></dd></dl>'
        '<div class="ltx_listing"><div class="ltx_listingline">def f():</div>'
        '<div class="ltx_listingline"><span class="ltx_lst_space">    </span>return 1</div></div>'
        "</section>"
        '<section class="ltx_acknowledgements"><h6>Acknowledgements</h6>ACK</section>'
        '<section class="ltx_bibliography"><ul class="ltx_biblist"><li>BIB</li></ul></section>'
        '<section class="ltx_section"><h2 class="ltx_title">Unmarked appendix</h2>'
        '<div class="ltx_para"><p class="ltx_p">AFTER</p></div></section>'
        "</article></div></body></html>"
    ).encode()
    assert latexml_text(html) == (
        "# T\n\n## 1 Method\n\nWe align\n$$a =b$$ (1)\n\nTheorem 1. It holds.\n\n"
        "- one\n  1. sub\n\n- Key: value\n\ndef f():\n    return 1"
    )


# ----------------------------------------------------------------------------- pdf_text


def _make_pdf(pages: list[list[str]]) -> bytes:
    """A minimal valid PDF: one Helvetica text line per string, xref offsets computed."""

    def esc(s: str) -> str:
        return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    objs: dict[int, bytes] = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    }
    kids: list[int] = []
    n = 4
    for lines in pages:
        ops = " ".join(f"({esc(line)}) Tj T*" for line in lines)
        data = f"BT /F1 11 Tf 14 TL 72 760 Td {ops} ET".encode("latin-1")
        objs[n] = (
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (n + 1)
        )
        objs[n + 1] = b"<< /Length %d >>\nstream\n%s\nendstream" % (len(data), data)
        kids.append(n)
        n += 2
    kid_refs = " ".join(f"{k} 0 R" for k in kids).encode()
    objs[2] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kid_refs, len(kids))
    out = bytearray(b"%PDF-1.4\n")
    offsets: dict[int, int] = {}
    for i in sorted(objs):
        offsets[i] = len(out)
        out += b"%d 0 obj\n%s\nendobj\n" % (i, objs[i])
    xref = len(out)
    size = max(objs) + 1
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    for i in range(1, size):
        out += b"%010d 00000 n \n" % offsets[i]
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (size, xref)
    return bytes(out)


PAPER_PAGES = [
    [
        "A Tiny Paper",
        "Abstract",
        "We study the trans-",
        "formation of PDF text for language models.",
        "1 Introduction",
        "Large models (LLMs) read well-",
        "known papers. We cite GPT-",
        "4 here; well-known results are fine.",
    ],
    [
        "2 Method",
        "The method is simple and robust.",
        "References",
        "[1] A. Author. An unrelated citation title. 2020.",
        "[2] B. Author. Another cited work. 2021.",
    ],
    ["A Appendix", "APPENDIX-ONLY TEXT"],
]


def test_pdf_text_body_without_references() -> None:
    text = pdf_text(_make_pdf(PAPER_PAGES))
    assert text is not None
    assert text.startswith("A Tiny Paper\nAbstract\nWe study the transformation of PDF text")
    assert "1 Introduction" in text
    assert "The method is simple and robust." in text
    assert "read well-known papers." in text  # compound used elsewhere on one line: hyphen kept
    assert "GPT-\n4" in text  # digits after a hyphen: a real hyphen, keep the break
    assert "References" not in text
    assert "unrelated citation title" not in text
    assert "APPENDIX-ONLY TEXT" not in text


def test_pdf_text_early_references_line_is_not_a_cut() -> None:
    """A 'References' line in the first quarter (a contents list) must not truncate."""
    pages = [["Contents", "References"], ["Body text " * 20], ["More body text " * 20]]
    text = pdf_text(_make_pdf(pages))
    assert text is not None
    assert "More body text" in text


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"not a pdf at all",
        bytes(range(256)) * 4,
        b"%PDF-1.4\n" + b"\x00\xff\xfe" * 300,  # PDF magic, garbage body
        b"<html><body>PDF</body></html>",
    ],
)
def test_pdf_text_garbage_is_none(blob: bytes) -> None:
    assert pdf_text(blob) is None


def test_pdf_without_text_is_none() -> None:
    assert pdf_text(_make_pdf([[]])) is None


# ----------------------------------------------------------------------------- trim_for_llm


def test_trim_noop_when_it_fits() -> None:
    assert trim_for_llm("short text.", 100) == "short text."
    assert trim_for_llm("", 0) == ""


def test_trim_prefers_paragraph_boundary() -> None:
    text = "First paragraph here.\n\nSecond paragraph is a lot longer than that, really."
    assert trim_for_llm(text, 25) == f"First paragraph here.\n{TRIM_MARKER}"


def test_trim_falls_back_to_sentence_then_word() -> None:
    text = "One sentence here. Another sentence follows and goes on for a while"
    assert trim_for_llm(text, 30) == f"One sentence here.\n{TRIM_MARKER}"
    # a sentence end in the first half of the budget would waste too much: cut at a word
    assert trim_for_llm(text, 40) == f"One sentence here. Another sentence\n{TRIM_MARKER}"
    words = "alpha beta gamma delta epsilon zeta eta theta"
    assert trim_for_llm(words, 20) == f"alpha beta gamma\n{TRIM_MARKER}"


def test_trim_never_splits_a_word() -> None:
    assert trim_for_llm("supercalifragilistic", 5) == TRIM_MARKER


def test_trim_real_paper(tell: str) -> None:
    out = trim_for_llm(tell, 20_000)
    assert len(out) <= 20_000 + len("\n" + TRIM_MARKER)
    assert out.endswith("\n" + TRIM_MARKER)
    assert tell.startswith(out.removesuffix(TRIM_MARKER).rstrip("\n"))


_WORDY = st.lists(
    st.one_of(
        st.text(alphabet="abcXYZ", min_size=1, max_size=8),
        st.sampled_from([" ", "\n", "\n\n", ". ", "! ", "? ", '." ', "\t", "\u00a0"]),
    ),
    max_size=60,
).map("".join)


@given(text=st.one_of(st.text(max_size=300), _WORDY), budget=st.integers(min_value=-5, max_value=320))
def test_trim_properties(text: str, budget: int) -> None:
    out = trim_for_llm(text, budget)
    if len(text) <= max(budget, 0):
        assert out == text
        return
    assert out.endswith(TRIM_MARKER)
    assert len(out) <= max(budget, 0) + len("\n" + TRIM_MARKER)
    body = out[: -len(TRIM_MARKER)]
    if body:
        assert body.endswith("\n")
        body = body[:-1]
    assert text.startswith(body)  # a prefix of the input, modulo the marker
    assert body == body.rstrip()
    # never mid-word: the kept text is followed by whitespace in the input
    assert body == "" or text[len(body)].isspace()
