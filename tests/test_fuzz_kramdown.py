"""Differential fuzz test: hostile arXiv metadata and model answers through the real pipeline, then real
kramdown (Jekyll) and the built-in site, with the same assertions on the HTML.

A grammar of Markdown, HTML, Liquid and control-character fragments (the bypasses of issue 9 among
them) is drawn by hypothesis into arXiv titles, authors and abstracts, and into model answers that pass
the LLM validators (mostly Chinese, an explainer in sections 1) 2) 3), a page's JSON). The loopback
arXiv server serves the papers and the loopback LLM server gives the answers; ``arxiv-digest generate``
runs in process and writes the posts and paper pages; one ``jekyll build`` per kramdown setting and one
``arxiv-digest site`` build render them. Every page must have no script-capable element or attribute,
no javascript:/data:/vbscript: URL, no evaluated Liquid (``site.title`` is a sentinel), exactly one
``<details>`` per explainer holding all three sections, and each paper's text visible.

The default run is seeded and derandomized (``CASES`` papers in one batch). ``pytest -m fuzz`` runs
``ARXIV_DIGEST_FUZZ_BATCHES`` more batches with fresh seeds (or ``--hypothesis-seed=N``); a failure
prints the seed and the paper's generated input.
"""

from __future__ import annotations

import html
import json
import os
import random
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import TypeVar

import lxml.html
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from arxiv_digest import cli, safe_markdown
from arxiv_digest.summarize import check_explainer, check_translation
from arxiv_digest.summarize import check_page as check_page_answer

from .site_support import ALLOWED_BODY_TAGS, text
from .support.arxiv_server import ArxivServer, FakePaper
from .support.llm_server import LLMServer
from .test_site_jekyll import LAYOUT, PARSE_BLOCK_HTML, jekyll

pytestmark = pytest.mark.skipif(shutil.which("jekyll") is None, reason="jekyll is not installed")

CASES = int(os.environ.get("ARXIV_DIGEST_FUZZ_CASES", "64"))
BATCHES = int(os.environ.get("ARXIV_DIGEST_FUZZ_BATCHES", "20"))
DAY = "2026-01-15"
START = datetime(2026, 1, 14, 1, 0, tzinfo=UTC)  # inside the window of DAY
KEY = "sk-fuzz-0123456789abcdef"
SENTINEL = "LIQUID-WAS-EVALUATED"
TAXONOMY = ["语音识别", "语音合成", "音乐", "音频理解", "其他"]
RUN = "alert(1)"
T = TypeVar("T")

# --- the grammar -----------------------------------------------------------------------------------

INLINE = [
    # raw HTML, and the bypasses of issue 9
    *(
        f"<script>{RUN}</script>",
        f'<img src=x onerror="{RUN}">',
        f"<iframe src=javascript:{RUN}>",
        "<style>*{}</style>",
    ),
    *("<form action=//e.org><button>x</button></form>", "<object data=x>", "<embed src=x>", f"<svg onload={RUN}>"),
    *(f'<a href="javascript:{RUN}">a</a>', f"\\`<script>{RUN}</script>`", f"``<script>{RUN}</script>` `"),
    *("`", "``", "```", "\\`", "` `", "`<b>x</b>`", "`` a`b ``", "`a|b`", "`{{ site.title }}`"),
    # links: plain, entity-encoded, with whitespace, autolinks, images, references, footnotes
    *(
        f"[x](javascript:{RUN})",
        f"[x](&#106;avascript:{RUN})",
        f"[x](&#x6A;avascript:{RUN})",
        f"[x](java\tscript:{RUN})",
    ),
    *(f"[x](data:text/html,<script>{RUN}</script>)", f"[x](vbscript:{RUN})", f"<javascript:{RUN}>", "<https://e.org>"),
    *("![i](x.png)", "[x][r]", "[x][]", "[x]", "[^1]", "*[HTML]"),
    # kramdown's extensions and attribute lists, Liquid
    *("{::comment}", "{:/comment}", "{::nomarkdown}", "{:/}", f'{{: onclick="{RUN}"}}', "{:.cls}", "{#id}"),
    *("{{ site.title }}", "{% include x %}", "{{", "{%", "{% raw %}", "{% endraw %}", "}}", "%}"),
    # the template's own tags, comments
    *(
        "<!-- c -->",
        "<!--",
        "-->",
        "<details>",
        "</details>",
        "</div>",
        '<div markdown="1">',
        "<summary>",
        "</summary>",
    ),
    # maths, emphasis, escapes, entities, typography
    *("$x_1$", "$$\\frac{a}{b}$$", "$", "$$", "$a<b$", "$$<script>$$", "$\\{x\\}$", "$x^*$ 与 $y^*$", "|"),
    *("~~", "~", "*", "**", "_", "__", "\\", "\\\\", "&", "&amp;", "&lt;", "&#60;script&#62;", "<<", ">>"),
    *("--", "...", "'", '"', "<", ">", "<b>", "&#x26;"),
    # what normal answers and abstracts carry
    *("MERT_330", "2~6", "8.5%至12.3%", "（ADT）", "https://github.com/a/b_c", "C#", "x_{i}", "O(n)"),
    # separators and invisible characters that arXiv's XML carries
    *("\u2028", "\u2029", "\u200b", "\u202e", "\u00a0"),
]
# JSON (model answers) carries these; XML cannot (C1 controls: feedparser reads them as windows-1252)
CONTROL = ["\r", "\r\r", "\f", "\v", "\x00", "\x1b", "\x7f", "\x85", "\x9b"]
LINE_START = [
    *("", "", "", "- ", "  - ", "    - ", "      - ", "* ", "+ ", "1. ", "   1. ", "10. ", "> ", "> - ", "- > "),
    *("    ", "     ", "        ", "\t", "# ", "## ", "===", "---", "~~~", ": ", "^", "1) ", "- - "),
    *(f"[r]: javascript:{RUN}", f"    [r]: javascript:{RUN}", f"[r]: &#106;avascript:{RUN}", "[^1]: note"),
    *("*[HTML]: Hyper", "{::comment}", "{: .c}", "|a|b|", "|-|-|", "```", "<div>", "</div>", "</details>"),
]
LINE_BREAK = ["\n", "\n", "\n\n", "  \n", "\r", "\r\r", "\r\n", "\n\n\n"]
CHINESE = [
    "本文研究了语音编码问题",
    "实验表明该方法有效",
    "我们提出一种新的框架",
    "在多个数据集上取得了领先结果",
    "模型",
]
WORDS = ["Audio", "Speech", "Codec", "Neural", "for", "the", "of", "Learning", "MERT_330", "2~6"]

inline = st.sampled_from(INLINE)
word = st.sampled_from(WORDS)


def joined(parts: st.SearchStrategy[str], max_size: int, sep: str = "") -> st.SearchStrategy[str]:
    return st.lists(parts, max_size=max_size).map(sep.join)


METADATA = joined(inline | word | st.sampled_from([" ", "\n  ", "\t"]), 12)
AUTHOR = joined(inline | word, 4, " ")
ANSWER_PART = inline | st.sampled_from(CHINESE) | st.sampled_from(CONTROL) | st.text(max_size=2)


@st.composite
def answer_lines(draw: st.DrawFn, max_lines: int = 6) -> str:
    """Lines of hostile Markdown: a line start (container, block marker, definition...), fragments."""
    lines = []
    for _ in range(draw(st.integers(0, max_lines))):
        lines.append(
            draw(st.sampled_from(LINE_START)) + draw(joined(ANSWER_PART, 5)) + draw(st.sampled_from(LINE_BREAK))
        )
    return "".join(lines)


@dataclass(frozen=True)
class Case:
    """One paper: what arXiv serves and what the model answers."""

    title: str
    authors: tuple[str, ...]
    abstract: str
    translation: str
    explainer: str
    page: dict[str, object]


def passable(text: str) -> str:
    """The validators refuse code fences and extra section markers: keep those out of answers (the
    fences' and markers' effect on Markdown is covered by tildes, other digits and the metadata)."""
    return re.sub(r"(?m)^([ \t]*\**)([123])(?=[)）])", r"\1第\2", text)


def no_fence(text: str) -> str:
    """Break every run of three backticks (the validators refuse fences)."""
    return re.sub(r"`(?=``)", "`·", text)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    filler = "".join(draw(st.lists(st.sampled_from(CHINESE), min_size=8, max_size=12)))
    translation = no_fence(passable(f"本文{filler}" + draw(answer_lines()) + draw(joined(ANSWER_PART, 6)) + filler))
    sections = [
        f"{n})  \n- **{label}**：{filler}" + passable(draw(joined(ANSWER_PART, 4)) + "\n" + draw(answer_lines()))
        for n, label in ((1, "研究背景"), (2, "核心方法"), (3, "任务与效果"))
    ]
    tags = draw(st.lists(st.sampled_from(TAGS), min_size=2, max_size=4, unique=True))
    page = {
        "title": "中文标题" + draw(joined(inline, 2)) + "的研究",
        "class": draw(st.sampled_from(TAXONOMY)),
        "reason": filler + draw(joined(inline, 3)) + "，因此归入该类。",
        "tags": tags,
    }
    return Case(
        title=draw(METADATA) or "Empty",
        authors=tuple(draw(st.lists(AUTHOR.filter(str.strip), min_size=1, max_size=3))),
        abstract=draw(METADATA),
        translation=translation,
        explainer=no_fence("\n\n".join(sections)),
        page=page,
    )


# tags become YAML front matter: YAML 1.1 booleans, nulls, numbers, dates, times, symbols, markup
TAGS = [
    *("null", "Null", "~", "true", "yes", "on", "off", "no", "y", "2025", "1.5", "1:20", "2025-01-01", "0x1F", ".nan"),
    *("-", ":sym", "<<", "=", "cs.SD", "eess.AS", "a: b", "- x", "'q'", '"q"', "[a]", "{a}", "*", "&a", "!tag", "%x"),
    *("<b>标签</b>", "{{x}}", "{%x%}", "`t`", "a|b", "\\", "&amp;", "语音处理", "a b", "a\u2028b", "a,b"),
]


def examples(strategy: st.SearchStrategy[T], size: int, seed_value: int | None = None) -> list[T]:
    """``size`` values from ``strategy``: hypothesis as a generator, for tests that then run one costly
    build over the whole batch (a failure names the case and the seed instead of shrinking)."""
    drawn: list[T] = []

    @settings(
        max_examples=size,
        database=None,
        phases=[Phase.generate],
        derandomize=seed_value is None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(value: T) -> None:
        drawn.append(value)

    (seed(seed_value)(collect) if seed_value is not None else collect)()
    return drawn[:size]


def draw_corpus(size: int, seed_value: int | None) -> list[Case]:
    return examples(cases(), size, seed_value)


# --- the pipeline ----------------------------------------------------------------------------------


def key_of(index: int) -> str:
    return f"PAPERKEY{index:04d}"


def responder(corpus: list[Case]) -> Callable[[dict], str]:
    """The scripted model: finds the paper by the key its abstract carries, answers for the task."""

    def answer(request: dict) -> str:
        prompt = "\n".join(m["content"] for m in request["messages"] if m["role"] == "user")
        case = corpus[int(re.search(r"PAPERKEY(\d{4})", prompt)[1])]
        system = request["messages"][0]["content"]
        if '"class"' in prompt:
            return json.dumps(case.page, ensure_ascii=False)
        return case.explainer if "解读" in system else case.translation

    return answer


def generate(root: Path, arxiv: ArxivServer, llm: LLMServer, **site: object) -> Path:
    """``arxiv-digest generate`` in process; returns the posts folder."""
    config = {
        "site": {"posts_dir": "posts", "site_dir": "_site", **site},
        "arxiv": {"api_url": arxiv.url, "request_interval": 0, "backoff": 0, "timeout": 5, "retries": 1},
        "llm": {
            "provider": "auto",
            "base_url": llm.base_url,
            "backoff": 0,
            "retries": 1,
            "concurrency": 4,
        },
        "fulltext": {"enabled": False},
        "pages": {"enabled": True, "taxonomy": TAXONOMY},
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    env = {"ARXIV_DIGEST_NOW": "2026-11-21T00:00:00Z", "DEEPSEEK_API_KEY": KEY}
    result = CliRunner().invoke(cli.main, ["-q", "-c", str(root / "config.yaml"), "generate", "--date", DAY], env=env)
    assert result.exit_code == 0, result.output
    return root / "posts"


@dataclass(frozen=True)
class Written:
    """The batch as the pipeline wrote it: posts (Jekyll setting -> folder), the built-in site."""

    corpus: list[Case]
    posts: dict[str, Path]
    site: Path


def write_batch(root: Path, corpus: list[Case]) -> Written:
    root.mkdir(parents=True, exist_ok=True)
    papers = [
        FakePaper(
            arxiv_id=f"2601.{index + 1:05d}",
            version=1,
            title=case.title,
            abstract=f"{case.abstract} ({key_of(index)}) {case.abstract}",
            authors=list(case.authors),
            categories=["cs.SD"],
            published=START + timedelta(minutes=index),
        )
        for index, case in enumerate(corpus)
    ]
    posts = {}
    with ArxivServer(papers) as arxiv, LLMServer(responder(corpus), api_key=KEY) as llm:
        for setting, block_html in (("default", False), ("parse_block_html", True)):
            folder = generate(root, arxiv, llm, kramdown_parse_block_html=block_html)
            posts[setting] = shutil.copytree(folder, root / f"posts-{setting}")
    result = CliRunner().invoke(cli.main, ["-q", "-c", str(root / "config.yaml"), "site"])
    assert result.exit_code == 0, result.output
    return Written(corpus, posts, root / "_site")


# --- what must hold on every page -----------------------------------------------------------------

SCRIPTING = {"script", "iframe", "object", "embed", "style", "form"}
URL_ATTRIBUTES = {"href", "src", "action", "formaction", "data", "xlink:href", "poster", "background"}
INVISIBLE = re.compile(r"[\x00-\x20\x7f-\x9f\u00ad\u200b-\u200f\u2028-\u202e\u2060\ufeff]")


def markup_problems(root: lxml.html.HtmlElement, content: bool = True) -> list[str]:
    """Anything that could run script or was not written as text: scripting elements, ``on*``
    attributes, javascript:/data:/vbscript: URLs (after entity decoding, whitespace and controls
    dropped), evaluated Liquid; in ``content`` (a post body) also any tag the Markdown did not make."""
    problems = []
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue
        tag = element.tag.lower()
        if tag in SCRIPTING or (content and element is not root and tag not in ALLOWED_BODY_TAGS):
            problems.append(f"<{tag}>")
        for name, value in element.attrib.items():
            if name.lower().startswith("on"):
                problems.append(f"{tag}[{name}]")
            if name.lower() in URL_ATTRIBUTES:
                target = INVISIBLE.sub("", html.unescape(value)).lower()
                if target.startswith(("javascript:", "data:", "vbscript:")):
                    problems.append(f"{tag}[{name}={value!r}]")
    if SENTINEL in root.text_content():
        problems.append("Liquid was evaluated")
    return problems


TYPOGRAPHY = str.maketrans(
    {"‘": "'", "’": "'", "“": '"', "”": '"', "–": "--", "—": "---", "…": "...", "«": "<<", "»": ">>"}
)
KRAMDOWN_MATH = re.compile(r"\\\((.*?)\\\)|\\\[(.*?)\\\]", re.S)


def shown(text: str) -> str:
    """Text as a reader compares it: no whitespace, kramdown's typography and maths delimiters undone."""
    text = KRAMDOWN_MATH.sub(lambda m: f"$${m[1] or m[2]}$$", text).translate(TYPOGRAPHY)
    return "".join(text.split())


def metadata_as_served(text: str) -> str:
    """What a reader should see of a title: arXiv's XML drops invalid characters, the feed parser
    collapses all whitespace (U+2028 and U+0085 included); control characters are shown as symbols."""
    text = re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]", "", text)
    return shown(safe_markdown._visible_controls(" ".join(text.split())))


LIST_NUMBER = re.compile(r"(?m)^(?:[ \t]*(?:[-+*>]|\d{1,9}\.)[ \t]+)*[ \t]*\d{1,9}\.(?=[ \t]|$)")


def letters(text: str) -> str:
    """The letters and digits a reader must find again: character references and ordered-list numbers
    (list markers, not text) left out."""
    text = LIST_NUMBER.sub("", re.sub(r"\r\n?", "\n", text))
    return "".join(ch for ch in re.sub(r"&#?\w+;", "", text) if ch.isalnum())


def subsequence(needle: str, haystack: str) -> bool:
    rest = iter(haystack)
    return all(ch in rest for ch in needle)


def papers_in(body: lxml.html.HtmlElement) -> Iterator[tuple[int, list[lxml.html.HtmlElement]]]:
    """Each paper's section of a daily post: from its <h2> to the next, keyed by its arXiv link."""
    section: list[lxml.html.HtmlElement] = []
    for child in list(body):
        if child.tag == "h2" and section:
            yield paper_index(section), section
            section = []
        if child.tag == "h2" or section:
            section.append(child)
    if section:
        yield paper_index(section), section


def paper_index(section: list[lxml.html.HtmlElement]) -> int:
    links = [a.get("href", "") for el in section for a in el.iter("a")]
    number = next(re.search(r"abs/2601\.(\d{5})", link) for link in links if "/abs/" in link)
    return int(number[1]) - 1


Failure = tuple[int | None, str]  # the paper it concerns (None: the whole page), what is wrong


def check_post(body: lxml.html.HtmlElement, corpus: list[Case], where: str) -> list[Failure]:
    """A daily post: its markup, and for each paper its title, one <details> with the three sections, and
    the letters of its translation and explainer."""
    failures: list[Failure] = [(None, f"{where}: {p}") for p in markup_problems(body)]
    seen = set()
    for index, section in papers_in(body):
        seen.add(index)
        case, label = corpus[index], f"{where}, paper {index}"
        if shown(text(section[0])) != (metadata_as_served(case.title) or f"2601.{index + 1:05d}"):
            failures.append((index, f"{label}: the title shows as {text(section[0])!r}"))
        holders = [el for el in section if any(d.get("class") != "more-authors" for d in el.iter("details"))]
        details = [d for el in holders for d in el.iter("details") if d.get("class") != "more-authors"]
        if len(details) != 1:
            failures.append((index, f"{label}: {len(details)} explainer <details>"))
            continue
        inside = details[0].text_content()
        if not all(marker in inside for marker in ("研究背景", "核心方法", "任务与效果")):
            failures.append((index, f"{label}: a section is outside <details>: {inside!r}"))
        if not subsequence(letters(check_explainer(case.explainer)), letters(inside)):
            failures.append((index, f"{label}: explainer text lost: {inside!r}"))
        before = "".join(el.text_content() for el in section[2 : section.index(holders[0])])
        translation = check_translation(case.translation, SimpleNamespace(title=case.title))
        if not subsequence(letters(translation), letters(before)):
            failures.append((index, f"{label}: translation text lost: {before!r}"))
    if missing := set(range(len(corpus))) - seen:
        failures.append((None, f"{where}: papers missing: {sorted(missing)}"))
    return failures


def check_page(page: lxml.html.HtmlElement, index: int, case: Case, where: str, content: bool) -> list[Failure]:
    """A paper page: its markup, and the letters of its title, reason, tags and translation."""
    failures: list[Failure] = [(index, f"{where}: {p}") for p in markup_problems(page, content=False)]
    body = page.find(".//main")
    failures += [(index, f"{where}: {p}") for p in markup_problems(body, content)]
    info = check_page_answer(json.dumps(case.page, ensure_ascii=False), SimpleNamespace(title=case.title), TAXONOMY)
    translation = check_translation(case.translation, SimpleNamespace(title=case.title))
    for part in (info.title, info.reason, *info.tags, translation):
        if not subsequence(letters(part), letters(body.text_content())):
            failures.append((index, f"{where}: text lost: {part!r}"))
    return failures


FUZZ_LAYOUT = LAYOUT.replace(
    "<body>{{ content }}</body>",
    '<body><h1 class="layout">{{ page.title }}</h1><main>{{ content }}</main>'
    "<ul>{% for tag in page.tags %}<li>{{ tag | slugify }}</li>{% endfor %}</ul></body>",
)
JEKYLL_CONFIG = {"default": "markdown: kramdown\n", "parse_block_html": PARSE_BLOCK_HTML}


def check_batch(root: Path, corpus: list[Case]) -> list[Failure]:
    """Write the batch, build it with Jekyll (both settings) and the site, check every page."""
    written = write_batch(root, corpus)
    failures: list[Failure] = []
    for setting, folder in written.posts.items():
        sources = {path.name: path.read_text(encoding="utf-8") for path in sorted(folder.glob("*.md"))}
        config = f"title: {SENTINEL}\n" + JEKYLL_CONFIG[setting]
        out = jekyll(root / f"jekyll-{setting}", config, sources, layout=FUZZ_LAYOUT)
        post = lxml.html.fromstring((out / f"{DAY.replace('-', '/')}/arxiv.html").read_bytes())
        failures += [(None, f"Jekyll ({setting}): {p}") for p in markup_problems(post, content=False)]
        failures += check_post(post.find(".//main"), corpus, f"Jekyll ({setting})")
        for index, case in enumerate(corpus):
            page = lxml.html.fromstring((out / f"papers/2601.{index + 1:05d}/index.html").read_bytes())
            failures += check_page(page, index, case, f"Jekyll ({setting}), page {index}", content=True)
    post = lxml.html.fromstring(next(written.site.glob("2026/01/15/*.html")).read_bytes())
    failures += [(None, f"site: {p}") for p in markup_problems(post, content=False)]
    failures += check_post(post.find_class("post-body")[0], corpus, "site")
    for index, case in enumerate(corpus):
        page = lxml.html.fromstring((written.site / f"papers/2601.{index + 1:05d}/index.html").read_bytes())
        failures += check_page(page, index, case, f"site, page {index}", content=False)  # the site's own layout
    return failures


def report(failures: list[Failure], corpus: list[Case], seed_value: int | None) -> str:
    """What went wrong, then the generated input of the first papers concerned."""
    papers = sorted({index for index, _ in failures if index is not None})[:3]
    lines = [f"seed: {seed_value if seed_value is not None else 'derandomized'}", *(m for _, m in failures[:20])]
    return "\n".join(lines + [f"paper {index}: {corpus[index]!r}" for index in papers])


@pytest.mark.slow
def test_hostile_corpus_stays_text_in_jekyll_and_the_site(tmp_path: Path) -> None:
    corpus = draw_corpus(CASES, None)
    assert len(corpus) == CASES
    failures = check_batch(tmp_path, corpus)
    assert not failures, report(failures, corpus, None)


@pytest.mark.fuzz
def test_long_fuzz_run(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """``pytest -m fuzz``: more batches with fresh seeds (``--hypothesis-seed=N`` fixes the first)."""
    if "fuzz" not in (request.config.option.markexpr or ""):
        pytest.skip("opt-in: pytest -m fuzz (ARXIV_DIGEST_FUZZ_BATCHES, ARXIV_DIGEST_FUZZ_CASES)")
    first = request.config.getoption("hypothesis_seed", None)
    first = int(first) if first is not None else random.SystemRandom().randrange(2**32)
    for batch in range(BATCHES):
        corpus = draw_corpus(CASES, first + batch)
        failures = check_batch(tmp_path / str(batch), corpus)
        assert not failures, report(failures, corpus, first + batch)
