"""Replay a fixed list of queries against a built search index, as search.js would run them in a fresh
browser tab (``arxiv_digest.search_query`` is its Python mirror), and print per query the gzipped
bytes downloaded, the rounds of requests and the number of requests.

Run as ``.venv/bin/python bench/search_replay.py SITE/search``. Targets (issue 11): any query of 1-3
words <= 300 KB in <= 4 rounds at 3,000 posts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from arxiv_digest.search_query import Result, Searcher, folder_fetch  # noqa: E402

QUERIES = (
    "audio spectrogram transformer",  # three English words
    "speech enhancement",
    '"speech enhancement"',  # a quoted phrase
    "diffusion model",
    "spe",  # a prefix being typed
    "speech enh",
    "Wang",  # author surnames, common and rarer
    "Watanabe",
    "语音增强",  # Chinese words
    "说话人",
    "方法",  # in every paper
    "语音 模型 数据",  # three Chinese words, all very common
)
BUDGET_BYTES, BUDGET_ROUNDS = 300_000, 4


def replay(folder: Path, queries: tuple[str, ...] = QUERIES) -> list[tuple[str, Result]]:
    searcher = Searcher(folder_fetch(folder))
    return [(query, searcher.search(query)) for query in queries]


def report(results: list[tuple[str, Result]]) -> str:
    lines = [f"{'query':32} {'found':>7} {'KB gz':>7} {'rounds':>6} {'requests':>8}  per round (KB)"]
    for query, result in results:
        rounds = " ".join(f"{b / 1000:.1f}" for b in result.by_round)
        over = "  OVER BUDGET" if result.bytes > BUDGET_BYTES or result.rounds > BUDGET_ROUNDS else ""
        figures = f"{result.count:7} {result.bytes / 1000:7.1f} {result.rounds:6} {result.requests:8}"
        lines.append(f"{query:32} {figures}  {rounds}{over}")
    worst = max(results, key=lambda item: item[1].bytes)
    lines.append(f"largest download: {worst[1].bytes / 1000:.1f} KB gz for {worst[0]!r}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="the search/ folder of a built site")
    args = parser.parse_args()
    print(report(replay(args.folder)))


if __name__ == "__main__":
    main()
