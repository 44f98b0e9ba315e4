"""The static search index under ``search/``, fed one document per paper by the build.

An own index, not pagefind: ``pagefind[extended]`` installs from PyPI and segments Chinese, but on the
1,000-post benchmark it took 27.7 s and 2 GB of RSS, and it cannot update an index, so adding one
post would re-index the whole site.

The build's whole interface: ``write_document`` (in a worker, for each new or changed source: its
papers' documents; returns the tokens), ``SearchIndex`` (in the parent: merges the postings, writes
the shards) and ``listing`` (the live sources). ``static/search.js`` reads what these write.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from ..files import write_atomic

SEARCH_SHARDS = 128
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_RUN = re.compile(f"[{_CJK}]+")
_OTHER_WORD = re.compile(f"[^\\W_{_CJK}]+")
_MARKS = re.compile("[\u0300-\u036f]")


class SearchDocument(NamedTuple):
    """One paper as search finds and shows it. ``anchor`` is its heading in the post ("" for a paper
    page, or a paper whose heading was not found: the result links to the page itself)."""

    anchor: str
    title: str
    authors: str  # ", "-joined
    arxiv_id: str
    text: str  # the Chinese text, or whatever describes it


def normalize(text: str) -> str:
    """NFKC, lower case, accents dropped; search.js applies the same steps to queries and documents."""
    return _MARKS.sub("", unicodedata.normalize("NFD", unicodedata.normalize("NFKC", text).lower()))


def search_tokens(text: str) -> set[str]:
    """CJK runs as bigrams (a lone character as itself), other words by their first three characters."""
    text = normalize(text)
    tokens = {word[:3] for word in _OTHER_WORD.findall(text)}
    for run in _CJK_RUN.findall(text):
        tokens.update(map(str.__add__, run[:-1], run[1:]) if len(run) > 1 else (run,))
    return tokens


def shard_of(token: str) -> int:
    """First and last code point mixed; search.js computes the same to pick the file to fetch."""
    return (ord(token[0]) * 31 + ord(token[-1])) % SEARCH_SHARDS


def b36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if not number:
            return out


def document_path(search_id: int) -> str:
    return f"search/d/{b36(search_id)}.json"


def _tokens(documents: Iterable[Sequence[str]]) -> set[str]:
    return search_tokens(" ".join(" ".join(document[1:]) for document in documents))


def write_document(site_dir: Path, search_id: int, documents: Sequence[SearchDocument]) -> set[str]:
    """Write a source's documents under its search id; returns the tokens to index it by."""
    text = json.dumps([list(d) for d in documents], ensure_ascii=False, separators=(",", ":"))
    write_atomic(os.path.join(site_dir, document_path(search_id)), text, durable=False)
    return _tokens(documents)


class SearchIndex:
    """The shards: ``i/NN.json`` maps each token of shard NN to the base-36 ids of the sources holding
    it, ``posts.json`` lists the live ids with URL, date and title (newest first), ``d/ID.json``
    holds a source's papers as [anchor, title, authors, arXiv id, Chinese text].

    Postings name sources (~20 papers each), not papers: far fewer, and search.js checks every paper
    of a candidate for the query as a substring anyway, so the index only has to never miss. Ids only
    grow: a new or changed source is appended under a fresh id and its old id drops out of
    posts.json, so adding a post is one pass over the shards; they are rebuilt from the documents once
    dead ids pass a quarter of the live ones. Tokens are merged as sources arrive: holding every
    source's token set at once would cost hundreds of MB on a big site.
    """

    def __init__(self, site_dir: Path, live: int, next_id: int, rebuild: bool) -> None:
        self.site_dir = site_dir
        self.paths = [f"search/i/{n:02x}.json" for n in range(SEARCH_SHARDS)]
        missing = not all((site_dir / p).is_file() for p in self.paths)
        self.rebuild = rebuild or missing or next_id - live > live // 4
        self.postings: defaultdict[str, list[str]] = defaultdict(list)

    def add(self, postings: dict[str, str]) -> None:
        """Merge a batch's postings (token -> comma-joined ids)."""
        for token, ids in postings.items():
            self.postings[token].append(ids)

    def add_unchanged(self, search_id: int) -> None:
        """Re-index an unchanged source from its documents (when rebuilding)."""
        documents = json.loads((self.site_dir / document_path(search_id)).read_text(encoding="utf-8"))
        self.add(dict.fromkeys(_tokens(documents), b36(search_id)))

    def shards(self) -> Iterator[tuple[str, str | None]]:
        """Each shard's path and new text, or None when it is unchanged."""
        grouped: list[list[str]] = [[] for _ in self.paths]
        for token in self.postings:
            grouped[shard_of(token)].append(token)
        for rel, tokens in zip(self.paths, grouped, strict=True):
            if not (self.rebuild or tokens):
                yield rel, None
                continue
            shard: dict[str, str] = {}
            if not self.rebuild:
                shard = json.loads((self.site_dir / rel).read_text(encoding="utf-8"))
            for token in tokens:
                joined = ",".join(self.postings[token])
                shard[token] = f"{shard[token]},{joined}" if token in shard else joined
            yield rel, json.dumps(shard, ensure_ascii=False, separators=(",", ":"))


class Listed(NamedTuple):
    search_id: int
    url: str
    date: str
    title: str


def listing(sources: Iterable[Listed]) -> str:
    """``search/posts.json``: the live sources, newest first, and the number of shards."""
    listed = [[b36(s.search_id), s.url, s.date, s.title] for s in sources]
    return json.dumps({"shards": SEARCH_SHARDS, "posts": listed}, ensure_ascii=False, separators=(",", ":"))


def postings_of(batch: Iterable[tuple[int, set[str]]]) -> dict[str, str]:
    """A batch's sources and tokens as postings (token -> comma-joined ids): one dict per batch is far
    cheaper to send back from a worker and to merge than a token set per source."""
    postings: defaultdict[str, list[str]] = defaultdict(list)
    for search_id, tokens in batch:
        source = b36(search_id)
        for token in tokens:
            postings[token].append(source)
    return {token: ",".join(ids) for token, ids in postings.items()}
