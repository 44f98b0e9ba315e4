"""Searching the index that ``search_index`` writes: the same steps, requests and ranking as
``templates/site/static/search.js``, in Python. Tests and the benchmark use it to check results and
to count what a browser downloads; keep the two in step (``tests/test_search_browser.py`` compares
them on a real index in Chromium).

A query is parsed into clauses that a paper must all match (AND): a Latin word, a CJK bigram, a
word pair from a quoted phrase, or the last word being typed as a prefix (any of up to
``PREFIX_TERMS`` dictionary terms starting with it, the most frequent first). A paper's score is the
sum over clauses of idf x impact (the best alternative for a prefix), as integers so that Python and
JavaScript rank alike; ties go to the newer day, then the earlier slot. Requests come in at most four
rounds: ``meta.gz``; the dictionary shards holding the query's terms; postings files of long lists;
the records of the results shown. A quoted phrase is found through its word pairs and CJK bigrams,
so it needs no positions (exact for two words, near enough beyond).
"""

from __future__ import annotations

import bisect
import gzip
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .search_postings import decode_postings
from .search_segments import parse_shard
from .search_text import TOKEN, fold, is_cjk, pair, run_terms, utf16_key

PAGE_SIZE = 10
PREFIX_MIN = 3  # a Latin word being typed is completed from this many letters on
PREFIX_TERMS = 6
IDF_SCALE = 10000
_SEGMENTS = re.compile(r'"([^"]*)"?|([^"]+)')

Fetch = Callable[[list[str]], list[bytes]]  # one round: site-relative paths under search/ -> gzip bytes


@dataclass(frozen=True)
class Clause:
    """Terms of which a paper must have one; ``prefix`` instead asks the dictionary for them."""

    terms: tuple[str, ...] = ()
    prefix: str = ""


def parse(query: str) -> tuple[Clause, ...]:
    """The clauses of a query as typed (the last word is a prefix unless followed by a space or a
    quote)."""
    clauses: list[Clause] = []
    segments = list(_SEGMENTS.finditer(query))
    typing = bool(query) and not query[-1].isspace() and query[-1] != '"'
    for number, segment in enumerate(segments):
        quoted = segment[1] is not None
        found = TOKEN.findall(fold(segment[1] if quoted else segment[2]))
        last = number == len(segments) - 1
        if quoted:
            clauses += _phrase_clauses(found)
            continue
        for index, token in enumerate(found):
            prefix = typing and last and index == len(found) - 1
            if is_cjk(token):
                if prefix and len(token) == 1:
                    clauses.append(Clause(prefix=token))
                else:
                    clauses += [Clause((term,)) for term in run_terms(token)]
            elif prefix and len(token) >= PREFIX_MIN:
                clauses.append(Clause(prefix=token))
            else:
                clauses.append(Clause((token,)))
    return tuple(dict.fromkeys(clauses))


def _phrase_clauses(found: list[str]) -> list[Clause]:
    """Word pairs for Latin words that follow each other, bigrams for CJK runs."""
    out = []
    for index, token in enumerate(found):
        if is_cjk(token):
            out += [Clause((term,)) for term in run_terms(token)]
            continue
        before = index > 0 and not is_cjk(found[index - 1])
        after = index + 1 < len(found) and not is_cjk(found[index + 1])
        if after:
            out.append(Clause((pair(token, found[index + 1]),)))
        elif not before:
            out.append(Clause((token,)))
    return out


def _shard_of(bounds: Sequence[str], term: str) -> int:
    """The shard a term would be in, or -1 when it sorts before the first."""
    return bisect.bisect_right([utf16_key(b) for b in bounds], utf16_key(term)) - 1


def idf(papers: int, df: int) -> int:
    return math.floor(IDF_SCALE * math.log(1 + (papers - df + 0.5) / (df + 0.5)) + 0.5)


@dataclass
class Result:
    """A search's ranked paper ids, their count, the records fetched for the page shown, and what it cost."""

    ids: list[int] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    count: int = 0
    rounds: int = 0
    requests: int = 0
    bytes: int = 0
    by_round: list[int] = field(default_factory=list)
    fetched: list[list[str]] = field(default_factory=list)  # the paths of each round


class Searcher:
    """Runs queries against an index through ``fetch``, which gets one round of paths at a time."""

    def __init__(self, fetch: Fetch) -> None:
        self._fetch = fetch

    def _round(self, result: Result, paths: list[str]) -> list[bytes]:
        if not paths:
            return []
        result.rounds += 1
        result.requests += len(paths)
        result.fetched.append(list(paths))
        data = self._fetch(paths)
        result.bytes += sum(map(len, data))
        result.by_round.append(sum(map(len, data)))
        return [gzip.decompress(d) for d in data]

    def search(self, text: str, shown: int = PAGE_SIZE) -> Result:
        result = Result()
        query = parse(text)
        if not query:
            return result
        (meta_bytes,) = self._round(result, ["meta.gz"])
        meta = json.loads(meta_bytes)
        papers, slot_bits, per_file = meta["papers"], meta["slot_bits"], meta["records_per_file"]
        segments = meta["segments"]

        wanted: dict[str, set[int]] = {}
        for segment in segments:
            bounds = segment["bounds"]
            shards: set[int] = set()
            for clause in query:
                if clause.prefix:
                    low = max(_shard_of(bounds, clause.prefix), 0)
                    shards.update(range(low, _shard_of(bounds, clause.prefix + "\uffff") + 1))
                shards.update(k for k in (_shard_of(bounds, t) for t in clause.terms) if k >= 0)
            wanted[segment["name"]] = shards
        paths = [f"{name}/d{k}.gz" for name, shards in wanted.items() for k in sorted(shards)]
        entries: dict[str, list[tuple[str, tuple[int, int, int, bytes]]]] = {}  # term -> [(segment, entry)]
        for path, data in zip(paths, self._round(result, paths), strict=True):
            shard = parse_shard(data)
            for i, term in enumerate(shard.terms):
                df, gap_len, file = int(shard.df[i]), int(shard.gap_lens[i]), int(shard.files[i])
                inline = b"" if file else shard.inline[shard.offsets[i] : shard.offsets[i] + gap_len + df]
                entries.setdefault(term, []).append((path.split("/")[0], (df, gap_len, file, inline)))

        def df_of(term: str) -> int:
            return sum(e[0] for _, e in entries.get(term, ()))

        chosen: list[tuple[str, ...]] = []
        for clause in query:
            if clause.prefix:
                found = sorted(
                    (t for t in entries if t.startswith(clause.prefix)),
                    key=lambda t: (t != clause.prefix, -df_of(t), utf16_key(t)),
                )
                terms: list[str] = []
                total = 0
                for term in found[:PREFIX_TERMS]:
                    if terms and total + df_of(term) > papers:
                        break
                    terms.append(term)
                    total += df_of(term)
                chosen.append(tuple(terms))
            else:
                chosen.append(tuple(t for t in clause.terms if t in entries))
        if not all(chosen):
            return result

        needed = sorted({t for c in chosen for t in c})
        files = [(t, s, e) for t in needed for s, e in entries[t] if e[2]]
        paths = [f"{segment}/p{entry[2] - 1}.gz" for _, segment, entry in files]
        external = dict(zip(paths, self._round(result, paths), strict=True))
        postings: dict[str, dict[int, int]] = {}
        for term in needed:
            hits: dict[int, int] = {}
            for segment, (df, gap_len, file, inline) in entries[term]:
                blob = external[f"{segment}/p{file - 1}.gz"] if file else inline
                run = decode_postings([term], np.array([df]), blob, np.array([0]), np.array([gap_len]))
                hits.update(zip(run.ids.tolist(), run.impacts.tolist(), strict=True))
            postings[term] = hits

        scores: dict[int, int] | None = None
        for alternatives in sorted(chosen, key=lambda c: sum(len(postings[t]) for t in c)):
            best: dict[int, int] = {}
            for term in alternatives:
                weight = idf(papers, df_of(term))
                for paper, impact in postings[term].items():
                    if scores is None or paper in scores:
                        best[paper] = max(best.get(paper, 0), weight * impact)
            scores = best if scores is None else {p: s + best[p] for p, s in scores.items() if p in best}
        assert scores is not None
        slot_mask = (1 << slot_bits) - 1
        ranked = sorted(scores, key=lambda p: (-scores[p], -(p >> slot_bits), p & slot_mask))
        result.count = len(ranked)

        page = ranked[:shown]
        paths = list(dict.fromkeys(f"r/{p >> slot_bits}.{(p & slot_mask) // per_file}.gz" for p in page))
        records = dict(zip(paths, (json.loads(d) for d in self._round(result, paths)), strict=True))
        for paper in page:
            slot = paper & slot_mask
            result.ids.append(paper)
            result.records.append(records[f"r/{paper >> slot_bits}.{slot // per_file}.gz"][slot % per_file])
        return result


def folder_fetch(folder: Any) -> Fetch:
    """Fetch from a built ``search/`` folder on disk."""
    return lambda paths: [(folder / p).read_bytes() for p in paths]
