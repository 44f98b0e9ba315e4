"""The site's search index: one hit per paper, a bounded download per query, incremental updates.

The site build hands every paper of a changed page (a daily post, or a per-paper page) to a
``SearchIndexWriter`` as a ``SearchDoc``; ``finish()`` writes the files below into the published
``search/`` folder and keeps a small SQLite state elsewhere. ``search_query`` reads the index the way
``templates/site/static/search.js`` does. Terms are defined in ``search_text``.

On-disk format (every file is gzip, written by us, so the bytes a browser downloads do not depend on
the web server; search.js inflates them with ``DecompressionStream``):

* ``meta.gz`` (JSON; fetched first, never cached): ``{"format": 1, "generation": g, "papers": N,
  "slot_bits": 12, "records_per_file": 10, "segments": [{"name": "s1f", "bounds": [...]}, ...]}``.
* A paper's id is ``day * 4096 + slot``: ``day`` counts days since 1970-01-01 (the paper's date),
  ``slot`` its place among that day's papers, pages in URL order and a page's papers in order. Ids
  follow from the content alone, so an incremental build numbers papers as a full one does, and
  ties in score are broken by id (newer day first, then slot).
* A segment ``<name>/`` holds the postings of some papers (a paper's postings live in exactly one
  segment; names are never reused, so its files can be cached for good). ``d<k>.gz`` are its
  dictionary shards, terms sorted in UTF-16 order and cut every ~16 KB; ``bounds[k]`` is the shortest
  prefix of shard k's first term that sorts after shard k-1's last term. A shard is columnar:
  ``u32 count, u32 terms bytes``, then ``count`` u32 each of df, gap bytes and file, the terms in
  UTF-8 joined by newlines, and the inline postings one after another (all little-endian). ``file``
  0 means the term's postings are inline; ``f`` > 0 means they are in ``p<f-1>.gz`` (over 16 KB).
  Postings: the ids as LEB128 gaps (the first one from 0), then one impact byte (1..32) per id.
* ``r/<day>.<n>.gz``: JSON list of the records of slots ``10n .. 10n+9`` of that day, what a result
  shows: ``{"u": URL, "d": date, "t": title, "h": Chinese title, "a": [first three authors], "n":
  number of authors, "c": [categories], "z": translation (for the snippet), "k": class, "g": [tags],
  "i": arXiv id}`` (empty fields left out; no explainer, which would double the records' size).
  Fetched only for the results shown.

Ranking: BM25 with fields weighted (``WEIGHTS``); the per-paper part (term frequency, length) is
stored as the impact, idf is applied by the reader from the df in the dictionary and ``papers``.

Updates: the newest ``HOT_DAYS`` days live in one small "hot" segment, rewritten by every build that
touches them (late papers change the last week's posts). A day that ages out goes to a new "cold"
segment; cold segments merge four of a size into one (levels of 256 x 4^k papers), so adding a post
writes one hot segment and one small cold one, and merges cost O(log N) rewrites per paper over
time. When a page changes, only its papers are tokenised again; the other papers of its day keep
their postings, moved to their new slots (``search_postings.remap``). A change to an older day
rewrites the segments holding that day (the only case whose cost grows with the site). No postings
are ever left dead: the dictionary's df is exact and results do not depend on the segment layout.
A full build (``fresh``) takes its own path: whole days numbered, their records written and their
papers tokenised in batches (``index_days``, which the site's worker processes run as they convert
posts), the batches gathered in id order (``add_days``), and each term's postings written once into
one cold and one hot segment (``search_bulk``, the encoded postings waiting in a temporary file),
with no merges. The state (``search-index.sqlite``, in a folder the caller gives, outside the
published site) holds each page's day, slots and digest, and the segment list; a state that does
not match the folder makes the next build a full one.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import shutil
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from .files import open_state, write_atomic
from .search_bulk import SegmentBuilder, TermTable
from .search_docs import (
    DIGESTS,
    EPOCH,
    FORMAT,
    META,
    STATE,
    SearchDoc,
    SearchIndexError,
    SearchUpdate,
    compact_json,
    doc_digest,
    docs_digest,
    page_digest,
    published_layout,
    record_json,
)
from .search_postings import SLOT_BITS, Run, combine, remap
from .search_segments import RunBuffer, SegmentInfo, SegmentNames, gzip_bytes, read_segment, write_segment
from .search_tokens import BatchPostings, batch_postings, index_papers

HOT_DAYS = 8
RECORDS_PER_FILE = 10
MERGE_FACTOR = 4
LEVEL_PAPERS = 256
BATCH_PAPERS = 512  # tokenised at once: larger batches only add cache misses


_Changes = dict[str, tuple[int | None, int | None]]  # page -> (old day, new day), None for none


def _records_path(day: int, number: int) -> str:
    return f"r/{day}.{number}.gz"


def _days_to_ranges(days: Iterable[int]) -> list[list[int]]:
    ranges: list[list[int]] = []
    for day in sorted(days):
        if ranges and ranges[-1][1] == day - 1:
            ranges[-1][1] = day
        else:
            ranges.append([day, day])
    return ranges


def _segment_to_json(info: SegmentInfo) -> dict[str, Any]:
    return {"name": info.name, "bounds": list(info.bounds), "files": info.files, "days": _days_to_ranges(info.days)}


def _segment_from_json(data: dict[str, Any]) -> SegmentInfo:
    days = frozenset(d for low, high in data["days"] for d in range(low, high + 1))
    return SegmentInfo(data["name"], tuple(data["bounds"]), data["files"], days)


class SearchIndexWriter:
    """Add the papers of changed pages (``add``), drop deleted pages (``remove``), then ``finish``.

    A page given to ``add`` in this build is replaced by exactly the papers added for it; pages not
    mentioned keep theirs. When ``fresh`` is true (first build, ``rebuild=True``, or a state that
    does not match the folder) the index starts empty and every page must be added.
    """

    def __init__(self, folder: Path, state_dir: Path, *, rebuild: bool = False, hot_days: int = HOT_DAYS) -> None:
        self.folder = folder
        self.state_dir = state_dir
        self.hot_days = hot_days
        state_dir.mkdir(parents=True, exist_ok=True)
        self.db, self.layout = open_state(state_dir / STATE, self._layout)
        self.fresh = rebuild or self.layout is None
        if self.fresh:
            self.db.execute("DELETE FROM pages")
            self.layout = {"generation": 0, "next": 0, "hot": None, "cold": []}
        self._docs: dict[str, list[SearchDoc]] = {}  # page -> its papers added in this build
        self._removed: set[str] = set()
        self._builders: tuple[SegmentBuilder, SegmentBuilder] | None = None  # a full build's (cold, hot)
        self._fresh_written: list[str] = []
        self._prepared: tuple[dict[str, Any], SegmentNames] | None = None  # layout, names (``prepare_fresh``)
        self.db.execute("BEGIN")  # one transaction per build: SQLite commits cost a sync each

    def _layout(self, db: sqlite3.Connection) -> dict[str, Any] | None:
        """The layout the state ``db`` (its tables made when missing) has for the published index."""
        db.executescript(
            """
            PRAGMA journal_mode = WAL;
            CREATE TABLE IF NOT EXISTS pages (page TEXT PRIMARY KEY, day INTEGER NOT NULL, first INTEGER NOT NULL,
                                              papers INTEGER NOT NULL, digest TEXT NOT NULL);
            CREATE INDEX IF NOT EXISTS pages_by_day ON pages (day);
            CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            """
        )
        return published_layout(db, self.folder)

    def add(self, doc: SearchDoc) -> None:
        if self._builders is not None:
            raise ValueError("a full build takes its days either indexed (add_days) or as documents (add)")
        page, day = doc.page, doc.day
        if day < 0:
            raise SearchIndexError(f"{doc.url}: date {doc.date} is before 1970")
        docs = self._docs.setdefault(page, [])
        if docs and docs[0].day != day:
            raise SearchIndexError(f"{doc.url}: papers of one page must share its date")
        docs.append(doc)  # the caller holds the documents anyway: kept as they are, not copied
        self._removed.discard(page)

    def remove(self, page: str) -> None:
        """Drop a page (a deleted post) and its papers."""
        self._docs.pop(page, None)
        self._removed.add(page)

    def close(self) -> None:
        self.db.close()

    # -----------------------------------------------------------------------------------------------

    def finish(self) -> SearchUpdate:
        """Write what changed; returns the files written and removed (relative to the folder)."""
        if self.fresh:
            return self.publish_fresh(self.prepare_fresh()())
        layout = self._begin_finish()
        changes = self._changes()
        if not changes:
            return self._done(layout, (), ())
        dirty = sorted({d for old, new in changes.values() for d in (old, new) if d is not None})
        newest = self._newest_day(changes)
        cutoff = newest - self.hot_days + 1 if newest is not None else 0
        names = SegmentNames(layout["next"])
        old = [_segment_from_json(s) for s in layout["cold"]]
        hot = _segment_from_json(layout["hot"]) if layout["hot"] else None
        written: list[str] = []
        removed: list[str] = []

        moves: dict[int, np.ndarray] = {}
        hot_runs: list[Run] = []
        fresh_cold = RunBuffer(self.folder, names, self.state_dir)
        for run in map(index_papers, self._index_days(dirty, changes, moves, written, removed)):
            days = run.ids >> SLOT_BITS
            hot_runs.append(run.select(days >= cutoff))
            fresh_cold.add(run.select(days < cutoff))
        cold = [s for s in old if not s.days & moves.keys()]
        for segment in [s for s in old if s.days & moves.keys()]:  # an older day changed: renumber it here
            tables = {d: t for d, t in moves.items() if d in segment.days}
            renumbered = (remap(run, tables) for run in self._read(segment))
            cold.append(write_segment(self.folder, names.next(), [renumbered]))
        hot_runs = [r for r in hot_runs if len(r)]
        new_hot = hot
        if hot is not None and (moves.keys() & hot.days or min(hot.days) < cutoff or hot_runs):
            tables = {d: t for d, t in moves.items() if d in hot.days}
            runs = [remap(run, tables) for run in self._read(hot)]
            aged = [r.select(r.ids >> SLOT_BITS < cutoff) for r in runs]  # days now older than the hot window
            cold.append(write_segment(self.folder, names.next(), [aged]))
            hot_runs += [r.select(r.ids >> SLOT_BITS >= cutoff) for r in runs]
            new_hot = None
        if new_hot is None and hot_runs:
            new_hot = write_segment(self.folder, names.next(), [[combine(hot_runs)]])
        cold += fresh_cold.close()
        cold = self._merge_levels([s for s in cold if s.days], names)
        return self._publish(layout, names, old, hot, cold, new_hot, written, removed, len(dirty))

    def _publish(
        self,
        layout: dict[str, Any],
        names: SegmentNames,
        old: list[SegmentInfo],
        hot: SegmentInfo | None,
        cold: list[SegmentInfo],
        new_hot: SegmentInfo | None,
        written: list[str],
        removed: list[str],
        days: int,
    ) -> SearchUpdate:
        """Old segments removed, ``meta.gz`` and the state written for the segments ``cold`` and ``new_hot``."""
        segments = [*cold, *([new_hot] if new_hot and new_hot.days else [])]
        kept = {s.name for s in segments}
        for segment in [*old, *([hot] if hot else [])]:
            if segment.name not in kept:
                removed += segment.paths()
        for entry in self.folder.iterdir() if self.folder.is_dir() else ():
            if entry.is_dir() and entry.name.startswith("s") and entry.name not in kept:
                shutil.rmtree(entry)  # replaced segments, and ones merged within this build
        old_names = {s.name for s in old} | ({hot.name} if hot else set())
        written += [p for s in segments if s.name not in old_names for p in s.paths()]
        total = self.db.execute("SELECT COALESCE(SUM(papers), 0) FROM pages").fetchone()[0]
        generation = layout["generation"] + 1
        meta = {
            "format": FORMAT,
            "generation": generation,
            "papers": total,
            "slot_bits": SLOT_BITS,
            "records_per_file": RECORDS_PER_FILE,
            "segments": [{"name": s.name, "bounds": list(s.bounds)} for s in segments],
        }
        write_atomic(self.folder / META, gzip_bytes(json.dumps(meta, ensure_ascii=False).encode()), durable=False)
        written.append(META)
        if self.fresh:
            removed += self._remove_strays(set(written))
        layout = {
            "format": FORMAT,
            "digests": DIGESTS,
            "complete": True,
            "generation": generation,
            "next": names.counter,
            "hot": _segment_to_json(new_hot) if new_hot and new_hot.days else None,
            "cold": [_segment_to_json(s) for s in cold],
        }
        return self._done(layout, written, removed, days)

    def hot_cutoff(self, newest_day: int) -> int:
        """The first day of the hot segment when ``newest_day`` is the newest day with papers."""
        return newest_day - self.hot_days + 1

    def add_days(self, indexed: IndexedDays) -> None:
        """A full build's papers of whole days, numbered, recorded and tokenised by ``index_days``
        (in a worker process, as the site's posts are converted), in ascending order of days."""
        if not self.fresh or self._docs:
            raise ValueError("add_days is for a full build, instead of add")
        if self._builders is None:
            self._builders = self._new_builders()
        self.db.executemany("INSERT INTO pages VALUES (?, ?, ?, ?, ?)", indexed.rows)
        self._fresh_written += indexed.written
        for hot, postings in indexed.postings:
            self._builders[hot].add(postings)

    def _new_builders(self) -> tuple[SegmentBuilder, SegmentBuilder]:
        """A full build's cold and hot segments, their postings spilled into the state folder."""
        table = TermTable()
        return SegmentBuilder(table, self.state_dir), SegmentBuilder(table, self.state_dir)

    def _begin_finish(self) -> dict[str, Any]:
        layout = self.layout
        assert layout is not None
        self._set_layout(layout | {"complete": False})  # a build killed from here on is followed by a full one
        self.db.execute("COMMIT")
        self.db.execute("BEGIN")
        return layout

    def prepare_fresh(self) -> Callable[[], tuple[SegmentInfo, SegmentInfo]]:
        """A build from nothing, up to writing its segments: the papers ``add``ed indexed here a few
        days at a time (unless the days came already indexed, through ``add_days``). Returns the
        writing of the segments (the bulk of it), which touches no state, so another process may run
        it; ``publish_fresh`` then finishes with what it returns."""
        if not self.fresh:
            raise ValueError("prepare_fresh is for a full build")
        layout = self._begin_finish()
        by_day: defaultdict[int, dict[str, list[SearchDoc]]] = defaultdict(dict)
        for page, docs in self._docs.items():
            by_day[docs[0].day][page] = docs
        self._docs = {}
        days = sorted(by_day)
        cutoff = self.hot_cutoff(days[-1]) if days else 0
        chunk: dict[str, list[SearchDoc]] = {}
        for day in days:
            chunk |= by_day.pop(day)
            if sum(map(len, chunk.values())) >= BATCH_PAPERS or day == days[-1]:
                self.add_days(index_days(self.folder, chunk, cutoff))
                chunk = {}
        names = SegmentNames(layout["next"])
        builders, self._builders = self._builders or self._new_builders(), None
        for builder in builders:
            builder.flush()
        self._prepared = layout, names
        return partial(_write_fresh, self.folder, builders, (names.next(), names.next()))

    def publish_fresh(self, segments: tuple[SegmentInfo, SegmentInfo]) -> SearchUpdate:
        """The segments (cold, hot) written for ``prepare_fresh`` made the index."""
        if self._prepared is None:
            raise ValueError("publish_fresh follows prepare_fresh")
        (layout, names), self._prepared = self._prepared, None
        cold, hot = segments
        days_indexed = self.db.execute("SELECT COUNT(DISTINCT day) FROM pages").fetchone()[0]
        written, self._fresh_written = self._fresh_written, []
        new_cold = [cold] if cold.days else []
        return self._publish(layout, names, [], None, new_cold, hot, written, [], days_indexed)

    def _done(
        self, layout: dict[str, Any], written: Sequence[str], removed: Sequence[str], days: int = 0
    ) -> SearchUpdate:
        self.layout = layout
        self._set_layout(layout)
        self._docs.clear()
        self._removed.clear()
        self.db.execute("COMMIT")
        self.db.execute("BEGIN")
        self.fresh = False
        total = self.db.execute("SELECT COALESCE(SUM(papers), 0) FROM pages").fetchone()[0]
        segments = len(layout["cold"]) + bool(layout["hot"])
        return SearchUpdate(tuple(sorted(set(written))), tuple(sorted(set(removed))), total, segments, days)

    def _read(self, segment: SegmentInfo) -> Iterator[Run]:
        try:
            yield from read_segment(self.folder, segment)
        except (OSError, EOFError, ValueError, IndexError) as exc:
            raise SearchIndexError(f"{self.folder / segment.name}: unreadable ({exc}); rebuild the site") from None

    def _set_layout(self, layout: dict[str, Any]) -> None:
        self.db.execute("INSERT OR REPLACE INTO kv VALUES ('layout', ?)", (json.dumps(layout),))

    def _changes(self) -> _Changes:
        """Pages whose papers changed. Pages added again with the same papers are not changes, so
        re-rendering a post costs nothing here."""
        old = {p: (d, digest) for p, d, digest in self.db.execute("SELECT page, day, digest FROM pages")}
        changes: _Changes = {}
        self._added: dict[str, tuple[int, str]] = {}
        for page, docs in self._docs.items():
            day = docs[0].day
            digest = docs_digest(docs)
            self._added[page] = (len(docs), digest)
            before = old.get(page)
            if before != (day, digest):
                changes[page] = (before[0] if before else None, day)
        for page in self._removed:
            if page in old and page not in self._added:
                changes[page] = (old[page][0], None)
        return changes

    def _newest_day(self, changes: _Changes) -> int | None:
        """The newest day that has papers after this build."""
        candidates = [new for _, new in changes.values() if new is not None]
        for day, page in self.db.execute("SELECT day, page FROM pages ORDER BY day DESC"):
            if page not in changes:
                candidates.append(day)
                break
        return max(candidates) if candidates else None

    def _index_days(
        self, dirty: list[int], changes: _Changes, moves: dict[int, np.ndarray], written: list[str], removed: list[str]
    ) -> Iterator[list[tuple[int, list[tuple[float, str]]]]]:
        """Renumber each dirty day (pages in URL order, a page's papers in order) and rewrite its
        records; the papers of changed pages come back in batches, as (id, fields). ``moves`` gets,
        for days that had papers, each old slot's new slot (-1: gone)."""
        old_rows = {
            day: self.db.execute(
                "SELECT page, first, papers, digest FROM pages WHERE day = ? ORDER BY page", (day,)
            ).fetchall()
            for day in dirty
        }
        batch: list[tuple[int, list[tuple[float, str]]]] = []
        for day in dirty:
            kept = {
                page: (first, papers, digest) for page, first, papers, digest in old_rows[day] if page not in changes
            }
            arriving = [p for p, (_, new) in changes.items() if new == day]
            old_records = _RecordReader(self.folder, day)
            old_count = sum(papers for _, _, papers, _ in old_rows[day])
            if old_count:
                moves[day] = np.full(1 << SLOT_BITS, -1, np.int64)
            records: list[str] = []
            rows = []
            for page in sorted([*kept, *arriving]):
                slot = len(records)
                if page in kept:
                    first, papers, digest = kept[page]
                    moves[day][first : first + papers] = np.arange(slot, slot + papers)
                    records += [old_records.get(first + i) for i in range(papers)]
                else:
                    docs = self._docs[page]
                    records += [record_json(doc) for doc in docs]
                    batch += [((day << SLOT_BITS) | (slot + i), doc.fields()) for i, doc in enumerate(docs)]
                    papers, digest = self._added[page]
                rows.append((page, day, slot, papers, digest))
            if len(records) > 1 << SLOT_BITS:
                raise SearchIndexError(f"{EPOCH + timedelta(days=day)}: {len(records)} papers in one day")
            self.db.execute("DELETE FROM pages WHERE day = ?", (day,))
            self.db.executemany("INSERT OR REPLACE INTO pages VALUES (?, ?, ?, ?, ?)", rows)
            written += self._write_records(day, records, old_count, removed)
            if len(batch) >= BATCH_PAPERS:
                yield batch
                batch = []
        if batch:
            yield batch

    def _write_records(self, day: int, records: list[str], old_count: int, removed: list[str]) -> list[str]:
        """A day's records, and the files its earlier records filled beyond them removed."""
        written = write_records(self.folder, day, records)
        for number in range(len(written), math.ceil(old_count / RECORDS_PER_FILE)):
            path = _records_path(day, number)
            (self.folder / path).unlink(missing_ok=True)
            removed.append(path)
        return written

    def _merge_levels(self, cold: list[SegmentInfo], names: SegmentNames) -> list[SegmentInfo]:
        """Merge the segments of the lowest level that has ``MERGE_FACTOR`` or more, until none has."""
        papers_by_day = dict(self.db.execute("SELECT day, SUM(papers) FROM pages GROUP BY day").fetchall())

        def level(segment: SegmentInfo) -> int:
            papers = sum(papers_by_day.get(d, 0) for d in segment.days)
            return int(math.log(max(papers, LEVEL_PAPERS) / LEVEL_PAPERS, MERGE_FACTOR))

        while True:
            by_level: defaultdict[int, list[SegmentInfo]] = defaultdict(list)
            for segment in cold:
                by_level[level(segment)].append(segment)
            full = [group for _, group in sorted(by_level.items()) if len(group) >= MERGE_FACTOR]
            if not full:
                return cold
            group = full[0]
            merged = write_segment(self.folder, names.next(), [self._read(s) for s in group])
            at = cold.index(group[0])
            cold = [s for s in cold if s not in group]
            cold.insert(at, merged)

    def _remove_strays(self, keep: set[str]) -> list[str]:
        """After a fresh build: every file in the folder that this build did not write."""
        strays = []
        for root, _, files in os.walk(self.folder):
            for name in files:
                rel = os.path.relpath(os.path.join(root, name), self.folder).replace(os.sep, "/")
                if rel not in keep:
                    os.unlink(os.path.join(root, name))
                    strays.append(rel)
        return strays


def _write_fresh(
    folder: Path, builders: tuple[SegmentBuilder, SegmentBuilder], names: tuple[str, str]
) -> tuple[SegmentInfo, SegmentInfo]:
    """A full build's cold and hot segment written from their builders (spent by it): files in the
    index's folder only, no state."""
    return builders[0].write(folder, names[0]), builders[1].write(folder, names[1])


@dataclass(frozen=True)
class IndexedDays:
    """The papers of some whole days as a full build adds them (``SearchIndexWriter.add_days``)."""

    rows: list[tuple[str, int, int, int, str]]  # per page: page, day, first slot, papers, digest
    written: list[str]  # the records files written
    postings: list[tuple[bool, BatchPostings]]  # batches in id order, each hot (True) or cold


def index_days(folder: Path, docs: dict[str, list[SearchDoc]], cutoff: int) -> IndexedDays:
    """Number the papers of ``docs`` (every page of each day they cover: pages in URL order, a page's
    papers in order), write their records into ``folder`` and tokenise them in batches of about
    ``BATCH_PAPERS``, a batch hot (days from ``cutoff``) or cold. Pure but for the records written,
    so worker processes run it."""
    pages_by_day: defaultdict[int, list[str]] = defaultdict(list)
    for page, page_docs in docs.items():
        pages_by_day[page_docs[0].day].append(page)
    rows = []
    written: list[str] = []
    postings: list[tuple[bool, BatchPostings]] = []
    batch: list[tuple[int, list[tuple[float, str]]]] = []
    previous = -1
    for day in sorted(pages_by_day):
        if day < 0:
            raise SearchIndexError(f"{pages_by_day[day][0]}: date {EPOCH + timedelta(days=day)} is before 1970")
        if batch and (len(batch) >= BATCH_PAPERS or day >= cutoff > previous):  # batches stay hot or cold
            postings.append((previous >= cutoff, batch_postings(batch)))
            batch = []
        records: list[str] = []
        for page in sorted(pages_by_day[day]):
            page_docs = docs[page]
            slot = len(records)
            page_records = [record_json(doc) for doc in page_docs]
            digest = page_digest([doc_digest(doc, r) for doc, r in zip(page_docs, page_records, strict=True)])
            rows.append((page, day, slot, len(page_docs), digest))
            records += page_records
            batch += [((day << SLOT_BITS) | (slot + i), doc.fields()) for i, doc in enumerate(page_docs)]
        if len(records) > 1 << SLOT_BITS:
            raise SearchIndexError(f"{EPOCH + timedelta(days=day)}: {len(records)} papers in one day")
        written += write_records(folder, day, records)
        previous = day
    if batch:
        postings.append((previous >= cutoff, batch_postings(batch)))
    return IndexedDays(rows, written, postings)


def write_records(folder: Path, day: int, records: list[str]) -> list[str]:
    """A day's records (each as JSON) in files of ``RECORDS_PER_FILE``; the paths written."""
    written = []
    for number in range(math.ceil(len(records) / RECORDS_PER_FILE)):
        chunk = records[number * RECORDS_PER_FILE : (number + 1) * RECORDS_PER_FILE]
        data = gzip_bytes(f"[{','.join(chunk)}]".encode())
        path = _records_path(day, number)
        target = folder / path
        if target.exists():  # a reader may be fetching it: replace it whole
            write_atomic(target, data, durable=False)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        written.append(path)
    return written


class _RecordReader:
    """The records of one day as written by the last build, read back a file at a time."""

    def __init__(self, folder: Path, day: int) -> None:
        self.folder, self.day = folder, day
        self.files: dict[int, list[dict[str, Any]]] = {}

    def get(self, slot: int) -> str:
        number, index = divmod(slot, RECORDS_PER_FILE)
        if number not in self.files:
            path = self.folder / _records_path(self.day, number)
            try:
                self.files[number] = json.loads(gzip.decompress(path.read_bytes()))
            except (OSError, EOFError, ValueError) as exc:
                raise SearchIndexError(f"{path}: unreadable ({exc}); rebuild the site") from None
        try:
            return compact_json(self.files[number][index])
        except IndexError:
            raise SearchIndexError(f"{self.folder}: records of day {self.day} are short; rebuild the site") from None
