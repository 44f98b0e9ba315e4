"""Posts and checks shared by the site tests: the reference posts, a hostile post written through the
pipeline's own escaping (what a nightly run would produce from malicious arXiv or LLM text), a raw
post whose attacks skipped that escaping (to test the sanitiser alone), per-paper pages (the reference
page, and pages rendered by the pipeline's own paper.md.j2, one of them hostile), and inspectors for
HTML."""

from __future__ import annotations

import copy
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import lxml.html

from arxiv_digest import render
from arxiv_digest.mathml import MATHML_ATTRIBUTES, MATHML_TAGS
from arxiv_digest.models import Author, PageInfo, Paper, PaperPage
from arxiv_digest.render import md_block, md_inline, md_url
from arxiv_digest.search_query import Searcher, folder_fetch

REFERENCE = Path(__file__).parent / "fixtures" / "reference"
REFERENCE_POSTS = ("daily-post-2025-10-31.md", "daily-post-2026-01-15.md")
REFERENCE_PAGE = "paper-page-2501.11999.md"
PWNED = "document.title='PWNED'"

ATTACK_TITLE = (
    f"Attack <script>{PWNED}</script> on $\\alpha_1$ & {{{{ site }}}} {{% include x %}} "
    "\"quoted\" 'single' C:\\path\\to"
)
AUTHORS = [
    "Zoë Ångström",
    "李雷",
    "Jörn Ostermann",
    "Łukasz Żółć",
    "Nguyễn Văn An",
    "Seán O'Brien",
    f'<img src=x onerror="{PWNED}">',
    *(f"Author Number{n}" for n in range(126)),
]
ATTACK_TRANSLATION = (
    f'这项研究关注量化方法。<script>{PWNED}</script> <img src=x onerror="{PWNED}"> '
    f'<svg onload="{PWNED}"> {{{{ site.title }}}} {{% raw %}} 反斜杠 \\ 与 $x_{{i}}^{{*}} < y$ '
    "\"引号\" 'single' | 竖线 `<b>code</b>`"
)
ATTACK_EXPLAINER = (
    f'1)  \n- **研究背景**：<iframe src="javascript:{PWNED}"></iframe> 量化误差\n'
    "- **方法**：`<script>code span</script>` 与 {{ page }}\n\n2)  \n- **结果**：2~6 dB"
)
# kramdown would turn these into live script if the escaping let them through
KRAMDOWN_ATTACKS = f'[点我](javascript:{PWNED}) 与 **粗体**{{: onmouseover="{PWNED}"}}'

ALLOWED_BODY_TAGS = {
    *("details", "summary", "div", "p", "ul", "ol", "li", "a", "strong", "em", "code", "pre", "blockquote"),
    *("h1", "h2", "h3", "h4", "h5", "h6", "hr", "br", "span", "del", "table", "thead", "tbody", "tr", "th", "td"),
    *MATHML_TAGS,
}


ATTACK_PAGE_TITLE = f"攻击 <script>{PWNED}</script> {{{{ site }}}} 的中文标题"
ATTACK_PAGE_INFO = PageInfo(
    ATTACK_PAGE_TITLE,
    "语音合成",
    f'理由含 <img src=x onerror="{PWNED}"> 与 `反引号` {{% raw %}}',
    ("<b>标签</b>", "语音处理", "a/b c"),
)
# (file name, arXiv id, date, page info, English title, translation) of the pipeline-rendered pages
PAGES = (
    (
        "2026-01-15-2601.09603.md",
        "2601.09603",
        date(2026, 1, 15),
        PageInfo(
            "基于随机量化器的线性复杂度音乐理解自监督学习",
            "音乐",
            "论文研究音乐信息检索中的自监督基础模型，属于音乐类。",
            ("音乐信息检索", "自监督学习", "模型压缩"),
        ),
        "Linear Complexity Self-Supervised Learning for Music Understanding with Random Quantizer",
        "本文聚焦于音乐信息检索任务中基础模型的规模压缩问题。\n\n模型规模压缩了8.5%至12.3%。",
    ),
    ("2026-01-12-2601.00001.md", "2601.00001", date(2026, 1, 12), ATTACK_PAGE_INFO, ATTACK_TITLE, ATTACK_TRANSLATION),
)


def paper_page(
    arxiv_id: str, day: date, info: PageInfo, title: str, translation: str, summary: str = "We study $x_1$ & more."
) -> str:
    """A paper page as the pipeline writes it: templates/paper.md.j2 through render.render_page."""
    when = datetime(day.year, day.month, day.day, 3, tzinfo=UTC)
    paper = Paper(
        arxiv_id=arxiv_id,
        version=1,
        entry_id=f"http://arxiv.org/abs/{arxiv_id}v1",
        title=title,
        summary=summary,
        authors=(Author("A"),),
        published=when,
        updated=when,
        primary_category="cs.SD",
        categories=("cs.SD",),
        abs_url=f"https://arxiv.org/abs/{arxiv_id}v1",
        pdf_url=f"https://arxiv.org/pdf/{arxiv_id}v1",
    )
    page = PaperPage(paper, day, translation, info, f"/papers/{arxiv_id}/")
    return render.render_page(page, render.environment())


def reference_page() -> str:
    """The reference paper page below the front matter paper.md.j2 writes for it."""
    front = (
        '---\nlayout: post\ntitle: "速率感知的智能语音压缩"\ndate: 2025-01-21\npermalink: "/papers/2501.11999/"\n'
        'categories: ["其他"]\ntags: ["语音处理"]\narxiv_id: "2501.11999"\n---\n'
    )
    return front + (REFERENCE / REFERENCE_PAGE).read_text(encoding="utf-8")


def write_pages(folder: Path) -> None:
    """The reference paper page and the pipeline-rendered ones (one hostile), beside the posts."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "2025-01-21-2501.11999.md").write_text(reference_page(), encoding="utf-8")
    for name, arxiv_id, day, info, title, translation in PAGES:
        (folder / name).write_text(paper_page(arxiv_id, day, info, title, translation), encoding="utf-8")


def pipeline_post(
    day: date,
    translation: str = ATTACK_TRANSLATION,
    arxiv_id: str = "2601.00001",
    page: tuple[str, str] | None = None,
) -> str:
    """A post in the reference format whose arXiv and LLM text went through render.py's filters;
    ``page`` (Chinese title, permalink) adds the line that links the paper to its own page."""
    abs_url = f"https://arxiv.org/abs/{arxiv_id}v1"
    pdf_url = abs_url.replace("/abs/", "/pdf/")
    page_line = f"- **中文页面**: [{md_inline(page[0])}]({md_url(page[1])})\n" if page else ""
    return (
        f'---\nlayout: post\ntitle: "arXiv Daily – {day.isoformat()}"\ntags: [arxiv, cs.SD, eess.AS]\n---\n\n'
        f"以下为 {day.isoformat()}（CST，北京时间）窗口内更新的论文中文译文：\n\n"
        f"## {md_inline(ATTACK_TITLE, heading=True)}\n"
        f"- **Authors**: {md_inline(', '.join(AUTHORS))}\n"
        f"- **Categories**: {md_inline('cs.SD, eess.AS, math.NA')}\n"
        f"- **arXiv**: [{md_inline(abs_url)}]({md_url(abs_url)})\n"
        f"- **PDF**: [{md_inline(pdf_url)}]({md_url(pdf_url)})\n{page_line}\n"
        f"{md_block(translation)}\n\n"
        f'<details>\n<summary>详细解读</summary>\n\n<div markdown="1">\n\n{md_block(ATTACK_EXPLAINER)}\n</div>\n\n'
        "</details>\n\n---\n"
    )


def raw_post(day: date) -> str:
    """Attacks written straight into a post, as if the pipeline's escaping had failed."""
    return f"""---
layout: post
title: "Raw <script>{PWNED}</script> \\"q\\" & more"
tags: [arxiv, "<b>cs.XX</b>", cs.SD]
date: {day.isoformat()}
---

## Raw attack <script>{PWNED}</script> $\\alpha_1$
- **Authors**: <img src=x onerror="{PWNED}">, Zoë Ångström
- **Categories**: cs.SD, <script>x</script>
- **arXiv**: [https://arxiv.org/abs/2601.00002v1](https://arxiv.org/abs/2601.00002v1)

正文量化 <script>{PWNED}</script> <img src=x onerror="{PWNED}"> <svg onload="{PWNED}"></svg>
<a href="javascript:{PWNED}">a</a> <a href="JaVaScRiPt:{PWNED}">b</a> [c](javascript:{PWNED})
<a href="  java&#x09;script:{PWNED}">d</a> <iframe src="javascript:{PWNED}"></iframe>
<style>body {{ display: none }}</style> <form action="https://evil.example"><button>x</button></form>
<math><mtext><script>{PWNED}</script></mtext></math> <object data="x"></object>
<details open ontoggle="{PWNED}"><summary>s</summary>t</details> <span style="x" class="math evil">s</span>
{KRAMDOWN_ATTACKS} {{{{ site.title }}}} {{% raw %}}{{{{{{% endraw %}} site }}}}

<div markdown="1" onclick="{PWNED}">

- **inner** list
</div>
"""


def write_posts(folder: Path, *, hostile: bool = True, pages: bool = False) -> None:
    """The two reference posts byte for byte, plus (by default) the pipeline-escaped and raw attacks;
    with ``pages``, the paper pages too, and the pipeline-escaped post links its paper to its page."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in REFERENCE_POSTS:
        shutil.copyfile(REFERENCE / name, folder / name)
    if hostile:
        link = (ATTACK_PAGE_TITLE, "/papers/2601.00001/") if pages else None
        (folder / "2026-01-12-arxiv.md").write_text(pipeline_post(date(2026, 1, 12), page=link), encoding="utf-8")
        (folder / "2026-01-10-raw.md").write_text(raw_post(date(2026, 1, 10)), encoding="utf-8")
    if pages:
        write_pages(folder)


def parse(path: Path) -> lxml.html.HtmlElement:
    return lxml.html.fromstring(path.read_bytes())


def script_problems(tree: lxml.html.HtmlElement, allowed_scripts: tuple[str, ...] = ()) -> list[str]:
    """Everything in a page that could run script, except ``<script src>`` whose src starts with one of
    ``allowed_scripts``."""
    problems = []
    for element in tree.iter():
        if not isinstance(element.tag, str):
            continue
        tag = element.tag.lower()
        if tag == "script" and not (element.get("src") or "").startswith(allowed_scripts or ("\0",)):
            problems.append(f"<script> {lxml.html.tostring(element)[:80]!r}")
        if tag in ("iframe", "object", "embed", "svg", "img", "style", "base", "maction", "annotation-xml"):
            problems.append(f"<{tag}>")
        if tag in MATHML_TAGS and not set(element.attrib) <= MATHML_ATTRIBUTES.get(tag, frozenset()):
            problems.append(f"<{tag} {sorted(element.attrib)}>")
        for name, value in element.attrib.items():
            if name.lower().startswith("on"):
                problems.append(f"{tag}[{name}]")
            if name.lower() in ("href", "src", "action", "formaction", "data"):
                scheme = "".join(value.split()).lower().split(":", 1)[0]
                if ":" in value and scheme in ("javascript", "vbscript", "data"):
                    problems.append(f"{tag}[{name}={value!r}]")
    return problems


def body_tags(tree: lxml.html.HtmlElement) -> set[str]:
    """Tags used inside the converted post body."""
    body = tree.find_class("post-body")
    assert body, "post page has no .post-body"
    return {el.tag for el in body[0].iter() if isinstance(el.tag, str)} - {body[0].tag}


def text(tree: lxml.html.HtmlElement) -> str:
    """The words of a page, each formula as its TeX source between dollars (what it renders)."""
    if tree.find(".//math") is not None:
        tree = copy.deepcopy(tree)
        for math in list(tree.iter("math")):
            dollars = "$$" if math.get("display") == "block" else "$"
            tex = "".join(math.xpath(".//annotation//text()"))
            math.clear(keep_tail=True)
            math.text = f"{dollars}{tex}{dollars}"
    return " ".join(tree.text_content().split())


def search(site: Path, query: str) -> list[tuple[str, str]]:
    """The site's search as search.js runs it (``search_query`` is its Python mirror), every result:
    (URL, title) best first; the URL is the post's with the paper's ``#anchor``, or a paper page's,
    whose title is its Chinese one. A query is complete (its last word is not a prefix being typed)."""
    result = Searcher(folder_fetch(site / "search")).search(query + " ", shown=1_000_000)
    return [(record["u"], record.get("h") or record["t"]) for record in result.records]
