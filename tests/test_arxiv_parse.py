"""Atom parsing on real captures: every field in arxiv-notes.md, old and new backends, error feeds."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from arxiv_digest.arxiv import parse_feed, submitted_range_query
from arxiv_digest.errors import ArxivError
from arxiv_digest.polite import Retryable, retry_after_seconds
from arxiv_digest.window import window_for

FIXTURES = Path(__file__).parent / "fixtures" / "arxiv"


def capture(name: str) -> bytes:
    return json.loads((FIXTURES / name).read_text())["body"].encode("latin-1")


def test_new_backend_capture_parses_every_field() -> None:
    page = parse_feed(capture("api_new_q_testing_s0_m100_2026-04-12.json"))
    assert page.total_results == 214881 and len(page.papers) == 100 and page.start_index == 0
    first = page.papers[0]
    assert first.entry_id == "http://arxiv.org/abs/2202.12139v1"
    assert (first.arxiv_id, first.version) == ("2202.12139", 1)
    assert (
        first.abs_url == "https://arxiv.org/abs/2202.12139v1" and first.pdf_url == "https://arxiv.org/pdf/2202.12139v1"
    )
    assert first.categories == ("cs.SE", "cs.LG") and first.primary_category == "cs.SE"
    assert first.published == datetime(2022, 2, 24, 15, 5, 19, tzinfo=UTC)
    assert first.doi == "10.1109/ICSTW55395.2022.00035" and first.doi_url.startswith("https://doi.org/")
    assert first.comment and first.journal_ref
    assert sum(p.version > 1 for p in page.papers) == 36
    assert all(p.updated >= p.published for p in page.papers)
    affiliated = {a.name: a.affiliation for p in page.papers for a in p.authors if a.affiliation}
    assert affiliated == {"Marie-Claude Gaudel": "LRI", "Pascale Le Gall": "IBISC"}
    assert all("\n" not in p.summary and "  " not in p.summary for p in page.papers)


def test_legacy_capture_keeps_http_links_and_unwraps_summaries() -> None:
    page = parse_feed((FIXTURES / "api_legacy_au_del_maestro_2016-10-09.xml").read_bytes())
    assert page.total_results == 31 and len(page.papers) == 10
    assert all(p.abs_url.startswith("http://arxiv.org/abs/") for p in page.papers)
    assert all("\n" not in p.summary and "  " not in p.summary for p in page.papers)


def test_error_feed_carries_arxivs_message() -> None:
    with pytest.raises(ArxivError, match="incorrect id format for abc"):
        parse_feed(capture("api_new_error_400_id_abc_2026-04-12.json"))


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   \n",
        b"<?xml version='1.0'?><feed xmlns='http://www.w3.org/2005/Atom'><entr",
        b"Rate exceeded.",
    ],
)
def test_empty_and_garbled_bodies_are_retryable(body: bytes) -> None:
    with pytest.raises(Retryable):
        parse_feed(body)


def test_query_widens_to_inclusive_minutes() -> None:
    window = window_for(datetime(2026, 1, 15).date(), "Asia/Shanghai", "08:50")
    query = submitted_range_query(["cs.SD", "eess.AS"], window.start, window.end)
    assert query == "(cat:cs.SD OR cat:eess.AS) AND submittedDate:[202601140049 TO 202601150051]"


def test_retry_after_forms() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after_seconds("20") == 20
    assert retry_after_seconds("Thu, 01 Jan 2026 00:00:30 GMT", now) == 30
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None
