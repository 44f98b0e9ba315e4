"""arXiv API: build the window query, page through it politely, parse Atom into ``Paper``s.

Parsing is pure (bytes -> objects). feedparser reads the feed; it flattens ``arxiv:affiliation``
across authors, so affiliations are read per ``<author>`` with ElementTree from the same bytes.
"""

from __future__ import annotations

import contextlib
import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import feedparser
import httpx
from dateutil import parser as dateparser

from .errors import ArxivError
from .models import Author, Paper
from .polite import PoliteHttp, Retryable

log = logging.getLogger(__name__)

ATOM = "{http://www.w3.org/2005/Atom}"
ARXIV = "{http://arxiv.org/schemas/atom}"
# An arXiv identifier: new style ``YYMM.NNNN`` (2007-2014) or ``YYMM.NNNNN`` (since 2015), or old style
# ``archive/YYMMNNN`` with an optional subject class (``hep-th/9901001``, ``math.GT/0309136``).
ARXIV_ID = r"(?:\d{4}\.\d{4,5}|[a-z]+(?:-[a-z]+)*(?:\.[A-Z]{2})?/\d{7})"
VALID_ID = re.compile(rf"{ARXIV_ID}(?:v[1-9]\d*)?")
ENTRY_ID = re.compile(r"/abs/(?P<id>.+)v(?P<version>\d+)$")
QUERY_MARGIN = timedelta(minutes=1)


@dataclass(frozen=True)
class ResultBatch:
    """One response of a paged search: up to ``page_size`` papers (arXiv calls it a page)."""

    papers: tuple[Paper, ...]
    total_results: int
    start_index: int


def submitted_range_query(categories: Iterable[str], start: datetime, end: datetime) -> str:
    """``(cat:A OR cat:B) AND submittedDate:[s TO e]`` covering ``[start, end)`` with a margin.

    arXiv's bounds are GMT minutes and both inclusive, so the range is widened and the exact
    half-open window is applied to ``<published>`` afterwards.
    """
    low = (start.astimezone(UTC) - QUERY_MARGIN).replace(second=0, microsecond=0)
    high = (end.astimezone(UTC) + QUERY_MARGIN).replace(second=0, microsecond=0)
    cats = " OR ".join(f"cat:{c}" for c in categories)
    return f"({cats}) AND submittedDate:[{low:%Y%m%d%H%M} TO {high:%Y%m%d%H%M}]"


def _clean(text: str | None) -> str:
    return " ".join((text or "").split())


def _when(value: str) -> datetime:
    moment = dateparser.isoparse(value)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def _affiliations(data: bytes) -> dict[str, dict[str, str]]:
    """entry id -> {author name -> affiliation}; empty when the XML cannot be read strictly."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError:
        return {}
    found: dict[str, dict[str, str]] = {}
    for entry in root.iter(f"{ATOM}entry"):
        names = {}
        for author in entry.iter(f"{ATOM}author"):
            affiliation = author.find(f"{ARXIV}affiliation")
            if affiliation is not None and affiliation.text:
                names[_clean(author.findtext(f"{ATOM}name"))] = _clean(affiliation.text)
        if names:
            found[_clean(entry.findtext(f"{ATOM}id"))] = names
    return found


def is_arxiv_id(value: str) -> bool:
    """Whether ``value`` is an arXiv identifier (optionally with its version): safe in a URL path
    and, through ``id_slug``, in a file name."""
    return VALID_ID.fullmatch(value) is not None


def id_slug(arxiv_id: str) -> str:
    """The id as one file-name and URL segment: an old-style id's ``/`` becomes ``_``
    (``hep-th/9901001`` -> ``hep-th_9901001``, as the ``arxiv`` package names its downloads).
    No new-style id or archive name contains ``_``, so distinct ids never share a slug."""
    if not is_arxiv_id(arxiv_id):
        raise ValueError(f"not an arXiv id: {arxiv_id!r}")
    return arxiv_id.replace("/", "_")


def _paper(entry: Any, affiliations: dict[str, str]) -> Paper | None:
    """One entry as a ``Paper``; None (with a warning naming it) when its id is not an arXiv id,
    because the id ends up in file names and URLs, or when it has no date."""
    entry_id = _clean(entry.get("id"))
    match = ENTRY_ID.search(entry_id)
    if not match or not is_arxiv_id(match["id"]) or not entry.get("published"):
        log.warning("arXiv: skipped an entry without a valid arXiv id or a date: %r", entry_id[:120])
        return None
    links = entry.get("links", [])
    alternate = next((link["href"] for link in links if link.get("rel") == "alternate"), entry_id)
    pdf = next((link["href"] for link in links if link.get("title") == "pdf"), alternate.replace("/abs/", "/pdf/"))
    doi_url = next((link["href"] for link in links if link.get("title") == "doi"), None)
    categories = tuple(tag["term"] for tag in entry.get("tags", []) if tag.get("term"))
    primary = (entry.get("arxiv_primary_category") or {}).get("term") or (categories[0] if categories else "")
    if primary and primary not in categories:
        categories = (primary, *categories)
    authors = tuple(
        Author(name=_clean(a.get("name")), affiliation=affiliations.get(_clean(a.get("name"))))
        for a in entry.get("authors", [])
        if _clean(a.get("name"))
    )
    published = _when(entry["published"])
    return Paper(
        arxiv_id=match["id"],
        version=int(match["version"]),
        entry_id=entry_id,
        title=_clean(entry.get("title")),
        summary=_clean(entry.get("summary")),
        authors=authors,
        published=published,
        updated=_when(entry["updated"]) if entry.get("updated") else published,
        primary_category=primary,
        categories=categories,
        abs_url=alternate,
        pdf_url=pdf,
        comment=_clean(entry.get("arxiv_comment")) or None,
        journal_ref=_clean(entry.get("arxiv_journal_ref")) or None,
        doi=_clean(entry.get("arxiv_doi")) or None,
        doi_url=doi_url,
    )


def parse_feed(data: bytes) -> ResultBatch:
    """Parse one API response body. Raises ``Retryable`` for empty/garbled bodies and
    ``ArxivError`` for arXiv's own error feed (which carries the reason as the entry summary)."""
    if not data.strip():
        raise Retryable("empty response body")
    feed = feedparser.parse(data)
    total = feed.feed.get("opensearch_totalresults")
    if (feed.bozo and not isinstance(feed.bozo_exception, feedparser.CharacterEncodingOverride)) or total is None:
        raise Retryable("response is not a readable Atom feed")
    entries = feed.entries
    if len(entries) == 1 and _clean(entries[0].get("title")) == "Error" and "api/errors" in entries[0].get("id", ""):
        raise ArxivError(f"arXiv rejected the query: {_clean(entries[0].get('summary'))}")
    affiliations = _affiliations(data)
    papers = tuple(p for e in entries if (p := _paper(e, affiliations.get(_clean(e.get("id")), {}))) is not None)
    return ResultBatch(
        papers=papers, total_results=int(total), start_index=int(feed.feed.get("opensearch_startindex", 0))
    )


def _parse_response(response: httpx.Response) -> ResultBatch:
    if response.status_code == 400:
        with contextlib.suppress(Retryable):
            parse_feed(response.content)  # raises with arXiv's own message when it is an error feed
        raise ArxivError(f"arXiv rejected the query (HTTP 400): {_clean(response.text)[:200]}")
    if response.status_code != 200:
        raise ArxivError(f"unexpected HTTP {response.status_code} from {response.request.url}")
    return parse_feed(response.content)


class ArxivClient:
    """Reads one search query batch by batch; the HTTP session and timing come from ``PoliteHttp``."""

    def __init__(self, http: PoliteHttp, api_url: str, page_size: int) -> None:
        self.http = http
        self.api_url = api_url
        self.page_size = page_size

    def batches(self, query: str) -> Iterator[ResultBatch]:
        """Every batch of ``query``, oldest submission first, paging until ``totalResults``.

        An empty batch before the end is retried (arXiv sometimes sends one). A batch padded with
        an entry repeated from the previous one must not make the next offset skip a paper.
        """
        start, total = 0, None
        while total is None or start < total:
            params = {
                "search_query": query,
                "sortBy": "submittedDate",
                "sortOrder": "ascending",
                "start": str(start),
                "max_results": str(self.page_size),
            }

            def parse_batch(response: httpx.Response, start: int = start) -> ResultBatch:
                batch = _parse_response(response)
                if not batch.papers and start < batch.total_results:
                    raise Retryable(f"empty page at start={start} of {batch.total_results}")
                return batch

            batch = self.http.get(self.api_url, parse_batch, params)
            total = batch.total_results
            start += min(len(batch.papers), self.page_size)
            log.debug("batch at %d: %d entries of %d", batch.start_index, len(batch.papers), total)
            yield batch
