"""Search index benchmark: the paper-level index alone, on the posts ``bench/site.py`` generates.

Run as ``.venv/bin/python bench/search_build.py [--posts N] [--site] [--keep DIR]`` (``--posts 3000``
for the scale figures). The posts' papers become search documents as the site build makes them
(``site.search.post_docs`` from each post's record; anchors from the titles); the index is then
built in a child process from all but the newest day (full), and again after adding the newest
day's post (+ one post), each with its CPU time (user + system of the process and its workers),
wall time, files written and the peak PSS of its process tree. ``--site`` also runs the whole
site build (which writes the index too) for its figures and the index's share of the HTML.
``bench/search_replay.py``'s queries are then replayed against the index. Targets (issue 11): full
index <= ~3 CPU-s at 1,000 posts; + one post <= ~0.2 s at 3,000 and flat; peak <= ~150 MB at
3,000; the index <= 30% of the HTML; any query of 1-3 words <= 300 KB gzipped in <= 4 rounds.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pickle
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from search_replay import replay, report  # noqa: E402

from arxiv_digest.postformat import sidecar_path  # noqa: E402
from arxiv_digest.site.manifest import PaperLink, SourceInfo  # noqa: E402
from arxiv_digest.site.markdown import _kramdown_id, text_html  # noqa: E402
from arxiv_digest.site.search import post_docs  # noqa: E402
from arxiv_digest.site.sources import load_post  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_site", ROOT / "bench" / "site.py")
assert _spec and _spec.loader
bench_site = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_site)

INDEX_CHILD = """
import json, pickle, resource, sys, time
from pathlib import Path
from arxiv_digest.search_index import SearchIndexWriter

if __name__ == "__main__":
    folder, state, docs = map(Path, sys.argv[1:4])
    started = time.perf_counter()
    writer = SearchIndexWriter(folder, state)
    with open(docs, "rb") as file:
        for doc in pickle.load(file):
            writer.add(doc)
    update = writer.finish()
    print(json.dumps({
        "seconds": time.perf_counter() - started,
        "written": len(update.written),
        "removed": len(update.removed),
        "segments": update.segments,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))
"""


def child(code: str, *args: Path) -> dict[str, float]:
    """Run ``code`` in a child process (``bench_site.sampled``): its JSON result with the figures."""
    found = bench_site.sampled("the index's build", [sys.executable, "-c", code, *map(str, args)])
    result: dict[str, float] = json.loads(found.pop("stdout").strip().splitlines()[-1])
    return result | found


def documents(posts: list[Path]) -> list:
    """Each post's papers as the site build files them (anchors as kramdown gives the titles)."""
    docs = []
    for path in posts:
        body, record = load_post(path)
        links = tuple(
            PaperLink(_kramdown_id(p.title), text_html(p.title), p.categories, p.arxiv_id) for p in record.papers
        )
        url = f"{path.name[:10].replace('-', '/')}/arxiv.html"
        info = SourceInfo(path.name, "", record.title, record.date, url, record.tags, links)
        docs += post_docs(info, record, body)
    return docs


def _bytes(folder: Path, pattern: str = "*") -> int:
    return sum(p.stat().st_size for p in folder.rglob(pattern) if p.is_file())


def _row(name: str, result: dict[str, float], note: str) -> str:
    return f"{name:26} {result['wall']:8.2f} {result['cpu']:8.2f} {result['tree_mb']:8.0f}  {note}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=1000)
    parser.add_argument("--site", action="store_true", help="also run the whole site build (HTML size, index share)")
    parser.add_argument("--keep", type=Path, help="work here and keep the result (default: a temporary folder)")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="arxiv-digest-search-bench-"))
    try:
        posts = work / "posts"
        bench_site.write_posts(posts, args.posts + 1)
        daily = sorted(posts.glob("*-arxiv.md"))
        started = time.process_time()
        old, new = documents(daily[:-1]), documents(daily[-1:])
        extract = time.process_time() - started
        for name, docs in (("old", old), ("new", new)):
            with open(work / f"{name}.pickle", "wb") as file:
                pickle.dump(docs, file)
        load = Path("/proc/loadavg").read_text().split()[0]
        print(
            f"{args.posts} posts x {bench_site.PAPERS_PER_POST} papers = {len(old)} papers; load average {load} on "
            f"{os.cpu_count()} CPUs; making the documents from the records took {extract:.1f} CPU-s"
        )
        print(f"{'':26} {'wall s':>8} {'CPU s':>8} {'peak MB':>8}")
        index, state = work / "index" / "search", work / "index-state"
        full = child(INDEX_CHILD, index, state, work / "old.pickle")
        print(_row("index, full", full, f"{full['written']} files, {full['segments']} segments"))
        added = child(INDEX_CHILD, index, state, work / "new.pickle")
        print(_row("index, + one post", added, f"{added['written']} files written, {added['removed']} removed"))
        size = _bytes(index)
        line = f"index {size / 2**20:.1f} MB in {sum(1 for p in index.rglob('*') if p.is_file())} files"
        if args.site:
            daily[-1].rename(work / daily[-1].name)  # the newest post is added for the incremental build
            record = sidecar_path(daily[-1])
            record.rename(work / record.name)
            config = bench_site.site_config(work)  # no template of the user's: the packaged ones
            site = bench_site.build(config)
            print(_row("site with index, full", site, f"{site['written']} files"))
            (work / daily[-1].name).rename(daily[-1])
            (work / record.name).rename(record)
            more = bench_site.build(config)
            print(_row("site with index, + 1 post", more, f"{more['written']} files written"))
            html = _bytes(work / "site", "*.html")
            line += f" = {size / html:.0%} of the site's HTML ({html / 2**20:.0f} MB)"
        print(line)
        print(report(replay(index)))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
