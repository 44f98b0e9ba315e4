"""Self-tests of the fake arXiv API, using httpx + feedparser directly (never the product code).

Why: end-to-end tests of the digest are only as trustworthy as this fake; these pin its wire format to
a recorded arXiv response and its query, paging, visibility and fault semantics to arxiv-notes.md.
"""

from __future__ import annotations

import json
import re
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import feedparser
import httpx
import pytest

from tests.support.arxiv_server import (
    EASTERN,
    ArxivServer,
    FakePaper,
    Fault,
    make_paper,
    papers_from_listings,
    render_entry,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "arxiv"
CAPTURE = FIXTURES / "api_new_q_testing_s0_m100_2026-04-12.json"
ERROR_CAPTURE = FIXTURES / "api_new_error_400_id_abc_2026-04-12.json"
ATOM = "{http://www.w3.org/2005/Atom}"
ARXIV = "{http://arxiv.org/schemas/atom}"
NOW = datetime(2026, 1, 20, 12, 0, tzinfo=UTC)


_http: httpx.Client  # set by the module fixture below


@pytest.fixture(autouse=True, scope="module")
def _shared_client() -> Iterator[None]:
    """One keep-alive client for the module: building an httpx client costs ~25 ms."""
    global _http
    with httpx.Client(timeout=2.0) as client:
        _http = client
        yield


def _get(server: ArxivServer, timeout: float = 2.0, **params: Any) -> httpx.Response:
    return _http.get(server.url, params={k: str(v) for k, v in params.items()}, timeout=timeout)


def _ids(response: httpx.Response) -> list[str]:
    feed = feedparser.parse(response.content)
    assert not feed.bozo, feed.get("bozo_exception")
    return [e.id.removeprefix("http://arxiv.org/abs/").rsplit("v", 1)[0] for e in feed.entries]


def _capture_bytes(path: Path) -> bytes:
    return json.loads(path.read_text(encoding="utf-8"))["body"].encode("latin-1")


def _paper_from_entry(entry: ET.Element) -> FakePaper:
    """Rebuild a FakePaper from a recorded entry, to re-render it and compare bytes."""

    def text(tag: str) -> str | None:
        node = entry.find(tag)
        return None if node is None else node.text

    match = re.fullmatch(r"http://arxiv\.org/abs/(.+)v(\d+)", text(f"{ATOM}id") or "")
    assert match
    authors, affiliations = [], {}
    for author in entry.findall(f"{ATOM}author"):
        name = author.findtext(f"{ATOM}name") or ""
        authors.append(name)
        if (aff := author.findtext(f"{ARXIV}affiliation")) is not None:
            affiliations[name] = aff
    return FakePaper(
        arxiv_id=match[1],
        version=int(match[2]),
        title=text(f"{ATOM}title") or "",
        abstract=text(f"{ATOM}summary") or "",
        authors=authors,
        categories=[c.get("term", "") for c in entry.findall(f"{ATOM}category")],
        published=datetime.fromisoformat(text(f"{ATOM}published") or ""),
        updated=datetime.fromisoformat(text(f"{ATOM}updated") or ""),
        comment=text(f"{ARXIV}comment"),
        journal_ref=text(f"{ARXIV}journal_ref"),
        doi=text(f"{ARXIV}doi"),
        affiliations=affiliations,
    )


# --------------------------------------------------------------------------- wire format


def test_entries_render_byte_identical_to_real_capture() -> None:
    body = _capture_bytes(CAPTURE)
    raw_entries = re.findall(rb"  <entry>\n.*?\n  </entry>\n", body, re.S)
    parsed = ET.fromstring(body).findall(f"{ATOM}entry")
    assert len(raw_entries) == len(parsed) == 100
    for raw, entry in zip(raw_entries, parsed, strict=True):
        assert render_entry(_paper_from_entry(entry)).encode("utf-8") == raw

    with ArxivServer([make_paper("2601.00001", NOW - timedelta(days=1))], now=lambda: NOW) as server:
        served = _get(server, search_query="cat:cs.SD", max_results=100).content
    assert served.split(b"\n")[:2] == body.split(b"\n")[:2]  # XML declaration and namespaces
    header = rb"  <opensearch:itemsPerPage>100</opensearch:itemsPerPage>\n  <opensearch:totalResults>\d+"
    assert re.search(header, served) and re.search(header, body)


def test_error_400_matches_real_capture_byte_for_byte() -> None:
    with ArxivServer(now=lambda: datetime(2026, 4, 12, 22, 59, 6, tzinfo=UTC)) as server:
        response = _http.get(server.url, params={"search_query": "", "id_list": "abc", "max_results": "100"})
    assert response.status_code == 400
    assert response.content == _capture_bytes(ERROR_CAPTURE)


def test_hostile_text_round_trips_through_feedparser() -> None:
    title = "<script>alert(\"x\")</script> & 'q' {{ jinja }} {% raw %} ]]> &amp; $a<b$"
    abstract = 'Tags <i>x</i> & "quotes" {{ y }}\n  second paragraph $\\mathcal{A}$ CMME\\_to\\_MEI'
    name = 'Zoë <Ø> & "Q"'
    paper = make_paper(
        "2601.00001",
        NOW - timedelta(days=1),
        title=title + "\x07",  # control characters cannot travel in XML; the fake drops them
        abstract=abstract,
        authors=[name],
        comment="<c> & d",
        affiliations={name: "Univ & <Lab>"},
        doi="10.1/a&b",
    )
    with ArxivServer([paper], now=lambda: NOW) as server:
        response = _get(server, id_list="2601.00001")
    feed = feedparser.parse(response.content)
    assert not feed.bozo
    entry = feed.entries[0]
    assert (entry.title, entry.summary, entry.authors[0]["name"]) == (title, abstract, name)
    assert (entry.arxiv_comment, entry.arxiv_affiliation, entry.arxiv_doi) == (
        "<c> & d",
        "Univ & <Lab>",
        "10.1/a&b",
    )
    assert ET.fromstring(response.content).find(f"{ATOM}entry/{ATOM}title").text == title  # type: ignore[union-attr]


@pytest.mark.parametrize("crafted", ["/../../x", "2601.00002/../../../y", "2601.123456", "<b>2601.0001"])
def test_any_id_is_served_verbatim_so_the_client_must_check_it(crafted: str) -> None:
    """The fake does not validate ids in what it serves: a crafted one reaches the client as is."""
    paper = make_paper(crafted, NOW - timedelta(hours=1))
    with ArxivServer([paper], now=lambda: NOW) as server:
        entry = feedparser.parse(_get(server, search_query="cat:cs.SD", max_results=5).content).entries[0]
    assert entry.id == f"http://arxiv.org/abs/{crafted}v1"
    assert {link.get("title", link.rel): link.href for link in entry.links}["pdf"] == (
        f"https://arxiv.org/pdf/{crafted}v1"
    )


@pytest.mark.parametrize(("legacy", "scheme"), [(False, "https"), (True, "http")])
def test_link_schemes(legacy: bool, scheme: str) -> None:
    with ArxivServer([make_paper("2601.00001", NOW)], now=lambda: NOW, legacy_http_links=legacy) as server:
        entry = feedparser.parse(_get(server, search_query="cat:cs.SD").content).entries[0]
    assert entry.id == "http://arxiv.org/abs/2601.00001v1"  # ids stay http:// in both eras
    hrefs = {link.get("title", link.rel): link.href for link in entry.links}
    assert hrefs == {
        "alternate": f"{scheme}://arxiv.org/abs/2601.00001v1",
        "pdf": f"{scheme}://arxiv.org/pdf/2601.00001v1",
    }
    assert entry.arxiv_primary_category["term"] == "cs.SD"


# --------------------------------------------------------------------------- query semantics


def test_submitted_date_bounds_are_inclusive_at_minute_precision() -> None:
    base = datetime(2026, 1, 14, 0, 50, tzinfo=UTC)
    papers = [
        make_paper("2601.00001", base - timedelta(seconds=1)),  # before A:00 -> out
        make_paper("2601.00002", base),  # exactly A:00 -> in
        make_paper("2601.00003", base + timedelta(hours=12)),
        make_paper("2601.00004", base + timedelta(days=1)),  # exactly B:00 -> in
        make_paper("2601.00005", base + timedelta(days=1, seconds=1)),  # B:00:01 -> out
        make_paper("2601.00006", base + timedelta(days=1, seconds=59)),  # B:59 -> out
    ]
    with ArxivServer(papers, now=lambda: NOW) as server:
        response = _get(server, search_query="submittedDate:[202601140050 TO 202601150050]", sortBy="submittedDate")
    assert _ids(response) == ["2601.00004", "2601.00003", "2601.00002"]


def test_category_or_precedence_and_text_terms() -> None:
    t = datetime(2026, 1, 14, 3, tzinfo=UTC)
    papers = [
        make_paper("2601.00001", t, categories=["cs.SD", "cs.LG"], authors=["Adrian Del Maestro"]),
        make_paper("2601.00002", t, categories=["eess.SP", "eess.AS"], title="Speech Codec"),  # cross-list
        make_paper("2601.00003", t, categories=["cs.LG"]),
        make_paper("2601.00004", t - timedelta(days=9), categories=["eess.AS"]),
    ]
    with ArxivServer(papers, now=lambda: NOW) as server:

        def ids(query: str) -> set[str]:
            response = _get(server, search_query=query)
            assert response.status_code == 200, response.text
            return set(_ids(response))

        window = "submittedDate:[202601140000 TO 202601150000]"
        assert ids(f"(cat:cs.SD OR cat:eess.AS) AND {window}") == {"2601.00001", "2601.00002"}
        assert ids("cat:cs.LG OR cat:eess.SP AND cat:cs.SD") == {
            "2601.00001",
            "2601.00003",
        }  # AND binds tighter
        assert ids("cat:cs.LG ANDNOT cat:cs.SD") == {"2601.00003"}
        assert ids("cat:eess.*") == {"2601.00002", "2601.00004"}
        assert ids('ti:"speech codec"') == ids("all:CODEC") == ids("codec") == {"2601.00002"}
        assert ids("au:del_maestro") == {"2601.00001"}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"search_query": "(cat:cs.SD OR cat:eess.AS"}, "unbalanced parentheses"),
        ({"search_query": "cat:cs.SD OR"}, "unexpected end"),
        ({"search_query": "AND cat:cs.SD"}, "unexpected AND"),
        ({"search_query": "cat:cs.SD)"}, "unexpected"),
        ({"search_query": "submittedDate:[2026 TO 202601010000]"}, "invalid date range"),
        ({"search_query": "submittedDate:[202601010000 TO 202613010000]"}, "invalid date"),
        ({"search_query": "nope:x"}, "unknown search field"),
        ({"search_query": 'ti:"unclosed'}, "malformed search term"),
        ({"start": "-1", "search_query": "cat:cs.SD"}, "start must be non-negative"),
        ({"max_results": "ten", "search_query": "cat:cs.SD"}, "max_results must be an integer"),
        ({"sortBy": "date", "search_query": "cat:cs.SD"}, "sortBy must be in"),
        ({"id_list": "abc"}, "incorrect id format for abc"),
    ],
)
def test_malformed_requests_get_400_error_feed(params: dict[str, str], message: str) -> None:
    with ArxivServer(now=lambda: NOW) as server:
        response = _http.get(server.url, params=params)
    assert response.status_code == 400
    feed = feedparser.parse(response.content)
    assert not feed.bozo and feed.entries[0].title == "Error"
    assert message in feed.entries[0].summary


def test_paging_sorting_and_total_results() -> None:
    t = datetime(2026, 1, 10, tzinfo=UTC)
    papers = [make_paper(f"2601.{i:05d}", t + timedelta(minutes=i)) for i in range(25)]
    papers.append(make_paper("2601.00100", t + timedelta(minutes=3)))  # same time as 2601.00003: tie
    query = {
        "search_query": "cat:cs.SD",
        "sortBy": "submittedDate",
        "sortOrder": "ascending",
        "max_results": 10,
    }
    with ArxivServer(reversed(papers), now=lambda: NOW) as server:
        pages = []
        for start in (0, 10, 20, 30):
            response = _get(server, start=start, **query)
            feed = feedparser.parse(response.content)
            assert feed.feed.opensearch_totalresults == "26"
            assert feed.feed.opensearch_startindex == str(start)
            assert feed.feed.opensearch_itemsperpage == "10"
            pages.append(_ids(response))
        descending = _ids(_get(server, **{**query, "sortOrder": "descending", "max_results": 3}))
        default = _ids(_get(server, search_query="cat:cs.SD"))
        capped = feedparser.parse(_get(server, search_query="cat:cs.SD", max_results=5000).content)
    assert [len(p) for p in pages] == [10, 10, 6, 0]
    flat = [i for p in pages for i in p]
    assert flat[:5] == ["2601.00000", "2601.00001", "2601.00002", "2601.00003", "2601.00100"]
    assert sorted(flat) == sorted(p.arxiv_id for p in papers)
    assert descending == ["2601.00024", "2601.00023", "2601.00022"]
    assert len(default) == 10 and default[0] == "2601.00024"  # relevance ~ newest first, 10 by default
    assert capped.feed.opensearch_itemsperpage == "2000"


def test_visibility_follows_announcement_and_clock() -> None:
    announced = datetime(2026, 1, 15, 1, 0, tzinfo=UTC)
    papers = [
        make_paper("2601.00001", datetime(2026, 1, 14, 12, tzinfo=UTC), announced=announced),
        make_paper("2601.00002", datetime(2026, 1, 14, 13, tzinfo=UTC)),  # no announcement: always visible
    ]
    with ArxivServer(papers, now=lambda: announced - timedelta(seconds=1)) as server:
        before = _ids(_get(server, search_query="cat:cs.SD"))
        hidden_abs = _http.get(f"{server.base}/abs/2601.00001v1").status_code
        server.set_now(announced)
        after = _ids(_get(server, search_query="cat:cs.SD"))
        abs_page = _http.get(f"{server.base}/abs/2601.00001v1")
        unknown = _http.get(f"{server.base}/rss/cs.SD").status_code
    assert before == ["2601.00002"] and hidden_abs == 404
    assert after == ["2601.00002", "2601.00001"]
    assert abs_page.status_code == 200 and "Neural Audio Coding Study 2601.00001" in abs_page.text
    assert unknown == 404


# --------------------------------------------------------------------------- faults


@pytest.fixture
def five() -> list[FakePaper]:
    t = datetime(2026, 1, 10, tzinfo=UTC)
    return [make_paper(f"2601.{i:05d}", t + timedelta(hours=i)) for i in range(5)]


ASC = {"search_query": "cat:cs.SD", "sortBy": "submittedDate", "sortOrder": "ascending", "max_results": 2}


def test_faults_are_consumed_in_order_by_api_requests_only(five: list[FakePaper]) -> None:
    with ArxivServer(five, now=lambda: NOW) as server:
        server.inject("rate_limit", Fault("rate_limit", retry_after=None), Fault("rate_limit", retry_after=30))
        server.inject(Fault("server_error"), Fault("server_error", status=503), "empty_body")
        assert _http.get(f"{server.base}/abs/2601.00000").status_code == 200  # does not consume a fault
        responses = [_get(server, **ASC) for _ in range(7)]
        assert server.pending_faults == 0
        statuses = [r.status for r in server.requests]
        faults = [r.fault for r in server.api_requests()]
    assert [r.status_code for r in responses] == [429, 429, 429, 500, 503, 200, 200]
    assert statuses == [200, 429, 429, 429, 500, 503, 200, 200]
    assert faults == ["rate_limit"] * 3 + ["server_error"] * 2 + ["empty_body", None]
    assert responses[0].text == "Rate exceeded." and responses[0].headers["content-type"] == "text/plain"
    assert [r.headers.get("retry-after") for r in responses[:3]] == ["1", None, "30"]
    assert responses[5].content == b""
    assert _ids(responses[6]) == ["2601.00000", "2601.00001"]


def test_bad_xml_empty_page_error_400_and_duplicate_first(five: list[FakePaper]) -> None:
    with ArxivServer(five, now=lambda: NOW) as server:
        server.inject("bad_xml", "empty_page", Fault("error_400", message="max_results too large"))
        bad = _get(server, **ASC)
        empty = _get(server, start=2, **ASC)
        error = _get(server, **ASC)
        first_page = _ids(_get(server, **ASC))
        server.inject("duplicate_first")
        second_page = _get(server, start=2, **ASC)
    assert bad.status_code == 200
    with pytest.raises(ET.ParseError):
        ET.fromstring(bad.content)
    assert feedparser.parse(bad.content).bozo
    empty_feed = feedparser.parse(empty.content)
    assert not empty_feed.bozo and empty_feed.entries == []
    assert empty_feed.feed.opensearch_totalresults == "5" and empty_feed.feed.opensearch_startindex == "2"
    assert error.status_code == 400 and feedparser.parse(error.content).entries[0].summary == "max_results too large"
    assert first_page == ["2601.00000", "2601.00001"]
    assert _ids(second_page) == ["2601.00000", "2601.00002", "2601.00003"]
    assert feedparser.parse(second_page.content).feed.opensearch_totalresults == "5"


def test_stall_times_out_client_and_server_notices_hang_up(five: list[FakePaper]) -> None:
    with ArxivServer(five, now=lambda: NOW, stall_seconds=60.0) as server:
        server.inject("stall", Fault("stall", seconds=0.05))
        with pytest.raises(httpx.ReadTimeout):
            _get(server, timeout=0.1, **ASC)
        deadline = time.monotonic() + 20  # guards against a hang only: the stall itself lasts 60 s
        while server.in_flight and time.monotonic() < deadline:
            time.sleep(0.005)
        assert server.in_flight == 0  # abandoned when the client hung up, not slept out
        assert server.requests[0].status is None
        time.sleep(0.02)
        slow = _get(server, **ASC)  # a short stall is answered normally
        assert slow.status_code == 200 and _ids(slow) == ["2601.00000", "2601.00001"]
        assert server.max_in_flight == 1


def test_a_retry_sent_the_moment_the_client_hangs_up_on_a_stall_is_not_concurrency(
    five: list[FakePaper],
) -> None:
    """The product retries at once in tests (no backoff) on its pooled connection. The stalled
    request notices the hang-up by polling; the retry must not be counted as a second request in
    flight meanwhile (without the wait in ``_begin`` this happened in 6 runs of 150)."""
    with ArxivServer(five, now=lambda: NOW, stall_seconds=60.0) as server, httpx.Client() as client:
        for _ in range(60):
            server.inject("stall")
            with pytest.raises(httpx.ReadTimeout):
                client.get(f"{server.root_url}/api/query", params=ASC, timeout=0.02)
            assert client.get(f"{server.root_url}/api/query", params=ASC, timeout=5).status_code == 200
        assert server.max_in_flight == 1


def test_max_in_flight_counts_concurrent_requests(five: list[FakePaper]) -> None:
    with ArxivServer(five, now=lambda: NOW) as server:
        server.inject(Fault("stall", seconds=0.2), Fault("stall", seconds=0.2))
        threads = [threading.Thread(target=_get, args=(server,), kwargs=ASC) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert server.max_in_flight == 2 and server.in_flight == 0
        assert [r.status for r in server.requests] == [200, 200]


def test_fault_validation_and_recorded_headers() -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        Fault("teapot")
    with pytest.raises(ValueError, match="takes"):
        Fault("rate_limit", status=503)
    with ArxivServer(now=lambda: NOW) as server:
        with pytest.raises(ValueError):
            server.inject("nope")
        _http.get(server.url, params={"search_query": "cat:cs.SD AND x"}, headers={"User-Agent": "digest/1 (a@b.c)"})
        request = server.requests[0]
    assert request.path == "/api/query" and request.params == {"search_query": "cat:cs.SD AND x"}
    assert request.headers["user-agent"] == request.headers["User-Agent"] == "digest/1 (a@b.c)"


# --------------------------------------------------------------------------- listings


def test_papers_from_listings_are_deterministic_and_realistic() -> None:
    papers = papers_from_listings()
    assert papers == papers_from_listings() and papers is not papers_from_listings()
    assert papers_from_listings(limit=5) == papers[:5]
    assert len({p.arxiv_id for p in papers}) == len(papers) == 1974
    groups: dict[datetime, list[FakePaper]] = {}
    for paper in papers:
        assert paper.announced is not None
        groups.setdefault(paper.announced, []).append(paper)
    previous_cutoff = None
    for announced, group in sorted(groups.items()):
        eastern = announced.astimezone(EASTERN)
        assert (eastern.hour, eastern.minute) == (20, 0) and eastern.weekday() in (6, 0, 1, 2, 3)  # Sun-Thu
        assert announced.hour == 0  # May-Sep is EDT: 20:00 ET == 00:00 UTC
        cutoff_day = eastern.date()
        while cutoff_day.weekday() >= 5:
            cutoff_day -= timedelta(days=1)
        cutoff = datetime(cutoff_day.year, cutoff_day.month, cutoff_day.day, 14, tzinfo=EASTERN)
        submitted = [p.last_updated for p in group]  # == published except for old papers cross-listed at v2+
        assert submitted == sorted(submitted) and [p.arxiv_id for p in group] == sorted(p.arxiv_id for p in group)
        assert all(t < cutoff < announced for t in submitted)
        assert previous_cutoff is None or min(submitted) > previous_cutoff
        assert all(p.published < announced and p.published <= p.last_updated for p in group)
        previous_cutoff = cutoff
