"""Loopback fake of the arXiv API (``GET /api/query``, Atom over HTTP) for end-to-end tests.

Why: the digest's fetcher must be exercised over real HTTP against the real wire format --
submission-window queries, paging, announcement delays, rate limiting, stalls, broken bodies --
without touching arxiv.org. Entries are rendered byte-for-byte like the current (post-Nov-2025)
API backend; ``tests/test_arxiv_server.py`` checks that against a recorded response
(``tests/fixtures/arxiv/api_new_q_testing_s0_m100_2026-04-12.json``).

Usage::

    papers = papers_from_listings()
    with ArxivServer(papers, now=lambda: datetime(2025, 6, 3, 1, 0, tzinfo=UTC)) as server:
        server.inject("rate_limit", Fault("server_error", status=503))
        ...  # point the product at server.url
        assert [r.status for r in server.requests][:3] == [429, 503, 200]
        assert server.max_in_flight == 1

Query semantics (``search_query``):

* terms ``cat:X`` (any of the paper's categories; ``*`` wildcards allowed), ``submittedDate:[A TO B]``
  (GMT, ``YYYYMMDDHHMM``; both ends inclusive at minute precision, i.e. ``A:00 <= published <= B:00``),
  ``lastUpdatedDate:[A TO B]`` (silently treated as ``submittedDate``, like the current backend),
  ``ti:``/``abs:``/``au:``/``co:``/``jr:``/``all:`` case-insensitive substring terms (``"quoted phrases"``
  allowed; ``_`` in ``au:`` means a space), ``id:``; a bare word means ``all:``.
* operators ``AND``, ``OR``, ``ANDNOT`` (upper case) and parentheses. Precedence is the usual one:
  ``AND``/``ANDNOT`` bind tighter than ``OR``, all left-associative; two terms side by side are ANDed.
* anything else (unbalanced parentheses, dangling operator, unknown field, bad date) is answered
  with HTTP 400 and an Atom error feed shaped like the real one.

Visibility: a paper is returned only when ``announced is None or announced <= server.now()``.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from functools import lru_cache
from html import escape as html_escape
from http import HTTPStatus
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, quote, urlsplit
from zoneinfo import ZoneInfo

from .loopback import LoopbackHandler, LoopbackServer

FIXTURE_DIR = Path(__file__).resolve().parent.parent / "fixtures"
LISTINGS_PATH = FIXTURE_DIR / "listings" / "cs.SD-eess.AS-2025-05-to-09.json"
EASTERN = ZoneInfo("America/New_York")

MAX_RESULTS_CAP = 2000  # arXiv serves at most 2000 entries per request
RESULT_WINDOW = 10_000  # the backend never returns entries past this index (totalResults stays true)
ATOM_SCHEME = "http://arxiv.org/schemas/atom"
SORT_KEYS = ("relevance", "lastUpdatedDate", "submittedDate")
SORT_ORDERS = ("ascending", "descending")

FAULT_KINDS: dict[str, frozenset[str]] = {
    "rate_limit": frozenset({"retry_after"}),
    "server_error": frozenset({"status"}),
    "stall": frozenset({"seconds"}),
    "empty_body": frozenset(),
    "bad_xml": frozenset(),
    "empty_page": frozenset(),
    "error_400": frozenset({"message"}),
    "duplicate_first": frozenset(),
    "pass": frozenset(),  # answer normally: lets a test aim a later fault at a later page
}

_NEW_ID = re.compile(r"\d{4}\.\d{4,5}(?:v\d+)?")
_OLD_ID = re.compile(r"[a-z][a-z\-]*(?:\.[A-Z]{2})?/\d{7}(?:v\d+)?")
_INVALID_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


# --------------------------------------------------------------------------- data model


def _aware(dt: datetime, what: str) -> datetime:
    """Reject naive datetimes: a silent local-time guess would shift submission windows by hours."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got {dt!r}")
    return dt


@dataclass
class FakePaper:
    """One arXiv paper as the API shows it (latest version, current metadata)."""

    arxiv_id: str
    version: int
    title: str
    abstract: str
    authors: list[str]
    categories: list[str]
    published: datetime
    updated: datetime | None = None
    comment: str | None = None
    journal_ref: str | None = None
    doi: str | None = None
    affiliations: dict[str, str] = field(default_factory=dict)
    announced: datetime | None = None

    def __post_init__(self) -> None:
        """Normalise times to whole UTC seconds, as arXiv stores them, so bound checks match the feed."""
        if not self.categories:
            raise ValueError(f"{self.arxiv_id}: at least one category (the primary) is required")
        self.published = _aware(self.published, "published").astimezone(UTC).replace(microsecond=0)
        if self.updated is None:
            self.updated = self.published
        else:
            self.updated = _aware(self.updated, "updated").astimezone(UTC).replace(microsecond=0)
        if self.announced is not None:
            _aware(self.announced, "announced")

    @property
    def versioned_id(self) -> str:
        """``2601.09603v1``: the form arXiv uses in entry ids and links."""
        return f"{self.arxiv_id}v{self.version}"

    @property
    def entry_id(self) -> str:
        """The Atom ``<id>``, which arXiv still writes with ``http://``."""
        return f"http://arxiv.org/abs/{self.versioned_id}"

    @property
    def last_updated(self) -> datetime:
        """``updated`` without the Optional, for sorting."""
        return self.updated if self.updated is not None else self.published


def make_paper(arxiv_id: str, published: datetime, **overrides: Any) -> FakePaper:
    """Build a plausible paper so tests only spell out the fields they care about."""
    values: dict[str, Any] = {
        "version": 1,
        "title": f"Neural Audio Coding Study {arxiv_id}",
        "abstract": (
            f"We study paper {arxiv_id}. Our method improves speech quality on standard benchmarks "
            "while halving the bitrate."
        ),
        "authors": ["Ada Lovelace", "Alan Turing"],
        "categories": ["cs.SD"],
    }
    values.update(overrides)
    return FakePaper(arxiv_id=arxiv_id, published=published, **values)


# --------------------------------------------------------------------------- listings


@lru_cache(maxsize=4)
def _load_listing_records(path: Path) -> tuple[dict[str, Any], ...]:
    """Parse the 4.7 MB listings file once per test session."""
    with path.open(encoding="utf-8") as fh:
        return tuple(json.load(fh))


def _listing_date(day: str) -> date:
    return date(int(day[:4]), int(day[4:6]), int(day[6:8]))


def _at_eastern(day: date, hour: int) -> datetime:
    """``hour``:00 US Eastern on ``day`` as UTC (zoneinfo picks EDT or EST correctly)."""
    return datetime.combine(day, dtime(hour), tzinfo=EASTERN).astimezone(UTC)


def _previous_weekday(day: date) -> date:
    day -= timedelta(days=1)
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    return day


def announcement_for(listing_day: date) -> datetime:
    """20:00 US Eastern on the evening before a listing day (Sunday evening for a Monday listing)."""
    return _at_eastern(listing_day - timedelta(days=1), 20)


def cutoff_for(listing_day: date) -> datetime:
    """The 14:00 US Eastern deadline closing a listing: on the last weekday before the listing day."""
    return _at_eastern(_previous_weekday(listing_day), 14)


def _estimated_v1_time(arxiv_id: str, latest: datetime) -> datetime:
    """Guess a v1 time for an old paper cross-listed at a later version (from its YYMM.NNNNN id)."""
    prefix, number = arxiv_id.split(".")
    year, month = 2000 + int(prefix[:2]), int(prefix[2:])
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    guess = start + (end - start) * min(int(number) / 30_000, 0.95)
    return min(guess, latest - timedelta(days=1)).replace(microsecond=0)


def papers_from_listings(path: Path | None = None, *, limit: int | None = None) -> list[FakePaper]:
    """Real cs.SD/eess.AS papers with realistic, deterministic submission and announcement times.

    Each listing day's ``new`` records get ``published`` times spread evenly, in id order, over
    ``(previous listing's cutoff, this listing's cutoff)``, where a cutoff is 14:00 US Eastern on the
    last weekday before the listing day; ``announced`` is 20:00 US Eastern on the eve of the listing
    day (so Monday listings are announced on Sunday, as arXiv does). Chaining to the previous listing
    day in the file makes holidays (no listing) roll into the next interval. ``replaced`` records are
    skipped. A paper listed as ``new`` twice (cross-list added later) appears once, at its first
    listing, with the categories of both records. A ``new`` record at version > 1 (an old paper
    cross-listed later) gets that slot as ``updated`` and a ``published`` estimated from its id.
    """
    records = _load_listing_records(Path(path) if path is not None else LISTINGS_PATH)
    days = sorted({r["listing_day"] for r in records})
    first_record: dict[str, dict[str, Any]] = {}
    categories: dict[str, list[str]] = {}
    for rec in sorted(records, key=lambda r: (r["listing_day"], r["id"])):
        if rec["kind"] != "new":
            continue
        cats = categories.setdefault(rec["id"], [])
        cats.extend(c for c in rec["categories"] if c not in cats)
        first_record.setdefault(rec["id"], rec)
    by_day: dict[str, list[dict[str, Any]]] = {day: [] for day in days}
    for rec in first_record.values():
        by_day[rec["listing_day"]].append(rec)

    papers: list[FakePaper] = []
    for index, day in enumerate(days):
        listing_day = _listing_date(day)
        end = cutoff_for(listing_day)
        if index:
            start = cutoff_for(_listing_date(days[index - 1]))
        else:
            start = _at_eastern(_previous_weekday(end.astimezone(EASTERN).date()), 14)
        announced = announcement_for(listing_day)
        day_records = sorted(by_day[day], key=lambda r: r["id"])
        for slot, rec in enumerate(day_records):
            submitted = (start + (end - start) * (slot + 0.5) / len(day_records)).replace(microsecond=0)
            published, updated = submitted, None
            if rec["version"] > 1:
                published, updated = _estimated_v1_time(rec["id"], submitted), submitted
            papers.append(
                FakePaper(
                    arxiv_id=rec["id"],
                    version=rec["version"],
                    title=rec["title"],
                    abstract=rec["abstract"],
                    authors=list(rec["authors"]),
                    categories=list(categories[rec["id"]]),
                    published=published,
                    updated=updated,
                    comment=rec["comment"],
                    announced=announced,
                )
            )
    return papers if limit is None else papers[:limit]


# --------------------------------------------------------------------------- Atom rendering


def _text(value: str) -> str:
    """Escape element text the way the backend's serializer does (``&<>`` only; quotes stay)."""
    value = _INVALID_XML_CHARS.sub("", value)
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _attr(value: str) -> str:
    """Escape an attribute value (double-quoted)."""
    return _text(value).replace('"', "&quot;")


def format_time(dt: datetime) -> str:
    """``2026-04-12T22:45:06Z``: the only timestamp form the API emits."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def render_entry(paper: FakePaper, *, legacy_http_links: bool = False) -> str:
    """One ``<entry>``, element order and indentation exactly as the current backend writes them."""
    web = "http://arxiv.org" if legacy_http_links else "https://arxiv.org"
    vid = _attr(paper.versioned_id)
    out = [
        "  <entry>\n",
        f"    <id>{_text(paper.entry_id)}</id>\n",
        f"    <title>{_text(paper.title)}</title>\n",
        f"    <updated>{format_time(paper.last_updated)}</updated>\n",
        f'    <link href="{web}/abs/{vid}" rel="alternate" type="text/html"/>\n',
        f'    <link href="{web}/pdf/{vid}" rel="related" type="application/pdf" title="pdf"/>\n',
        f"    <summary>{_text(paper.abstract)}</summary>\n",
    ]
    out += [f'    <category term="{_attr(c)}" scheme="{ATOM_SCHEME}"/>\n' for c in paper.categories]
    out.append(f"    <published>{format_time(paper.published)}</published>\n")
    if paper.comment is not None:
        out.append(f"    <arxiv:comment>{_text(paper.comment)}</arxiv:comment>\n")
    out.append(f'    <arxiv:primary_category term="{_attr(paper.categories[0])}"/>\n')
    if paper.journal_ref is not None:
        out.append(f"    <arxiv:journal_ref>{_text(paper.journal_ref)}</arxiv:journal_ref>\n")
    for name in paper.authors:
        out.append(f"    <author>\n      <name>{_text(name)}</name>\n")
        if name in paper.affiliations:
            out.append(f"      <arxiv:affiliation>{_text(paper.affiliations[name])}</arxiv:affiliation>\n")
        out.append("    </author>\n")
    if paper.doi is not None:
        doi_base = "http://dx.doi.org" if legacy_http_links else "https://doi.org"
        out.append(f"    <arxiv:doi>{_text(paper.doi)}</arxiv:doi>\n")
        out.append(f'    <link rel="related" href="{doi_base}/{_attr(paper.doi)}" title="doi"/>\n')
    out.append("  </entry>\n")
    return "".join(out)


_FEED_OPEN = (
    "<?xml version='1.0' encoding='UTF-8'?>\n"
    '<feed xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/" '
    'xmlns:arxiv="http://arxiv.org/schemas/atom" xmlns="http://www.w3.org/2005/Atom">\n'
)


def render_feed(
    entries: Iterable[FakePaper],
    *,
    search_query: str,
    id_list: str,
    start: int,
    max_results: int,
    total: int,
    updated: datetime,
    legacy_http_links: bool = False,
) -> bytes:
    """A whole result feed; ``itemsPerPage`` echoes ``max_results`` like the real API."""
    web = "http://arxiv.org" if legacy_http_links else "https://arxiv.org"
    query = f"search_query={search_query}&id_list={id_list}&start={start}&max_results={max_results}"
    feed_hash = base64.b64encode(hashlib.sha1(query.encode("utf-8")).digest()).decode().rstrip("=")
    href = (
        f"{web}/api/query?search_query={quote(search_query, safe=':()[]')}&start={start}"
        f"&max_results={max_results}&id_list={quote(id_list, safe=',')}"
    )
    out = [
        _FEED_OPEN,
        f"  <id>{web}/api/{feed_hash}</id>\n",
        f"  <title>arXiv Query: {_text(query)}</title>\n",
        f"  <updated>{format_time(updated)}</updated>\n",
        f'  <link href="{_attr(href)}" type="application/atom+xml"/>\n',
        f"  <opensearch:itemsPerPage>{max_results}</opensearch:itemsPerPage>\n",
        f"  <opensearch:totalResults>{total}</opensearch:totalResults>\n",
        f"  <opensearch:startIndex>{start}</opensearch:startIndex>\n",
    ]
    out += [render_entry(p, legacy_http_links=legacy_http_links) for p in entries]
    out.append("</feed>\n")
    return "".join(out).encode("utf-8")


def render_error_feed(message: str, updated: datetime) -> bytes:
    """The HTTP 400 body: one entry titled ``Error`` whose summary holds the message."""
    slug = _attr("https://arxiv.org/api/errors#" + re.sub(r"\s+", "_", message))
    stamp = format_time(updated)
    return (
        _FEED_OPEN + "  <id>https://arxiv.org/</id>\n"
        "  <title>arXiv Search Results</title>\n"
        f"  <updated>{stamp}</updated>\n"
        "  <opensearch:itemsPerPage>1</opensearch:itemsPerPage>\n"
        "  <opensearch:totalResults>1</opensearch:totalResults>\n"
        "  <opensearch:startIndex>0</opensearch:startIndex>\n"
        "  <entry>\n"
        f"    <id>{slug}</id>\n"
        "    <title>Error</title>\n"
        f"    <updated>{stamp}</updated>\n"
        f'    <link href="{slug}" rel="alternate" type="text/html"/>\n'
        f"    <summary>{_text(message)}</summary>\n"
        "    <author>\n"
        "      <name>arXiv api core</name>\n"
        "    </author>\n"
        "  </entry>\n"
        "</feed>\n"
    ).encode("utf-8")


# --------------------------------------------------------------------------- query language

Predicate = Callable[[FakePaper], bool]


class QueryError(ValueError):
    """A malformed request; the message becomes the summary of the 400 error feed."""


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<lpar>\() | (?P<rpar>\)) |
        (?P<field>[A-Za-z_]+):(?P<value>\[[^\]]*\]|"[^"]*"|[^\s()"]+) |
        (?P<phrase>"[^"]*") |
        (?P<word>[^\s()"]+)
    )""",
    re.VERBOSE,
)
_RANGE = re.compile(r"\[\s*(\d{8}|\d{12}|\d{14})\s+TO\s+(\d{8}|\d{12}|\d{14})\s*\]")
_OPERATORS = ("AND", "OR", "ANDNOT")


def _parse_stamp(digits: str) -> datetime:
    try:
        return datetime.strptime(digits.ljust(14, "0"), "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError as exc:
        raise QueryError(f"invalid date {digits}") from exc


def _substring(needle: str, fields: Callable[[FakePaper], Iterable[str | None]]) -> Predicate:
    needle = needle.strip('"').casefold()
    if not needle:
        raise QueryError("empty search term")
    return lambda p: any(needle in f.casefold() for f in fields(p) if f)


def _term(name: str, value: str) -> Predicate:
    """Compile one ``field:value`` term."""
    key = name.casefold()
    if key in ("submitteddate", "lastupdateddate"):
        match = _RANGE.fullmatch(value)
        if not match:
            raise QueryError(f"invalid date range {value} (expected [YYYYMMDDHHMM TO YYYYMMDDHHMM])")
        low, high = _parse_stamp(match[1]), _parse_stamp(match[2])
        return lambda p: low <= p.published <= high
    if key == "cat":
        pattern = value.strip('"').casefold()
        return lambda p: any(fnmatch.fnmatchcase(c.casefold(), pattern) for c in p.categories)
    if key == "id":
        wanted = value.strip('"')
        return lambda p: wanted in (p.arxiv_id, p.versioned_id)
    if key == "ti":
        return _substring(value, lambda p: [p.title])
    if key == "abs":
        return _substring(value, lambda p: [p.abstract])
    if key == "au":
        return _substring(value.replace("_", " "), lambda p: p.authors)
    if key == "co":
        return _substring(value, lambda p: [p.comment])
    if key == "jr":
        return _substring(value, lambda p: [p.journal_ref])
    if key == "all":
        return _substring(value, lambda p: [p.title, p.abstract, p.comment, *p.authors])
    raise QueryError(f"unknown search field {name}")


def _tokenize(query: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    pos = 0
    while query[pos:].strip():
        match = _TOKEN.match(query, pos)
        if not match:
            raise QueryError(f"cannot parse search_query at {query[pos:].strip()[:30]!r}")
        pos = match.end()
        if match["lpar"]:
            tokens.append(("(", None))
        elif match["rpar"]:
            tokens.append((")", None))
        elif match["field"]:
            tokens.append(("term", _term(match["field"], match["value"])))
        elif match["phrase"]:
            tokens.append(("term", _term("all", match["phrase"])))
        elif match["word"] in _OPERATORS:
            tokens.append(("op", match["word"]))
        elif ":" in match["word"] or "[" in match["word"] or "]" in match["word"]:
            raise QueryError(f"malformed search term {match['word']!r}")
        else:
            tokens.append(("term", _term("all", match["word"])))
    return tokens


class _Parser:
    """Recursive descent: ``or := and ('OR' and)*``, ``and := unary (('AND'|'ANDNOT')? unary)*``."""

    def __init__(self, tokens: list[tuple[str, Any]]) -> None:
        self.tokens = tokens
        self.pos = 0

    def _peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def parse(self) -> Predicate:
        if not self.tokens:
            raise QueryError("empty search_query")
        node = self._or()
        if self._peek() is not None:
            raise QueryError(f"unexpected {self._describe(self._peek())} in search_query")
        return node

    def _or(self) -> Predicate:
        node = self._and()
        while self._peek() == ("op", "OR"):
            self.pos += 1
            left, right = node, self._and()
            node = lambda p, a=left, b=right: a(p) or b(p)  # noqa: E731
        return node

    def _and(self) -> Predicate:
        node = self._unary()
        while (tok := self._peek()) is not None:
            if tok in (("op", "AND"), ("op", "ANDNOT")):
                self.pos += 1
                negate = tok[1] == "ANDNOT"
            elif tok[0] in ("term", "("):
                negate = False  # implicit AND
            else:
                break
            left, right = node, self._unary()
            if negate:
                node = lambda p, a=left, b=right: a(p) and not b(p)  # noqa: E731
            else:
                node = lambda p, a=left, b=right: a(p) and b(p)  # noqa: E731
        return node

    def _unary(self) -> Predicate:
        tok = self._peek()
        if tok is None:
            raise QueryError("unexpected end of search_query")
        self.pos += 1
        if tok[0] == "term":
            return tok[1]
        if tok[0] == "(":
            node = self._or()
            if self._peek() != (")", None):
                raise QueryError("unbalanced parentheses in search_query")
            self.pos += 1
            return node
        raise QueryError(f"unexpected {self._describe(tok)} in search_query")

    @staticmethod
    def _describe(tok: tuple[str, Any] | None) -> str:
        if tok is None:
            return "end"
        return tok[1] if tok[0] == "op" else f"'{tok[0]}'"


def parse_search_query(query: str) -> Predicate:
    """Compile a ``search_query`` into a predicate, raising QueryError when arXiv would answer 400."""
    return _Parser(_tokenize(query)).parse()


# --------------------------------------------------------------------------- server


@dataclass(init=False)
class Fault:
    """A queued misbehaviour with parameters, e.g. ``Fault("rate_limit", retry_after=None)``."""

    kind: str
    params: dict[str, Any]

    def __init__(self, kind: str, **params: Any) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; known: {sorted(FAULT_KINDS)}")
        unknown = set(params) - FAULT_KINDS[kind]
        if unknown:
            raise ValueError(f"fault {kind!r} takes {sorted(FAULT_KINDS[kind])}, got {sorted(unknown)}")
        self.kind = kind
        self.params = params


class Headers(dict[str, str]):
    """Request headers with case-insensitive lookups, because HTTP header names are."""

    def _key(self, key: object) -> object:
        if isinstance(key, str):
            for existing in self.keys():
                if existing.lower() == key.lower():
                    return existing
        return key

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(self._key(key))  # type: ignore[arg-type]

    def __contains__(self, key: object) -> bool:
        return super().__contains__(self._key(key))

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(self._key(key), default)  # type: ignore[arg-type]


@dataclass
class RecordedRequest:
    """What the server saw, so tests can assert on pacing, headers and retries."""

    path: str
    params: dict[str, str]
    headers: Headers
    time: float  # time.monotonic() at arrival
    status: int | None = None  # None while in flight, or if the client went away during a stall
    fault: str | None = None  # the injected fault this request consumed


@dataclass
class _Response:
    status: int
    body: bytes = b""
    content_type: str | None = "application/atom+xml; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


class _Handler(LoopbackHandler):
    server_version = "FakeArxiv/1.0"

    def do_GET(self) -> None:
        """Every GET goes to the owning ArxivServer."""
        cast("ArxivServer", self.owner)._dispatch(self)


class ArxivServer(LoopbackServer[RecordedRequest, Fault]):
    """A threaded loopback arXiv API: ``GET /api/query``, ``GET /abs/<id>``, whatever ``files``
    holds (``/html/<id>`` and ``/pdf/<id>`` full texts), 404 otherwise.

    Serving starts in ``__init__`` (so ``url`` works immediately); use it as a context manager or
    call ``close()``. Faults queued with ``inject`` are consumed, in order, one per request to
    ``/api/query``.
    """

    handler = _Handler
    fault_type = Fault
    thread_name = "fake-arxiv"

    def __init__(
        self,
        papers: Iterable[FakePaper] = (),
        *,
        now: Callable[[], datetime] | None = None,
        legacy_http_links: bool = False,
        stall_seconds: float = 5.0,
    ) -> None:
        self.papers: list[FakePaper] = list(papers)
        # full-text downloads: "/html/2601.00001v1" -> (status, body, content type)
        self.files: dict[str, tuple[int, bytes, str]] = {}
        self.legacy_http_links = legacy_http_links
        self.stall_seconds = stall_seconds
        self._now = now if now is not None else (lambda: datetime.now(UTC))
        self._last_page_first: FakePaper | None = None
        super().__init__()
        self.base = self.root_url
        self.url = f"{self.base}/api/query"

    # -- control ------------------------------------------------------------------------------

    def now(self) -> datetime:
        """The server's clock: decides which papers are announced and stamps feed ``<updated>``."""
        return _aware(self._now(), "now()")

    def set_now(self, dt: datetime) -> None:
        """Freeze the clock at ``dt`` (call again to move it)."""
        fixed = _aware(dt, "set_now")
        with self._lock:
            self._now = lambda: fixed

    def api_requests(self) -> list[RecordedRequest]:
        """Recorded requests to ``/api/query`` only."""
        with self._lock:
            return [r for r in self.requests if r.path.rstrip("/") == "/api/query"]

    def visible_papers(self) -> list[FakePaper]:
        """Papers announced by ``now()``: what the API can return at this moment."""
        now = self.now()
        with self._lock:
            return [p for p in self.papers if p.announced is None or p.announced <= now]

    # -- request handling ---------------------------------------------------------------------

    def _dispatch(self, handler: _Handler) -> None:
        arrival = time.monotonic()
        split = urlsplit(handler.path)
        params = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        record = RecordedRequest(split.path, params, Headers(handler.headers.items()), arrival)
        self._begin(record)
        done = threading.Event()
        try:
            if split.path.rstrip("/") == "/api/query":
                fault = self._next_fault()
                record.fault = fault.kind if fault else None
                response = self._api_query(handler, params, fault)
            elif split.path.startswith("/abs/"):
                response = self._abs_page(split.path.removeprefix("/abs/"))
            elif split.path in self.files:
                status, body, content_type = self.files[split.path]
                response = _Response(status, body, content_type)
            else:
                response = _Response(404, b"Not Found\n", "text/plain; charset=utf-8")
            if response is None:  # the client hung up during a stall
                handler.close_connection = True
                return
            record.status = response.status
            self._send(handler, response, done)
        finally:
            if not done.is_set():
                self._end()

    def _send(self, handler: _Handler, response: _Response, done: threading.Event) -> None:
        """Write the whole response in one go, leaving the in-flight count just before the write.

        A strictly sequential client cannot send its next request before it has read this one, so
        counting the request as finished before the final write can never show false concurrency.
        """
        reason = HTTPStatus(response.status).phrase
        lines = [
            f"HTTP/1.1 {response.status} {reason}",
            f"Server: {handler.version_string()}",
            f"Date: {handler.date_time_string()}",
        ]
        if response.content_type is not None:
            lines.append(f"Content-Type: {response.content_type}")
        lines += [f"{k}: {v}" for k, v in response.headers.items()]
        lines.append(f"Content-Length: {len(response.body)}")
        if handler.close_connection:
            lines.append("Connection: close")
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + response.body
        with self._lock:
            self._end()
            done.set()
        try:
            handler.wfile.write(raw)
            handler.wfile.flush()
        except OSError:
            handler.close_connection = True

    def _api_query(self, handler: _Handler, params: dict[str, str], fault: Fault | None) -> _Response | None:
        kind = fault.kind if fault else None
        opts = fault.params if fault else {}
        if kind == "rate_limit":
            retry_after = opts.get("retry_after", "1")
            headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
            return _Response(429, b"Rate exceeded.", "text/plain", headers)
        if kind == "server_error":
            status = int(opts.get("status", 500))
            phrase = HTTPStatus(status).phrase
            body = f"<html><head><title>{status} {phrase}</title></head><body>{phrase}</body></html>\n"
            return _Response(status, body.encode(), "text/html; charset=utf-8")
        if kind == "error_400":
            message = str(opts.get("message", "incorrect id format for abc"))
            return _Response(400, render_error_feed(message, self.now()))
        if kind == "empty_body":
            return _Response(200, b"")
        if kind == "stall" and not self._stall(handler, float(opts.get("seconds", self.stall_seconds))):
            return None

        try:
            request = _parse_params(params)
        except QueryError as exc:
            return _Response(400, render_error_feed(str(exc), self.now()))
        now = self.now()
        with self._lock:
            visible = [p for p in self.papers if p.announced is None or p.announced <= now]
            matches = request.select(visible)
            window = matches[: min(len(matches), RESULT_WINDOW)]
            page = window[request.start : request.start + request.max_results]
            if kind == "empty_page":
                page = []
            elif kind == "duplicate_first" and self._last_page_first is not None:
                page = [self._last_page_first, *page]
            if page and kind != "bad_xml":
                self._last_page_first = page[0]
        body = render_feed(
            page,
            search_query=request.search_query,
            id_list=params.get("id_list", ""),
            start=request.start,
            max_results=request.max_results,
            total=len(matches),
            updated=now,
            legacy_http_links=self.legacy_http_links,
        )
        if kind == "bad_xml":
            body = body[: max(len(body) // 2, 1)]  # cut mid-document, as a dropped connection would
        return _Response(200, body)

    def _abs_page(self, raw_id: str) -> _Response:
        """Minimal abstract page, so link checks and full-text fallbacks have something to hit."""
        base_id = re.sub(r"v\d+$", "", raw_id)
        paper = next((p for p in self.visible_papers() if p.arxiv_id == base_id), None)
        if paper is None:
            return _Response(404, b"Article identifier not recognized\n", "text/plain; charset=utf-8")
        authors = ", ".join(html_escape(a) for a in paper.authors)
        page = (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>[{html_escape(paper.arxiv_id)}] {html_escape(paper.title)}</title></head>\n<body>\n"
            f'<h1 class="title mathjax">{html_escape(paper.title)}</h1>\n'
            f'<div class="authors">{authors}</div>\n'
            f'<blockquote class="abstract mathjax">{html_escape(paper.abstract)}</blockquote>\n'
            "</body></html>\n"
        )
        return _Response(200, page.encode("utf-8"), "text/html; charset=utf-8")


@dataclass
class _QueryRequest:
    search_query: str
    predicate: Predicate | None
    ids: list[str] | None
    start: int
    max_results: int
    sort_by: str
    sort_order: str

    def select(self, papers: list[FakePaper]) -> list[FakePaper]:
        """Filter and order like arXiv: an id_list alone keeps its own order, otherwise sort."""
        if self.predicate is None and self.ids is None:
            return []
        found = papers
        if self.ids is not None:
            by_id = {p.arxiv_id: p for p in papers}
            wanted = dict.fromkeys(re.sub(r"v\d+$", "", x) for x in self.ids)
            found = [by_id[i] for i in wanted if i in by_id]
        if self.predicate is not None:
            predicate = self.predicate
            found = [p for p in found if predicate(p)]
        if self.ids is not None and self.predicate is None:
            return found

        def key(p: FakePaper) -> tuple[datetime, str]:
            return (p.last_updated if self.sort_by == "lastUpdatedDate" else p.published, p.arxiv_id)

        return sorted(found, key=key, reverse=self.sort_order == "descending")


def _int_param(params: dict[str, str], name: str, default: int) -> int:
    raw = params.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise QueryError(f"{name} must be an integer") from exc
    if value < 0:
        raise QueryError(f"{name} must be non-negative")
    return value


def _parse_params(params: dict[str, str]) -> _QueryRequest:
    """Validate query parameters the way the API does, raising QueryError for a 400."""
    start = _int_param(params, "start", 0)
    max_results = min(_int_param(params, "max_results", 10), MAX_RESULTS_CAP)
    sort_by = params.get("sortBy") or "relevance"
    sort_order = params.get("sortOrder") or "descending"
    if sort_by not in SORT_KEYS:
        raise QueryError(f"sortBy must be in: {', '.join(SORT_KEYS)}")
    if sort_order not in SORT_ORDERS:
        raise QueryError(f"sortOrder must be in: {', '.join(SORT_ORDERS)}")
    ids: list[str] | None = None
    if params.get("id_list", "").strip():
        ids = [x.strip() for x in params["id_list"].split(",") if x.strip()]
        for arxiv_id in ids:
            if not (_NEW_ID.fullmatch(arxiv_id) or _OLD_ID.fullmatch(arxiv_id)):
                raise QueryError(f"incorrect id format for {arxiv_id}")
    search_query = params.get("search_query", "")
    predicate = parse_search_query(search_query) if search_query.strip() else None
    return _QueryRequest(search_query, predicate, ids, start, max_results, sort_by, sort_order)
