"""The build state (inputs and outputs of the last build, and converted Markdown), kept in SQLite
outside the published folder; what it keeps of each source, and the digests that decide what is
stale."""

from __future__ import annotations

import gc
import hashlib
import json
import marshal
import sqlite3
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any, NamedTuple

import nh3
import pyromark
import zstandard

from ..files import open_state

STATE_FILE = "build.sqlite3"
SCHEMA = "6"
_QUERY_VALUES = 500  # values a query lists at most (SQLite's limit on parameters was 999 before 3.32)
_CODE = (Path(__file__).parent, Path(__file__).parents[1] / "postformat")
_DOCUMENTS_CODE = ("search", "markdown", "convert", "sources", "manifest")  # site modules that make search documents


class PaperLink(NamedTuple):
    """A paper of a daily post as listings link to it (a named tuple: the manifest holds one per paper
    of every post, and tuples load fastest)."""

    anchor: str  # its heading's id in the post, "" when the post has no heading for it
    title: str  # sanitised inline HTML
    categories: tuple[str, ...]
    arxiv_id: str


Groups = tuple[tuple[str, tuple[int, ...]], ...]  # categories, each with the indexes of its papers


class PackedLinks(Sequence[PaperLink]):
    """A daily post's paper links as the build state keeps them, decoded each time they are used
    and not kept: every build loads every source, but shows the papers of only the few it renders
    (decoding them all took a fifth of adding a post to 10,000), and the forked processes that
    render a full build's listings, which show every post's papers once, each kept 40 MB of them at
    3,000 posts."""

    __slots__ = ("_count", "packed")

    def __init__(self, packed: bytes, count: int) -> None:
        self.packed, self._count = packed, count

    def _decoded(self) -> tuple[PaperLink, ...]:
        return tuple(map(PaperLink._make, marshal.loads(self.packed)))

    def select(self, indexes: Iterable[int]) -> tuple[PaperLink, ...]:
        """The links at ``indexes``, the others left undecoded (a category listing shows a post's
        papers of that category)."""
        rows = marshal.loads(self.packed)
        return tuple(PaperLink._make(rows[i]) for i in indexes)

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: Any) -> Any:
        return self._decoded()[index]

    def __iter__(self) -> Iterator[PaperLink]:
        return iter(self._decoded())

    def __eq__(self, other: object) -> bool:
        # the same bytes first: a build compares every source it kept with what it had, and
        # decoding both sides' papers cost 0.1 s of a template change at 1,000 posts
        if isinstance(other, PackedLinks) and other.packed == self.packed:
            return True
        return isinstance(other, Sequence) and tuple(self) == tuple(other)

    def __hash__(self) -> int:
        return hash(self._decoded())


def _pack_links(papers: Sequence[PaperLink]) -> bytes:
    if isinstance(papers, PackedLinks):
        return papers.packed
    return marshal.dumps(tuple(tuple(p) for p in papers))


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """What the listings need to know about a source file, kept in the manifest between builds: a
    daily post, or a per-paper page (one with an ``arxiv_id``, its ``classes``, front-matter
    ``categories``: its class in the pipeline's taxonomy, and its English title)."""

    source: str
    digest: str
    title: str
    date: date
    url: str
    tags: tuple[str, ...]
    papers: Sequence[PaperLink] = ()
    stamp: str = ""  # size and mtime of the source and its record, to skip reading unchanged files
    arxiv_id: str = ""  # only on a per-paper page
    classes: tuple[str, ...] = ()
    en_title: str = ""  # a per-paper page's English title (sanitised inline HTML), once read
    # ``groups`` once worked out; bytes while as the state keeps them (``from_row``)
    _groups: Groups | bytes | None = field(default=None, init=False, compare=False, repr=False)

    @property
    def is_page(self) -> bool:
        return bool(self.arxiv_id)

    @property
    def categories(self) -> tuple[str, ...]:
        """Front-matter tags other than ``arxiv``, then every paper's categories, first seen first."""
        return tuple(name for name, _ in self.groups)

    @property
    def groups(self) -> Groups:
        """Each of ``categories`` with the indexes of its papers (kept in the manifest, so that the
        listings of a build group every post without decoding its papers)."""
        if isinstance(self._groups, bytes):
            object.__setattr__(self, "_groups", marshal.loads(self._groups))
        elif self._groups is None:
            found: dict[str, list[int]] = {name: [] for name in self.tags if name.lower() != "arxiv"}
            for index, paper in enumerate(self.papers):
                for name in dict.fromkeys(paper.categories):
                    found.setdefault(name, []).append(index)
            object.__setattr__(self, "_groups", tuple((name, tuple(found[name])) for name in found))
        return self._groups  # type: ignore[return-value]  # set just above

    @property
    def month(self) -> str:
        # not strftime, which is ten times slower: this runs for every post of every build
        return f"{self.date.year:04d}-{self.date.month:02d}"

    def packed(self) -> SourceInfo:
        """This source with its paper links packed as the build state keeps them (its groups worked
        out first): what a worker sends back, cheap to pickle and to hold for every post of a site."""
        packed = replace(self, papers=PackedLinks(_pack_links(self.papers), len(self.papers)))
        object.__setattr__(packed, "_groups", self.groups)
        return packed

    def to_row(self) -> tuple[str, str, bytes]:
        """The source, its digest and the rest as one marshal blob: 10,000 rows load in milliseconds
        (the paper links and the groups inside it as blobs of their own, decoded when used: every
        build loads every row, and needs the groups of the few posts it lists again; decoding all of
        them was a quarter of loading 3,000 rows, 13 of 55 ms)."""
        rest = (self.title, self.date.toordinal(), self.url, self.tags, _pack_links(self.papers), len(self.papers))
        more = (self.stamp, self.arxiv_id, self.classes, self.en_title, marshal.dumps(self.groups))
        return self.source, self.digest, marshal.dumps((*rest, *more))

    @classmethod
    def from_row(cls, source: str, digest: str, blob: bytes) -> SourceInfo:
        title, day, url, tags, links, count, stamp, arxiv_id, classes, en_title, groups = marshal.loads(blob)
        papers = PackedLinks(links, count)
        info = cls(source, digest, title, date.fromordinal(day), url, tags, papers, stamp, arxiv_id, classes, en_title)
        object.__setattr__(info, "_groups", groups)
        return info


def same(old: SourceInfo | None, new: SourceInfo | None) -> bool:
    """Whether a source is as it was: first by identity, since a build carries the object the state
    loaded for every unchanged source; comparing 21,000 of them field by field (1,000 posts with
    their paper pages), in the search plan and in saving the state, took ~0.07 s of adding a post."""
    return old is new or old == new


Order = tuple[date, str]  # a source's place in a listing: its date, then its name (newest first)


def order(info: SourceInfo) -> Order:
    return info.date, info.source


def digest(*parts: Any) -> str:
    return hashlib.blake2b(json.dumps(parts, default=str).encode(), digest_size=12).hexdigest()


def key(*parts: str) -> str:
    """``digest`` of strings, cheaper: it runs for every source of every build."""
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=12).hexdigest()


def file_digest(*parts: bytes) -> str:
    """A digest of bytes (of a post and its record's size and mtime: both, one after the other)."""
    hasher = hashlib.blake2b(digest_size=16)
    for part in parts:
        hasher.update(part)
        hasher.update(b"\0")
    return hasher.hexdigest()


def renderer_version() -> str:
    """Changes whenever the site's code, the post format's reader or the converters change, which
    invalidates everything an earlier build kept."""
    return _version(path for folder in _CODE for path in folder.glob("*.py"))


def documents_version() -> str:
    """Changes whenever the code that makes the search's documents may have: the record's reader,
    the texts and headings the converters give, the papers' anchors and the documents themselves.
    After such a change every document is filed again, which the index does faster from scratch;
    after any other change of the renderer it keeps what it has and files only the pages whose
    documents differ (their digests decide, not this)."""
    site = Path(__file__).parent
    return _version([*_CODE[1].glob("*.py"), *(site / f"{name}.py" for name in _DOCUMENTS_CODE)])


def _version(code: Iterable[Path]) -> str:
    converters = (pyromark.__version__, nh3.__version__)  # type: ignore[attr-defined]  # nh3's stub omits it
    return digest([file_digest(p.read_bytes()) for p in sorted(code)], *converters)


_TABLES = (
    "CREATE TABLE meta(name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE sources(source TEXT PRIMARY KEY, digest TEXT NOT NULL, row BLOB NOT NULL)",
    "CREATE TABLE outputs(path TEXT PRIMARY KEY, key TEXT NOT NULL)",
    # each daily post under each of its categories, with its number of papers there: an incremental
    # build reads a category's newest posts and every category's totals here, not by grouping all
    "CREATE TABLE members(category TEXT NOT NULL, day INTEGER NOT NULL, source TEXT NOT NULL,"
    " papers INTEGER NOT NULL, PRIMARY KEY(category, day, source)) WITHOUT ROWID",
    "CREATE INDEX members_by_place ON members(day, source)",
    "CREATE TABLE categories(name TEXT PRIMARY KEY, posts INTEGER NOT NULL, papers INTEGER NOT NULL)",
    # converted Markdown: part -1 is a source's body (a post's HTML and headings, a page's parts),
    # part n the texts of a daily post's paper n as its category feeds show them. A rowid table, its
    # key in an index of its own: as a WITHOUT ROWID table, whose B-tree holds each row whole (a
    # post's body is ~25 KB), looking up the paper texts of the 130 posts that adding a post's
    # category feeds show took 9.8 ms at 3,000 posts, and 1.8 ms so
    "CREATE TABLE conversions(digest TEXT NOT NULL, part INTEGER NOT NULL, renderer TEXT NOT NULL,"
    " body BLOB NOT NULL, PRIMARY KEY(digest, part))",
    "CREATE INDEX conversions_by_renderer ON conversions(renderer, part, digest)",
    # each category feed's entries as last rendered, packed, with the key of what renders an entry:
    # the next feed of that category renders only the papers it did not show (adding a post at
    # 3,000 posts rendered ~230 entries, ~180 of them already shown)
    "CREATE TABLE feeds(category TEXT PRIMARY KEY, basis TEXT NOT NULL, entries BLOB NOT NULL)",
)
BODY = -1


# one of each per process, made once: making them took ~20 us a call, as long as unpacking a paper's
# texts (adding a post at 3,000 posts unpacks 242). Not safe for two threads at once, which never
# happens: a process runs one build at a time (``serve`` too), and a build's workers are processes.
_COMPRESSOR, _DECOMPRESSOR = zstandard.ZstdCompressor(level=1), zstandard.ZstdDecompressor()


def pack(value: Any) -> bytes:
    """A conversion as stored: marshal, then zstd at level 1 (a post's 120 KB of HTML in 0.3 ms, to a
    fifth; zlib took 1.7 ms)."""
    return _COMPRESSOR.compress(marshal.dumps(value))


def unpack(blob: bytes) -> Any:
    return marshal.loads(_DECOMPRESSOR.decompress(blob))


def _configure(db: sqlite3.Connection) -> None:
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")  # a lost build state costs one full build, not data


class BuildState:
    """What a build keeps for the next one, in ``build.sqlite3`` in the state folder (outside the
    site folder, so it is never published): each source as the listings need it, each output with
    the key of what it shows, and the conversion cache (Markdown -> HTML by source digest and
    renderer version, as Jekyll caches it), so a template change re-renders without converting.

    Rows are written only when they change, so an incremental build reads the rows and writes a
    handful. ``complete`` is false while a build is writing, so a build that died half-way is
    followed by a full one; its outputs are still known for cleaning, and conversions stay valid
    (they are keyed by content)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.db, meta = open_state(folder / STATE_FILE, self._meta)
        self.renderer = meta.get("renderer", "")
        self.basis = meta.get("basis", "")  # the last build's ``Writer.basis``
        self.documents = meta.get("documents", "")  # the ``documents_version`` of the last build
        self.complete = meta.get("complete") == "1"
        self.outputs: dict[str, str] = dict(self.db.execute("SELECT path, key FROM outputs"))
        self._loaded: dict[str, SourceInfo] = {}

    def _meta(self, db: sqlite3.Connection) -> dict[str, str]:
        """The meta rows of ``db``, configured; the tables (re)created when they are missing or of
        another schema."""
        self.db = db
        _configure(db)
        tables = {name for (name,) in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        meta = dict(self.db.execute("SELECT name, value FROM meta")) if "meta" in tables else {}
        if meta.get("schema") != SCHEMA:
            with self._transaction():
                for name in tables:
                    self.db.execute(f"DROP TABLE {name}")
                for statement in _TABLES:
                    self.db.execute(statement)
                self.db.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA,))
            meta = {"schema": SCHEMA}
        return meta

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def sources(self) -> dict[str, SourceInfo]:
        """The sources as the last build left them (only an incremental build needs them). They are
        plain data, loaded with the cyclic garbage collector paused: the collections that loading
        3,000 rows set off took 0.04 s."""
        rows = self.db.execute("SELECT source, digest, row FROM sources")
        collecting = gc.isenabled()
        gc.disable()
        try:
            self._loaded = {row[0]: SourceInfo.from_row(*row) for row in rows}
        finally:
            if collecting:
                gc.enable()
        return self._loaded

    def mark_incomplete(self) -> None:
        """From here on files change: a crash must not leave a state that vouches for them."""
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('complete', '0')")
        self.complete = False

    def save(
        self, renderer: str, documents: str, basis: str, sources: dict[str, SourceInfo], outputs: dict[str, str]
    ) -> None:
        """The finished build, in one transaction: the rows that changed, then ``complete``."""
        old_sources = dict(self.db.execute("SELECT source, digest FROM sources"))
        with self._transaction():
            gone = [(s,) for s in old_sources.keys() - sources.keys()]
            self.db.executemany("DELETE FROM sources WHERE source = ?", gone)
            changed = [info for source, info in sources.items() if self._changed(source, info)]
            self.db.executemany("INSERT OR REPLACE INTO sources VALUES (?, ?, ?)", (i.to_row() for i in changed))
            self._save_members(sources, changed)
            self.db.executemany(
                "DELETE FROM outputs WHERE path = ?", ((p,) for p in self.outputs.keys() - outputs.keys())
            )
            self.db.executemany(
                "INSERT OR REPLACE INTO outputs VALUES (?, ?)",
                ((p, k) for p, k in outputs.items() if self.outputs.get(p) != k),
            )
            dead = {d for d in old_sources.values()} - {info.digest for info in sources.values()}
            self.db.executemany("DELETE FROM conversions WHERE digest = ?", ((d,) for d in dead))
            # (two ranges of the index: ``renderer != ?`` read the whole table)
            self.db.execute("DELETE FROM conversions WHERE renderer < ? OR renderer > ?", (renderer, renderer))
            self.db.execute("DELETE FROM feeds WHERE category NOT IN (SELECT name FROM categories)")
            values = {"renderer": renderer, "documents": documents, "basis": basis, "complete": "1"}
            self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", values.items())
        self.outputs = dict(outputs)

    def _save_members(self, sources: dict[str, SourceInfo], changed: list[SourceInfo]) -> None:
        """The members of the sources that changed, came or went, and the totals of their categories
        moved by as much (every source's, counted afresh, after a build that did not load them)."""
        if self._loaded:
            left = [self._loaded[s] for s in self._loaded.keys() - sources.keys()]
            left += [self._loaded[i.source] for i in changed if i.source in self._loaded]
            gone, rows = list(_member_rows(left)), list(_member_rows(changed))
            self.db.executemany(
                "DELETE FROM members WHERE category = ? AND day = ? AND source = ?", (row[:3] for row in gone)
            )
            self.db.executemany("INSERT INTO members VALUES (?, ?, ?, ?)", rows)
            totals: dict[str, list[int]] = {}  # each category's change in posts and papers
            for (name, _, _, papers), sign in [*((row, -1) for row in gone), *((row, 1) for row in rows)]:
                total = totals.setdefault(name, [0, 0])
                total[0] += sign
                total[1] += sign * papers
            self.db.executemany(
                "INSERT INTO categories VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE"
                " SET posts = posts + excluded.posts, papers = papers + excluded.papers",
                ((name, posts, papers) for name, (posts, papers) in totals.items()),
            )
            self.db.executemany("DELETE FROM categories WHERE name = ? AND posts = 0", ((n,) for n in totals))
        else:
            self.db.execute("DELETE FROM members")
            self.db.executemany("INSERT INTO members VALUES (?, ?, ?, ?)", _member_rows(sources.values()))
            self.db.execute("DELETE FROM categories")
            count = "SELECT category, COUNT(*), SUM(papers) FROM members GROUP BY category"
            self.db.execute(f"INSERT INTO categories {count}")

    def member_totals(self, before: Order) -> dict[str, tuple[int, int, int]]:
        """Each category of the last build's daily posts: how many of its posts come before
        ``before`` (date, then source name), their papers, and how many do not. The totals are kept
        (``categories``), and the posts from ``before`` on, the few an incremental build changed,
        subtracted: counting every post took 30 ms at 10,000 posts."""
        totals = {name: (posts, papers) for name, posts, papers in self.db.execute("SELECT * FROM categories")}
        query = (  # (without the hint SQLite scans every member, in the primary key's order)
            "SELECT category, COUNT(*), SUM(papers) FROM members INDEXED BY members_by_place"
            " WHERE (day, source) >= (?, ?) GROUP BY category"
        )
        later = {name: (posts, papers) for name, posts, papers in self.db.execute(query, _place(before))}
        found = {}
        for name, (posts, papers) in totals.items():
            later_posts, later_papers = later.get(name, (0, 0))
            found[name] = (posts - later_posts, papers - later_papers, later_posts)
        return found

    def members(self, category: str, before: Order, limit: int = -1) -> list[str]:
        """The newest ``limit`` (-1: all) of a category's daily posts before ``before``, newest first."""
        query = (
            "SELECT source FROM members WHERE category = ? AND (day, source) < (?, ?)"
            " ORDER BY day DESC, source DESC LIMIT ?"
        )
        return [source for (source,) in self.db.execute(query, (category, *_place(before), limit))]

    def _changed(self, source: str, info: SourceInfo) -> bool:
        return not same(self._loaded.get(source), info)

    def cached(self, renderer: str) -> set[str]:
        """Digests of the sources whose body conversion by ``renderer`` is kept."""
        query = "SELECT digest FROM conversions WHERE part = ? AND renderer = ?"
        return {d for (d,) in self.db.execute(query, (BODY, renderer))}

    def conversion(self, source_digest: str, part: int, renderer: str) -> bytes | None:
        return _conversion(self.db, source_digest, part, renderer)

    def paper_conversions(self, source_digests: Collection[str], renderer: str) -> dict[str, dict[int, bytes]]:
        """Sources' kept conversions of their papers' texts, by source digest and paper index, in a
        few queries (the category feeds of adding a post at 3,000 posts show ~130 posts' papers)."""
        found: dict[str, dict[int, bytes]] = {d: {} for d in source_digests}
        query = "SELECT digest, part, body FROM conversions WHERE digest IN ({}) AND part >= 0 AND renderer = ?"
        for source, part, body in _rows_in(self.db, query, list(found), renderer):
            found[source][part] = body
        return found

    def store(self, renderer: str, conversions: Iterable[tuple[str, int, bytes]]) -> None:
        """Keep conversions (digest, part, packed); they stay valid whatever happens to this build."""
        rows = [(d, part, renderer, body) for d, part, body in conversions]
        if rows:
            with self._transaction():
                self.db.executemany("INSERT OR REPLACE INTO conversions VALUES (?, ?, ?, ?)", rows)

    def keep_feed(self, category: str, basis: str, entries: bytes) -> None:
        """Keep a category feed's entries, packed, as rendered on ``basis``; valid whatever happens to
        this build (written at once: a full build keeps every category's, 3.5 MB at 3,000 posts)."""
        self.db.execute("INSERT OR REPLACE INTO feeds VALUES (?, ?, ?)", (category, basis, entries))

    def feed_entries(self, categories: Collection[str], basis: str) -> dict[str, bytes]:
        """The packed entries that the feeds of ``categories`` last had, where rendered on ``basis``."""
        query = "SELECT category, entries FROM feeds WHERE category IN ({}) AND basis = ?"
        return dict(_rows_in(self.db, query, list(categories), basis))

    def close(self) -> None:
        self.db.close()


def _rows_in(db: sqlite3.Connection, query: str, values: list[str], *after: object) -> Iterator[Any]:
    """The rows of ``query``, whose ``{}`` is the list of ``values`` (asked for in chunks) and whose
    other parameters are ``after``."""
    for start in range(0, len(values), _QUERY_VALUES):
        chunk = values[start : start + _QUERY_VALUES]
        yield from db.execute(query.format(",".join("?" * len(chunk))), (*chunk, *after))


def _place(place: Order) -> tuple[int, str]:
    return place[0].toordinal(), place[1]


def _member_rows(infos: Iterable[SourceInfo]) -> Iterator[tuple[str, int, str, int]]:
    for info in infos:
        if not info.is_page:
            day = info.date.toordinal()
            yield from ((name, day, info.source, len(indexes)) for name, indexes in info.groups)


def _conversion(db: sqlite3.Connection, source_digest: str, part: int, renderer: str) -> bytes | None:
    query = "SELECT body FROM conversions WHERE digest = ? AND part = ? AND renderer = ?"
    found = db.execute(query, (source_digest, part, renderer)).fetchone()
    return found[0] if found else None


@contextmanager
def kept_bodies(folder: Path, renderer: str) -> Iterator[Callable[[str], bytes | None]]:
    """The kept body conversions of the build state in ``folder``, read-only, by source digest: a
    worker reads those of its batch itself (the build's own connection stays in the parent, which
    then has neither to read nor to send them)."""
    db: sqlite3.Connection | None = None  # opened by the first lookup: most batches of a full build have none

    def body_of(source_digest: str) -> bytes | None:
        nonlocal db
        if db is None:
            db = sqlite3.connect(f"{(folder / STATE_FILE).absolute().as_uri()}?mode=ro", uri=True)
        return _conversion(db, source_digest, BODY, renderer)

    try:
        yield body_of
    finally:
        if db is not None:
            db.close()
