"""Site build benchmark: 1,000 daily posts of 20 papers each, in the reference post format, beside Hugo.

Run as ``.venv/bin/python bench/site.py [--posts N] [--pages] [--no-records] [--no-jekyll] [--no-hugo]
[--pagefind] [--keep DIR]`` (``--posts 3000`` and ``10000`` for the scale figures). Papers (titles with LaTeX, up
to 133 authors, non-ASCII names, cross-listed categories) come from the real listings fixture; the
Chinese translations and explainers are sentences of the reference posts, shuffled with a fixed
seed, at the reference posts' lengths. ``--pages`` adds one page per paper in the format of
``templates/paper.md.j2`` (one class of five, 2-4 tags of 150, most of them rare), linked from the
post, as with ``pages.enabled``; adding a post then adds its 20 pages too. Each post and page has
the record beside it that the pipeline writes (``--no-records``: none, as for the seed system's
posts, which the site then reads by their Markdown).

Each build is the command a user runs, ``arxiv-digest site`` (with a generated config), in a child
process, so its wall time (interpreter start, imports and config included), CPU time (user + system of
the process and its workers, from ``RUSAGE_CHILDREN``) and peak memory (PSS of its process tree,
sampled every 50 ms) are its own. The builds: full (an empty build state), full without the search
index (``site.search: false``: no search, like Hugo's site; into a folder of its own), after a template
change (``base.html`` overridden: every page re-rendered, every conversion reused from the build
state), after an upgrade (the build state as a release with another renderer left it: every post
converted again, the search index kept and given only the documents that differ), and after adding
the newest post (three times, the post taken out again between; the
median). When ``hugo`` is installed (Debian's 0.111), the same posts are built with a minimal Hugo
site (posts, paginated home, per-category pages and feeds with full content, generated config and
layouts) and timed the same way, side by side; ``--pagefind`` then indexes Hugo's posts with
pagefind, as a Hugo site gets search, for the like-for-like figure with search on both sides.
Jekyll's full build is timed last. Targets (issue 11) on the 2-core machine: at 1,000 posts full
build CPU <= Hugo's and wall <= 5 s, a template change <= 2.5 s; at 3,000 posts adding one post <=
0.6 s and peak memory <= 300 MB.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import re
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LISTINGS = ROOT / "tests" / "fixtures" / "listings" / "cs.SD-eess.AS-2025-05-to-09.json"
REFERENCES = sorted((ROOT / "tests" / "fixtures" / "reference").glob("daily-post-*.md"))
PAPERS_PER_POST = 20
ADDITIONS = 3  # adding the newest post is timed this many times: one run of half a second is noise
TAXONOMY = ("语音识别", "语音合成", "音乐", "音频理解", "其他")
CONFIG = """site:
  posts_dir: posts
  templates_dir: templates
  site_dir: site{suffix}
  search: {search}
store:
  path: state{suffix}/digest.sqlite3
"""
SUMMARY = re.compile(
    r"(?P<written>\d+) files written, (?P<skipped>\d+) unchanged, \d+ removed, (?P<converted>\d+) conversions"
)


def _inline(text: str) -> str:
    """What the pipeline's ``md_inline`` does to arXiv text: no HTML, no table pipes, no Liquid."""
    text = " ".join(text.split()).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return re.sub(r"\{(?=[{%])", "{% raw %}{{% endraw %}", text.replace("|", "\\|"))


def _sentences() -> list[str]:
    text = "".join(path.read_text(encoding="utf-8") for path in REFERENCES)
    return [s.replace("*", "").strip() for s in re.findall(r"[^。\n>#\-]*[\u4e00-\u9fff][^。\n]*?。", text)]


def _explainer(rng: random.Random, pool: list[str]) -> str:
    parts = []
    for number, heads in ((1, ("研究背景", "既有问题")), (2, ("核心方法", "解决思路")), (3, ("任务与效果", "结果"))):
        lines = [f"{number})  "]
        for head in heads:
            lines.append(f"- **{head}**：{''.join(rng.sample(pool, 2))}  ")
            lines += [f"  - {rng.choice(pool)}  " for _ in range(rng.randint(1, 3))]
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


_TAG_TAILS = [
    "增强",
    "分离",
    "识别",
    "合成",
    "编码",
    "检索",
    "生成",
    "理解",
    "评估",
    "表征",
    *(f"任务{i}" for i in range(15)),
]
TAG_VOCABULARY = [f"{a}{b}" for a in ("语音", "音频", "音乐", "声学", "说话人", "多模态") for b in _TAG_TAILS]


def _tags(rng: random.Random) -> list[str]:
    """2-4 tags of 150, a few common and most rare, as an LLM's free choice would be."""
    picks = (TAG_VOCABULARY[min(int(rng.paretovariate(0.8)) - 1, 149)] for _ in range(rng.randint(2, 4)))
    return list(dict.fromkeys(picks))


def _page(
    day: date, arxiv_id: str, title: str, rng: random.Random, pool: list[str], translation: str, paper: dict
) -> tuple[str, dict]:
    """A paper page as templates/paper.md.j2 writes it, and its record's fields."""
    tags = _tags(rng)
    category = rng.choice(TAXONOMY)
    reason = rng.choice(pool)
    quoted = ", ".join(json.dumps(t, ensure_ascii=False) for t in tags)
    text = (
        f'---\nlayout: post\ntitle: "{title}"\ndate: {day.isoformat()}\npermalink: "/papers/{arxiv_id}/"\n'
        f'categories: ["{category}"]\ntags: [{quoted}]\narxiv_id: "{arxiv_id}"\n---\n'
        f"# {title}\n\n发布时间：{day:%Y年%m月%d日}\n\n`{category}\n\n理由：{reason}`"
        + "".join(f" `{t}`" for t in tags)
        + f"\n\n\n> {_inline(paper['title'])}\n\n# 摘要\n\n> {translation}\n\n> {_inline(paper['abstract'])}\n\n"
        f"[Arxiv](https://arxiv.org/abs/{arxiv_id})"
    )
    record = {
        "arxiv_id": arxiv_id,
        "date": day,
        "title": title,
        "category": category,
        "reason": reason,
        "tags": tuple(tags),
        "en_title": " ".join(paper["title"].split()),
        "abstract_zh": translation,
        "abstract_en": _inline(paper["abstract"]),
        "permalink": f"/papers/{arxiv_id}/",
    }
    return text, record


def _write(path: Path, text: str, record: object | None) -> None:
    """A post or page, with the record beside it that the pipeline writes (``None``: a seed post)."""
    if record is None:
        path.write_text(text, encoding="utf-8")
        return
    from arxiv_digest import postformat

    postformat.write(path, text, record)  # type: ignore[arg-type]


def _records() -> tuple[type, type, type]:
    from arxiv_digest.postformat import PageRecord, PaperRecord, PostRecord

    return PostRecord, PaperRecord, PageRecord


def write_posts(folder: Path, count: int, seed: int = 7, pages: bool = False, records: bool = True) -> list[Path]:
    """``count`` posts ``YYYY-MM-DD-arxiv.md``, one a day, ending on 2026-01-15; with ``pages``, each
    paper's page ``YYYY-MM-DD-<id>.md`` too (ids are made unique: the fixture has fewer papers); with
    ``records``, the record the pipeline writes beside each (without: posts of the seed system)."""
    post_record, paper_record, page_record = _records() if records else (None, None, None)
    papers = json.loads(LISTINGS.read_text(encoding="utf-8"))
    pool = _sentences()
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    first = date(2026, 1, 15) - timedelta(days=count - 1)
    for n in range(count):
        day = first + timedelta(days=n)
        blocks, papers_of_post = [], []
        for k in range(PAPERS_PER_POST):
            paper = papers[(n * PAPERS_PER_POST + k) % len(papers)]
            arxiv_id = f"{day:%y%m}.{n * PAPERS_PER_POST + k:05d}" if pages else paper["id"]
            abs_url = f"https://arxiv.org/abs/{arxiv_id}v{paper['version']}"
            translation = "".join(rng.sample(pool, rng.randint(5, 9)))
            explainer = _explainer(rng, pool)
            page_line, title = "", None
            if pages:
                title = rng.choice(pool)[:24].rstrip("。，")
                page = folder / f"{day.isoformat()}-{arxiv_id}.md"
                text, fields = _page(day, arxiv_id, title, rng, pool, translation, paper)
                _write(page, text, page_record(**fields) if page_record else None)
                written.append(page)
                page_line = f"- **中文页面**: [{title}](/papers/{arxiv_id}/)\n"
            if paper_record:
                papers_of_post.append(
                    paper_record(
                        arxiv_id=arxiv_id,
                        version=paper["version"],
                        title=" ".join(paper["title"].split()),
                        authors=tuple(paper["authors"]),
                        categories=tuple(paper["categories"]),
                        abs_url=abs_url,
                        pdf_url=abs_url.replace("/abs/", "/pdf/"),
                        translation=translation,
                        abstract=_inline(paper["abstract"]),
                        explainer=explainer,
                        page_url=f"/papers/{arxiv_id}/" if title else None,
                        page_title=title,
                    )
                )
            blocks.append(
                f"## {_inline(paper['title'])}\n"
                f"- **Authors**: {_inline(', '.join(paper['authors']))}\n"
                f"- **Categories**: {', '.join(paper['categories'])}\n"
                f"- **arXiv**: [{abs_url}]({abs_url})\n"
                f"- **PDF**: [{abs_url.replace('/abs/', '/pdf/')}]({abs_url.replace('/abs/', '/pdf/')})\n"
                f"{page_line}\n"
                f"{translation}\n\n"
                f'<details>\n<summary>详细解读</summary>\n\n<div markdown="1">\n\n{explainer}\n</div>\n\n'
                f"</details>\n\n---\n"
            )
        path = folder / f"{day.isoformat()}-arxiv.md"
        text = (
            f'---\nlayout: post\ntitle: "arXiv Daily – {day.isoformat()}"\ntags: [arxiv, cs.SD, eess.AS]\n---\n\n'
            f"以下为 {day.isoformat()}（CST，北京时间）窗口内更新的论文中文译文：\n"
            f"- 时间窗口（锚点 08:50 CST）：{day - timedelta(days=1)} 08:50 — {day} 08:50\n"
            f"- 抓取总数：{PAPERS_PER_POST} 篇 | 本页显示：{PAPERS_PER_POST} 篇（去重/过滤后）\n\n" + "\n".join(blocks)
        )
        record = None
        if post_record:
            title_of_post = f"arXiv Daily – {day.isoformat()}"
            tags = ("arxiv", "cs.SD", "eess.AS")
            record = post_record(day, title_of_post, tags, PAPERS_PER_POST, PAPERS_PER_POST, tuple(papers_of_post))
        _write(path, text, record)
        written.append(path)
    return written


def _tree_pss_mb(root: int) -> float:
    """Proportional set size of ``root`` and all its descendants (the build's workers), from /proc:
    unlike summing RSS, pages the workers share with their parent are counted once. The tree is
    walked through each thread's ``children`` file, a few reads per sample: scanning every process
    of the machine took 5 ms of CPU a sample, a fifth of a core beside the build it measures."""
    tree, waiting = set(), [root]
    while waiting:
        pid = waiting.pop()
        tree.add(pid)
        try:
            threads = os.listdir(f"/proc/{pid}/task")
        except OSError:  # the process ended meanwhile
            continue
        for thread in threads:
            try:
                waiting += [int(child) for child in Path(f"/proc/{pid}/task/{thread}/children").read_text().split()]
            except OSError:  # the thread or the process ended meanwhile
                continue
    kilobytes = 0
    for pid in tree:
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        kilobytes += sum(int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:"))
    return kilobytes / 1024


def sampled(name: str, command: list[str]) -> dict[str, Any]:
    """Run ``command`` (``name`` in errors): its standard output, wall and CPU time (user + system of
    the process and its workers) and the peak PSS of its process tree, sampled every 50 ms. Like
    every build timed here, it starts after ``sync``: the kernel writing back the files of the step
    before (a full build writes 130 MB at 1,000 posts) would otherwise be charged to it."""
    os.sync()
    started = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    ended: list[float] = []

    def wait() -> None:  # the end is when the process ends, not the next sample (up to 50 ms later)
        process.wait()
        ended.append(time.perf_counter())

    waiter = threading.Thread(target=wait)
    waiter.start()
    peak = 0.0
    while waiter.is_alive():
        peak = max(peak, _tree_pss_mb(process.pid))
        waiter.join(0.05)
    stdout = process.stdout.read() if process.stdout else ""
    if process.returncode:
        raise SystemExit(f"{name} failed with exit code {process.returncode}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {"stdout": stdout, "wall": ended[0] - started, "cpu": cpu, "tree_mb": peak}


def site_config(work: Path, search: bool = True) -> Path:
    """A config for ``arxiv-digest site`` in ``work``: posts in ``posts/``, the site in ``site/``, the
    user's templates (none at first) in ``templates/site/`` and the build state in ``state/``;
    without ``search`` (``site.search: false``), the site and its state in ``site-no-search/`` and
    ``state-no-search/``."""
    (work / "templates" / "site").mkdir(parents=True, exist_ok=True)
    suffix = "" if search else "-no-search"
    config = work / f"config{suffix}.yaml"
    config.write_text(CONFIG.format(suffix=suffix, search=str(search).lower()), encoding="utf-8")
    return config


def build(config: Path) -> dict[str, float]:
    """``arxiv-digest site`` with ``config``, as a user runs it (``sampled``): its figures, and from
    its closing line the files it wrote and left, and the conversions it ran."""
    found = sampled("our build", [sys.executable, "-m", "arxiv_digest", "-c", str(config), "site"])
    summary = SUMMARY.search(found.pop("stdout"))
    if not summary:
        raise SystemExit("our build printed no summary line")
    return {key: int(value) for key, value in summary.groupdict().items()} | found


def as_left_by_another_release(work: Path) -> None:
    """The build state as a release with another renderer left it (its conversions that renderer's):
    what a user's first build after upgrading finds."""
    with sqlite3.connect(work / "state" / "site-build" / "build.sqlite3") as db:
        db.execute("UPDATE meta SET value = 'another release' WHERE name = 'renderer'")
        db.execute("UPDATE conversions SET renderer = 'another release'")
    db.close()


HUGO_CONFIG = """baseURL = "http://example.org/"
title = "arXiv Daily"
languageCode = "zh-cn"
paginate = 20
disableKinds = ["section"]
[taxonomies]
  category = "categories"
[markup.goldmark.renderer]
  unsafe = true
[frontmatter]
  date = [":filename", ":default"]
[outputs]
  home = ["HTML", "RSS"]
  taxonomy = ["HTML"]
  term = ["HTML", "RSS"]
[permalinks]
  posts = "/:year/:month/:day/:slug/"
"""
HUGO_LAYOUTS = {
    "_default/baseof.html": "<!doctype html><html><head><meta charset=utf-8><title>{{ .Title }}</title></head>"
    '<body>{{ block "main" . }}{{ end }}</body></html>\n',
    "_default/single.html": '{{ define "main" }}<article data-pagefind-body><h1>{{ .Title }}</h1>{{ .Content }}'
    "</article>{{ end }}\n",
    "_default/list.html": '{{ define "main" }}<h1>{{ .Title }}</h1><ul>{{ range .Paginator.Pages }}'
    '<li><a href="{{ .RelPermalink }}">{{ .Title }}</a> {{ .Date.Format "2006-01-02" }}</li>{{ end }}</ul>'
    "{{ end }}\n",
    "index.html": '{{ define "main" }}<ul>{{ range (.Paginate site.RegularPages).Pages }}'
    '<li><a href="{{ .RelPermalink }}">{{ .Title }}</a></li>{{ end }}</ul>{{ end }}\n',
    "_default/rss.xml": "{{ $pages := .Pages }}{{ if .IsHome }}{{ $pages = site.RegularPages }}{{ end }}"
    '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>{{ .Title }}</title>'
    "{{ range first 10 $pages }}<item><title>{{ .Title }}</title><link>{{ .Permalink }}</link>"
    "<description>{{ .Content | html }}</description></item>{{ end }}</channel></rss>\n",
}
_CATEGORIES = re.compile(r"^- \*\*Categories\*\*: (.*)$", re.M)


def hugo(posts: Path, work: Path) -> dict[str, float] | None:
    """Hugo on the same posts: a post page each, the paginated home page, a page and a feed (full
    content) per category, and the home feed; None when Hugo is not installed. Daily posts get the
    categories of their papers in the front matter, which is where Hugo looks for them."""
    if not shutil.which("hugo"):
        return None
    (work / "content" / "posts").mkdir(parents=True)
    (work / "config.toml").write_text(HUGO_CONFIG)
    for name, text in HUGO_LAYOUTS.items():
        (work / "layouts" / name).parent.mkdir(parents=True, exist_ok=True)
        (work / "layouts" / name).write_text(text)
    for post in posts.glob("*.md"):
        text = post.read_text(encoding="utf-8")
        found = dict.fromkeys(c.strip() for line in _CATEGORIES.findall(text) for c in line.split(","))
        if found:
            listed = ", ".join(json.dumps(c) for c in found)
            text = text.replace("\n---\n", f"\ncategories: [{listed}]\n---\n", 1)
        (work / "content" / "posts" / post.name).write_text(text, encoding="utf-8")
    found = sampled("hugo", ["hugo", "--source", str(work), "--destination", str(work / "public"), "--quiet"])
    return found | {"files": sum(len(names) for _, _, names in os.walk(work / "public"))}


def pagefind(site: Path) -> dict[str, Any] | None:
    """pagefind (``pip install 'pagefind[extended]'``, or its binary on the PATH) indexing Hugo's
    built posts, as a Hugo site gets search: the like-for-like anchor for ours, which includes its
    search index. Only the posts' articles are indexed (``data-pagefind-body``), as ours indexes the
    posts' papers. None when pagefind is not installed."""
    binary = shutil.which("pagefind_extended") or shutil.which("pagefind")
    if binary:
        command = [binary]
    elif importlib.util.find_spec("pagefind"):
        command = [sys.executable, "-m", "pagefind"]
    else:
        return None
    return sampled("pagefind", [*command, "--site", str(site), "--quiet"])


def jekyll(posts: Path, work: Path) -> float | None:
    """Jekyll 4 on the same posts (kramdown, a bare layout), or None when it is not installed."""
    if not shutil.which("jekyll"):
        return None
    (work / "_layouts").mkdir(parents=True)
    (work / "_layouts" / "post.html").write_text("<title>{{ page.title | escape }}</title>{{ content }}\n")
    (work / "_config.yml").write_text("markdown: kramdown\nkramdown:\n  parse_block_html: true\n")
    shutil.copytree(posts, work / "_posts")
    started = time.perf_counter()
    subprocess.run(["jekyll", "build", "--quiet", "--source", str(work)], check=True, cwd=work, capture_output=True)
    return time.perf_counter() - started


def _load() -> str:
    """Other work on the machine skews wall times; the CPU seconds printed beside them less so."""
    return Path("/proc/loadavg").read_text().split()[0]


def _row(name: str, result: dict[str, float], note: str = "") -> str:
    memory = f"{result['tree_mb']:.0f}" if "tree_mb" in result else ""
    return f"{name:26} {result['wall']:8.2f} {result['cpu']:8.1f} {memory:>8}  {note}  (load {_load()})"


def _verdict(value: float, target: float, unit: str, target_posts: int, posts: int) -> str:
    """A figure against its target, judged only at the number of posts the target is set for."""
    if posts != target_posts:
        return f"{value:.2f} {unit} at {posts:,} posts (the target, {target:g} {unit}, is for {target_posts:,})"
    return f"{value:.2f} {unit} at {posts:,} posts (target {target:g} {unit}: {'met' if value <= target else 'MISSED'})"


TEMPLATE_CHANGE = (
    '{% extends "!default/base.html" %}{% block head %}<meta name="generator" content="bench">{% endblock %}'
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=1000, help="1000 by default; 3000 and 10000 for the scale figures")
    parser.add_argument("--pages", action="store_true", help="one page per paper as well (pages.enabled)")
    parser.add_argument("--no-jekyll", action="store_true", help="skip the Jekyll comparison")
    parser.add_argument("--no-hugo", action="store_true", help="skip the Hugo comparison")
    parser.add_argument(
        "--pagefind",
        action="store_true",
        help="also index Hugo's posts with pagefind (pip install 'pagefind[extended]'): Hugo with search, like ours",
    )
    parser.add_argument(
        "--no-records",
        action="store_true",
        help="no records beside the posts: the seed system's posts, read by their Markdown",
    )
    parser.add_argument("--keep", type=Path, help="build here and keep the result (default: a temporary folder)")
    args = parser.parse_args()
    if not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists():
        parser.error("peak memory is read from /proc/<pid>/task/<tid>/children (Linux, CONFIG_PROC_CHILDREN)")
    if args.keep and args.keep.exists() and any(args.keep.iterdir()):
        parser.error(f"--keep {args.keep}: the folder is not empty (the benchmark times a build from nothing)")
    work = args.keep or Path(tempfile.mkdtemp(prefix="arxiv-digest-bench-"))
    try:
        posts, templates, config = work / "posts", work / "templates" / "site", site_config(work)
        write_posts(posts, args.posts + 1, pages=args.pages, records=not args.no_records)
        newest = max(posts.glob("*.md")).name[:10]
        held = work / "held"
        held.mkdir()
        for extra in [*posts.glob(f"{newest}-*.md"), *posts.glob(f".{newest}-*.md.json")]:
            extra.rename(held / extra.name)  # the newest day is added later, for the incremental build
        size = sum(p.stat().st_size for p in posts.glob("*.md")) / 2**20
        pages = f" + {args.posts * PAPERS_PER_POST} paper pages" if args.pages else ""
        records = "no records (seed posts)" if args.no_records else "with their records"
        print(
            f"{args.posts} posts x {PAPERS_PER_POST} papers{pages}, {size:.0f} MB of Markdown, {records}; "
            f"{os.cpu_count()} CPUs (wall times grow with the load average, CPU times less)"
        )
        print(f"{'':26} {'wall s':>8} {'CPU s':>8} {'peak MB':>8}")
        full = build(config)
        print(_row("ours, full build", full, f"{full['written']} files, {full['converted']} conversions"))
        # no search index, like Hugo's site (kept until the end: deleting its files now would
        # slow the next build's file creation, see README)
        bare = build(site_config(work, search=False))
        print(_row("ours, without search", bare, f"{bare['written']} files (site.search: false)"))
        found = None if args.no_hugo else hugo(posts, work / "hugo")
        searched = None
        if found:
            print(_row("hugo, full build", found, f"{found['files']:.0f} files"))
            indexed = pagefind(work / "hugo" / "public") if args.pagefind else None
            if indexed:
                searched = {key: found[key] + indexed[key] for key in ("wall", "cpu")}
                searched["tree_mb"] = max(found["tree_mb"], indexed["tree_mb"])
                note = f"pagefind {indexed['wall']:.2f} s, {indexed['cpu']:.1f} CPU-s, {indexed['tree_mb']:.0f} MB"
                print(_row("hugo + pagefind", searched, note))
            elif args.pagefind:
                print("pagefind: not installed (pip install 'pagefind[extended]')")
        else:
            print("hugo: " + ("skipped" if args.no_hugo else "not installed"))
            if args.pagefind:
                print("pagefind: skipped (it indexes Hugo's build)")

        (templates / "base.html").write_text(TEMPLATE_CHANGE, encoding="utf-8")
        changed = build(config)
        note = f"{changed['written']} files written, {changed['converted']} conversions"
        print(_row("ours, template change", changed, note))

        as_left_by_another_release(work)
        upgraded = build(config)
        note = f"{upgraded['written']} files written, {upgraded['converted']} conversions"
        print(_row("ours, after an upgrade", upgraded, note))

        additions = []
        for number in range(ADDITIONS):
            if number:  # the post taken out again (a build not reported), to be added once more
                for extra in [*posts.glob(f"{newest}-*.md"), *posts.glob(f".{newest}-*.md.json")]:
                    extra.rename(held / extra.name)
                build(config)
            for extra in held.iterdir():
                extra.rename(posts / extra.name)
            additions.append(build(config))
        additions.sort(key=lambda result: result["wall"])
        added = additions[len(additions) // 2]
        note = (
            f"median of {ADDITIONS} ({additions[0]['wall']:.2f}-{additions[-1]['wall']:.2f} s); {added['written']} "
            f"files written, {added['skipped']} unchanged, {added['converted']} conversions"
        )
        print(_row("ours, + one post", added, note))
        state = sum(p.stat().st_size for p in (work / "state" / "site-build").iterdir()) / 2**20
        print(f"build state {state:.0f} MB (outside the site folder)")

        seconds = None if args.no_jekyll else jekyll(posts, work / "jekyll")
        if seconds is None:
            print("jekyll: " + ("skipped" if args.no_jekyll else "not installed"))
        else:
            print(f"{'jekyll, full build':26} {seconds:8.2f}")

        print("targets (issue 11):")
        if found:
            ratio, wall = full["cpu"] / found["cpu"], full["wall"] / found["wall"]
            print(f"  full build CPU / Hugo's: {ratio:.2f} (target <= 1), wall {wall:.2f}x Hugo's")
            ratio, wall = bare["cpu"] / found["cpu"], bare["wall"] / found["wall"]
            print(f"  like for like, without search: CPU {ratio:.2f}x and wall {wall:.2f}x Hugo's")
        if searched:
            ratio, wall = full["cpu"] / searched["cpu"], full["wall"] / searched["wall"]
            print(f"  like for like, with search: CPU {ratio:.2f}x and wall {wall:.2f}x Hugo + pagefind's")
        print(f"  full build wall:      {_verdict(full['wall'], 5, 's', 1000, args.posts)}")
        print(f"  without search:       {_verdict(bare['wall'], 5, 's', 1000, args.posts)}")
        print(f"  template change wall: {_verdict(changed['wall'], 2.5, 's', 1000, args.posts)}")
        print(f"  + one post wall:      {_verdict(added['wall'], 0.6, 's', 3000, args.posts)}")
        ratio = upgraded["cpu"] / full["cpu"]
        print(f"  after an upgrade:     {upgraded['cpu']:.1f} CPU-s, {ratio:.2f}x the full build's (no target)")
        peak = max(full["tree_mb"], changed["tree_mb"], upgraded["tree_mb"], added["tree_mb"])
        print(f"  peak memory:          {_verdict(peak, 300, 'MB', 3000, args.posts)}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
