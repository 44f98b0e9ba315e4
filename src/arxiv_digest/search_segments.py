"""Segments of the search index on disk: writing runs as dictionary shards and postings files,
reading them back, spilling runs of a large build to plain arrays, and merging (the format is
described in ``search_index``).
"""

from __future__ import annotations

import gzip
import itertools
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .search_postings import Run, combine, decode_postings, encode_postings, ragged
from .search_text import utf16_key

SHARD_BYTES = 16384  # a dictionary shard is cut once it holds this many bytes (before gzip)
INLINE_BYTES = 16384  # postings up to this size sit in the dictionary entry, longer ones in a file
FLUSH_PAPERS = 4096  # new papers buffered before they are spilled (a large incremental update)


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
    """Writes runs, in term order, as a segment's dictionary shards and postings files.

    A shard is columnar, so both ends read it in bulk: ``u32 count, u32 terms bytes``, then
    ``count`` u32 each of df, gap bytes and file (0: postings inline, f: in ``p<f-1>.gz``), the terms
    in UTF-8 joined by newlines, and the inline postings one after another (little-endian)."""

    def __init__(self, folder: Path, name: str) -> None:
        self.folder = folder / name
        self.name = name
        self.bounds: list[str] = []
        self.files = 0
        self.days: set[int] = set()
        self._parts: list[tuple[list[str], np.ndarray, np.ndarray, np.ndarray, bytes]] = []
        self._size = 0
        self._previous_last = ""
        self.folder.mkdir(parents=True, exist_ok=True)

    def write(self, run: Run) -> None:
        for piece in run.pieces():
            self._write(piece)

    def _write(self, run: Run) -> None:
        self.days.update(run.days())
        buffer, offsets, gap_lens = encode_postings(run.df, run.ids, run.impacts)
        self.write_encoded(run.terms, run.df, gap_lens, np.frombuffer(buffer, np.uint8), offsets)

    def write_encoded(
        self, terms: list[str], df: np.ndarray, gap_lens: np.ndarray, data: np.ndarray, offsets: np.ndarray
    ) -> None:
        """Terms that follow the ones written so far, with their encoded postings: term i's bytes are
        ``data[offsets[i] : offsets[i] + gap_lens[i] + df[i]]``."""
        sizes = gap_lens + df
        files = np.zeros(len(terms), np.uint32)
        for index in np.flatnonzero(sizes > INLINE_BYTES).tolist():
            blob = data[offsets[index] : offsets[index] + sizes[index]].tobytes()
            (self.folder / f"p{self.files}.gz").write_bytes(gzip_bytes(blob))
            self.files += 1
            files[index] = self.files
        inline = files == 0
        names = np.fromiter(map(len, "\n".join(terms).encode().split(b"\n")), np.int64, len(terms))
        cost = np.cumsum(13 + names + np.where(inline, sizes, 0))
        start = 0
        while start < len(terms):
            base = int(cost[start - 1]) if start else 0
            end = int(np.searchsorted(cost, base + SHARD_BYTES - self._size)) + 1
            end = min(max(end, start + 1), len(terms))
            keep = np.flatnonzero(inline[start:end]) + start
            postings = data[ragged(offsets[keep], sizes[keep])].tobytes()
            columns = (df[start:end], gap_lens[start:end], files[start:end])
            self._parts.append((terms[start:end], *columns, postings))
            self._size += int(cost[end - 1]) - base
            start = end
            if self._size >= SHARD_BYTES:
                self._cut()

    def _cut(self) -> None:
        terms = [t for part in self._parts for t in part[0]]
        columns = [np.concatenate([part[i] for part in self._parts]).astype("<u4") for i in (1, 2, 3)]
        names = "\n".join(terms).encode()
        head = np.array([len(terms), len(names)], "<u4").tobytes()
        body = b"".join(c.tobytes() for c in columns) + names + b"".join(part[4] for part in self._parts)
        (self.folder / f"d{len(self.bounds)}.gz").write_bytes(gzip_bytes(head + body))
        self.bounds.append(_shortest_bound(terms[0], self._previous_last))
        self._previous_last = terms[-1]
        self._parts, self._size = [], 0

    def close(self) -> SegmentInfo:
        if self._parts:
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


@dataclass(frozen=True)
class Shard:
    """A parsed dictionary shard: per term its df, gap bytes and file (0: inline), and the inline
    postings with each inline term's offset into them."""

    terms: list[str]
    df: np.ndarray
    gap_lens: np.ndarray
    files: np.ndarray
    inline: bytes
    offsets: np.ndarray  # into ``inline``; meaningless for terms in a file


def parse_shard(data: bytes) -> Shard:
    count, size = (int(x) for x in np.frombuffer(data, "<u4", 2))
    df, gap_lens, files = (np.frombuffer(data, "<u4", count, 8 + 4 * count * i).astype(np.int64) for i in range(3))
    names_at = 8 + 12 * count
    terms = data[names_at : names_at + size].decode().split("\n")
    lengths = np.where(files == 0, gap_lens + df, 0)
    return Shard(terms, df, gap_lens, files, data[names_at + size :], np.cumsum(lengths) - lengths)


def read_segment(folder: Path, info: SegmentInfo) -> Iterator[Run]:
    """A segment's postings, one run per dictionary shard."""
    for number in range(len(info.bounds)):
        shard = parse_shard(gzip.decompress((folder / info.name / f"d{number}.gz").read_bytes()))
        buffer, offsets = shard.inline, shard.offsets.copy()
        external = np.flatnonzero(shard.files)
        if len(external):
            parts = [buffer]
            at = len(buffer)
            for index in external.tolist():
                parts.append(gzip.decompress((folder / info.name / f"p{shard.files[index] - 1}.gz").read_bytes()))
                offsets[index] = at
                at += len(parts[-1])
            buffer = b"".join(parts)
        yield decode_postings(shard.terms, shard.df, buffer, offsets, shard.gap_lens)


def spill(run: Run, path: Path) -> None:
    """A run saved as plain arrays, for a build that must merge more papers than fit in memory."""
    path.mkdir(parents=True)
    (path / "terms").write_text("\n".join(run.terms), encoding="utf-8")
    for name in ("df", "ids", "impacts"):
        np.save(path / f"{name}.npy", getattr(run, name))


def read_spill(path: Path, postings: int = 1 << 16) -> Iterator[Run]:
    """A spilled run back, about ``postings`` postings at a time: read in slices, not memory-mapped,
    whose pages would stay resident (a 3,000-post build spills ~250 MB)."""
    df = np.load(path / "df.npy")
    ends = np.cumsum(df)
    with (
        open(path / "terms", encoding="utf-8") as lines,
        _NpyReader(path / "ids.npy") as ids,
        _NpyReader(path / "impacts.npy") as impacts,
    ):
        terms = (line.rstrip("\n") for line in lines)
        term = posting = 0
        while term < len(df):
            cut = max(int(np.searchsorted(ends, posting + postings, side="right")), term + 1)
            end = int(ends[cut - 1])
            chunk = list(itertools.islice(terms, cut - term))
            yield Run(chunk, df[term:cut], ids.read(end - posting), impacts.read(end - posting))
            term, posting = cut, end


class _NpyReader:
    """Consecutive slices of a 1-d ``.npy`` file."""

    def __init__(self, path: Path) -> None:
        self.file = open(path, "rb")  # noqa: SIM115 - closed by __exit__
        if np.lib.format.read_magic(self.file) == (1, 0):
            _, _, self.dtype = np.lib.format.read_array_header_1_0(self.file)
        else:
            _, _, self.dtype = np.lib.format.read_array_header_2_0(self.file)

    def read(self, count: int) -> np.ndarray:
        return np.fromfile(self.file, self.dtype, count)

    def __enter__(self) -> _NpyReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()


def merge_runs(sources: Sequence[Iterable[Run]]) -> Iterator[Run]:
    """Runs from several sorted sources as one sorted stream: each step takes, from every source,
    the terms up to the smallest last term among their pending runs, so memory holds one run each."""
    streams = [(run for run in s if len(run)) for s in sources]
    pending: list[Run | None] = [next(s, None) for s in streams]
    while True:
        live = [i for i, run in enumerate(pending) if run is not None]
        if not live:
            return
        last = min((pending[i].terms[-1] for i in live), key=utf16_key)  # type: ignore[union-attr]
        heads = []
        for i in live:
            head, tail = pending[i].split(last)  # type: ignore[union-attr]
            heads.append(head)
            pending[i] = tail if len(tail) else next(streams[i], None)
        yield combine(heads)


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
    """Runs made into one segment. Past ``FLUSH_PAPERS`` (many old days changed at once; a full build
    has its own path in ``search_bulk``) the buffer is spilled to plain arrays in ``spill_dir`` and
    the spills merged at the end, so memory stays bounded and the published folder gets each file once."""

    def __init__(self, folder: Path, names: SegmentNames, spill_dir: Path) -> None:
        self.folder, self.names, self.spill_dir = folder, names, spill_dir
        self.runs: list[Run] = []
        self.papers = 0
        self.spills: list[Path] = []

    def add(self, run: Run) -> None:
        if len(run):
            self.runs.append(run)
            self.papers += len(set(run.ids.tolist()))
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
