"""Segments of the search index on disk: writing runs as dictionary shards and postings files,
reading them back, spilling runs of a large build to plain arrays, and merging (the format is
described in ``search_index``).
"""

from __future__ import annotations

import gzip
import itertools
import os
import shutil
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from .search_postings import Run, combine, decode_postings, encode_postings, index_papers, read_varint, varint
from .search_text import utf16_key

SHARD_BYTES = 4096  # a dictionary shard is cut once it holds this many bytes (before gzip)
INLINE_BYTES = 2048  # postings up to this size sit in the dictionary entry, longer ones in a file
FLUSH_PAPERS = 2048  # new papers buffered before they are spilled (a full build)


def gzip_bytes(data: bytes) -> bytes:
    """Deterministic gzip (no timestamp), so equal content gives equal files."""
    return gzip.compress(data, compresslevel=4, mtime=0)


@dataclass(frozen=True)
class SegmentInfo:
    """A written segment: its folder name under ``search/``, the first term (shortened) of each
    dictionary shard, its number of postings files, and the days of the papers it holds."""

    name: str
    bounds: tuple[str, ...]
    files: int
    days: frozenset[int]

    def paths(self) -> list[str]:
        return [f"{self.name}/d{k}.gz" for k in range(len(self.bounds))] + [
            f"{self.name}/p{k}.gz" for k in range(self.files)
        ]


class SegmentWriter:
    """Writes runs, in term order, as a segment's dictionary shards and postings files."""

    def __init__(self, folder: Path, name: str) -> None:
        self.folder = folder / name
        self.name = name
        self.bounds: list[str] = []
        self.files = 0
        self.days: set[int] = set()
        self._shard = bytearray()
        self._first = ""
        self._last = ""
        self._previous_last = ""
        self.folder.mkdir(parents=True, exist_ok=True)

    def write(self, run: Run) -> None:
        for piece in run.pieces():
            self._write(piece)

    def _write(self, run: Run) -> None:
        self.days.update(int(d) for d in run.days())
        buffer, offsets, gap_lens = encode_postings(run)
        entries = zip(run.terms, run.df.tolist(), offsets.tolist(), gap_lens.tolist(), strict=True)
        for term, df, offset, gap_len in entries:
            blob = buffer[offset : offset + gap_len + df]
            name = term.encode("utf-8")
            head = varint(len(name)) + name + varint(df) + varint(gap_len)
            if len(blob) <= INLINE_BYTES:
                entry = head + varint(0) + blob
            else:
                (self.folder / f"p{self.files}.gz").write_bytes(gzip_bytes(blob))
                self.files += 1
                entry = head + varint(self.files)
            if not self._shard:
                self._first = term
            self._shard += entry
            self._last = term
            if len(self._shard) >= SHARD_BYTES:
                self._cut()

    def _cut(self) -> None:
        (self.folder / f"d{len(self.bounds)}.gz").write_bytes(gzip_bytes(bytes(self._shard)))
        self.bounds.append(_shortest_bound(self._first, self._previous_last))
        self._previous_last = self._last
        self._shard = bytearray()

    def close(self) -> SegmentInfo:
        if self._shard:
            self._cut()
        return SegmentInfo(self.name, tuple(self.bounds), self.files, frozenset(self.days))


def _shortest_bound(first: str, previous_last: str) -> str:
    """The shortest prefix of a shard's first term that still sorts after the previous shard's last
    term: the reader only needs to know which shard a term falls in."""
    if not previous_last:
        return ""
    key = utf16_key(previous_last)
    for end in range(1, len(first) + 1):
        if utf16_key(first[:end]) > key:
            return first[:end]
    return first


def parse_shard(data: bytes) -> list[tuple[str, int, int, int, bytes]]:
    """A dictionary shard's entries: (term, df, gap-bytes length, postings file number + 1 or 0,
    inline postings)."""
    entries = []
    pos = 0
    while pos < len(data):
        size, pos = read_varint(data, pos)
        term = data[pos : pos + size].decode("utf-8")
        df, pos = read_varint(data, pos + size)
        gap_len, pos = read_varint(data, pos)
        file, pos = read_varint(data, pos)
        inline = b""
        if not file:
            inline = data[pos : pos + gap_len + df]
            pos += gap_len + df
        entries.append((term, df, gap_len, file, inline))
    return entries


def read_segment(folder: Path, info: SegmentInfo) -> Iterator[Run]:
    """A segment's postings, one run per dictionary shard."""
    for shard in range(len(info.bounds)):
        entries = parse_shard(gzip.decompress((folder / info.name / f"d{shard}.gz").read_bytes()))
        blobs = [
            gzip.decompress((folder / info.name / f"p{file - 1}.gz").read_bytes()) if file else inline
            for _, _, _, file, inline in entries
        ]
        yield decode_postings(
            [e[0] for e in entries], np.array([e[1] for e in entries], np.int64), blobs, [e[2] for e in entries]
        )


def spill(run: Run, path: Path) -> None:
    """A run saved as plain arrays, for a build that must merge more papers than fit in memory."""
    path.mkdir(parents=True)
    (path / "terms").write_text("\n".join(run.terms), encoding="utf-8")
    for name in ("df", "ids", "impacts"):
        np.save(path / f"{name}.npy", getattr(run, name))


def read_spill(path: Path, postings: int = 1 << 16) -> Iterator[Run]:
    """A spilled run back, about ``postings`` postings at a time (the arrays are memory-mapped)."""
    df = np.load(path / "df.npy")
    ends = np.cumsum(df)
    ids = np.load(path / "ids.npy", mmap_mode="r")
    impacts = np.load(path / "impacts.npy", mmap_mode="r")
    with open(path / "terms", encoding="utf-8") as lines:
        terms = (line.rstrip("\n") for line in lines)
        term = posting = 0
        while term < len(df):
            cut = max(int(np.searchsorted(ends, posting + postings, side="right")), term + 1)
            end = int(ends[cut - 1])
            chunk = list(itertools.islice(terms, cut - term))
            yield Run(chunk, df[term:cut], np.array(ids[posting:end]), np.array(impacts[posting:end]))
            term, posting = cut, end


def merge_runs(sources: Sequence[Iterable[Run]]) -> Iterator[Run]:
    """Runs from several sorted sources as one sorted stream: each step takes, from every source,
    the terms up to the smallest last term among their pending runs, so memory holds one run each."""
    streams = [(run for run in s if len(run)) for s in sources]
    pending: list[Run | None] = [next(s, None) for s in streams]
    while True:
        live = [i for i, run in enumerate(pending) if run is not None]
        if not live:
            return
        last = min(utf16_key(pending[i].terms[-1]) for i in live)  # type: ignore[union-attr]
        heads = []
        for i in live:
            head, tail = pending[i].split(last)  # type: ignore[union-attr]
            heads.append(head)
            pending[i] = tail if len(tail) else next(streams[i], None)
        yield combine(heads)


def tokenised(batches: Iterator[list[tuple[int, list[tuple[float, str]]]]], parallel: bool) -> Iterator[Run]:
    """The batches' runs in order; tokenised in worker processes for a large build (a full one), a
    few batches ahead so that memory holds only those."""
    cpus = os.cpu_count() or 1
    if not parallel or cpus < 2:
        yield from map(index_papers, batches)
        return
    # fork is cheapest but unsafe once other threads run (serve builds beside its server threads)
    context = get_context("fork" if threading.active_count() == 1 else "forkserver")
    with ProcessPoolExecutor(min(cpus, 8), mp_context=context) as pool:
        pending: deque[Future[Run]] = deque()
        for batch in batches:
            pending.append(pool.submit(index_papers, batch))
            if len(pending) > 2 * cpus:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


class SegmentNames:
    """Segment folder names: never reused, so a browser may cache segment files for good."""

    def __init__(self, counter: int) -> None:
        self.counter = counter

    def next(self) -> str:
        number, digits = self.counter, ""
        self.counter += 1
        while True:
            number, rest = divmod(number, 36)
            digits = "0123456789abcdefghijklmnopqrstuvwxyz"[rest] + digits
            if not number:
                return "s" + digits


def write_segment(folder: Path, name: str, sources: Sequence[Iterable[Run]]) -> SegmentInfo:
    writer = SegmentWriter(folder, name)
    for run in merge_runs(sources):
        writer.write(run)
    info = writer.close()
    if not info.days:
        shutil.rmtree(folder / name, ignore_errors=True)
    return info


class RunBuffer:
    """Runs made into one segment. Past ``FLUSH_PAPERS`` (a full build) the buffer is spilled to
    plain arrays in ``spill_dir`` and the spills merged at the end, so memory stays bounded and the
    published folder gets each file once."""

    def __init__(self, folder: Path, names: SegmentNames, spill_dir: Path) -> None:
        self.folder, self.names, self.spill_dir = folder, names, spill_dir
        self.runs: list[Run] = []
        self.papers = 0
        self.spills: list[Path] = []

    def add(self, run: Run) -> None:
        if len(run):
            self.runs.append(run)
            self.papers += len(np.unique(run.ids))
            if self.papers >= FLUSH_PAPERS:
                self._spill()

    def _spill(self) -> None:
        if self.runs:
            path = self.spill_dir / f"spill-{len(self.spills)}"
            shutil.rmtree(path, ignore_errors=True)
            spill(combine(self.runs), path)
            self.spills.append(path)
        self.runs, self.papers = [], 0

    def close(self) -> list[SegmentInfo]:
        if not self.spills:
            return [write_segment(self.folder, self.names.next(), [[combine(self.runs)]])] if self.runs else []
        self._spill()
        try:
            return [write_segment(self.folder, self.names.next(), [read_spill(p) for p in self.spills])]
        finally:
            for path in self.spills:
                shutil.rmtree(path, ignore_errors=True)
