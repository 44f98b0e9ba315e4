"""`arxiv-digest generate` / `run` end to end against the loopback arXiv server, failures included."""

from __future__ import annotations

import math
import re
import sqlite3
from datetime import UTC, date, datetime, timedelta

import pytest
import yaml

from arxiv_digest.window import window_for

from .support.arxiv_server import Fault, make_paper, papers_from_listings
from .support.workspace import Workspace

LISTINGS = papers_from_listings()
CATS = {"cs.SD", "eess.AS"}
DAY = "2025-06-05"


def expected_ids(day: str) -> list[str]:
    window = window_for(date.fromisoformat(day), "Asia/Shanghai", "08:50")
    papers = [p for p in LISTINGS if window.contains(p.published) and CATS.intersection(p.categories)]
    return [p.arxiv_id for p in sorted(papers, key=lambda p: (p.published, p.arxiv_id), reverse=True)]


def shown_ids(text: str) -> list[str]:
    return re.findall(r"^- \*\*arXiv\*\*: \[https?://arxiv\.org/abs/([\d.]+)v\d+\]", text, re.MULTILINE)


def store_rows(ws: Workspace, table: str) -> int:
    path = ws.root / "state" / "digest.sqlite3"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


@pytest.fixture
def listed(workspace: Workspace) -> Workspace:
    workspace.arxiv.papers.extend(LISTINGS)
    return workspace


def test_generate_a_date_writes_the_window_in_post_order(listed: Workspace) -> None:
    result = listed.cli("generate", "--date", DAY)
    assert result.returncode == 0, result.stderr
    text = listed.post(DAY).read_text(encoding="utf-8")
    want = expected_ids(DAY)
    assert len(want) > 10 and shown_ids(text) == want
    assert f"- 抓取总数：{len(want)} 篇 | 本页显示：{len(want)} 篇（去重/过滤后）" in text
    assert "- 时间窗口（锚点 08:50 CST）：2025-06-04 08:50 — 2025-06-05 08:50" in text
    assert text.count("（中文译文待生成，暂显示英文摘要。）") == len(want) and "<details>" not in text
    assert re.fullmatch(
        rf"{DAY}: fetched {len(want)}, shown {len(want)}, wrote posts/{DAY}-arxiv.md, 1 arXiv request, "
        rf"{len(want)} pending \(no LLM configured\) in \d+\.\ds\n",
        result.stdout,
    )
    request = listed.arxiv.api_requests()[0]
    assert (
        request.params["search_query"] == "(cat:cs.SD OR cat:eess.AS) AND submittedDate:[202506040049 TO 202506050051]"
    )
    assert request.params["sortBy"] == "submittedDate"
    assert request.headers["user-agent"] == "arxiv-digest-tests/1.0 (mailto:tests@example.org)"
    assert store_rows(listed, "post_papers") == len(want)


def test_regenerating_a_stored_date_needs_no_network_and_is_byte_identical(listed: Workspace) -> None:
    assert listed.cli("generate", "--date", DAY).returncode == 0
    first = listed.post(DAY).read_bytes()
    listed.post(DAY).unlink()
    listed.configure(arxiv={"api_url": "http://127.0.0.1:9/api/query"})  # nothing listens there
    again = listed.cli("generate", "--date", DAY)
    assert again.returncode == 0, again.stderr
    assert listed.post(DAY).read_bytes() == first
    assert "arXiv request" not in again.stdout


def test_a_month_is_one_paged_query(listed: Workspace) -> None:
    listed.configure(arxiv={"page_size": 100})
    result = listed.cli("generate", "--from", "2025-06-01", "--to", "2025-06-30")
    assert result.returncode == 0, result.stderr
    first = window_for(date(2025, 6, 1), "Asia/Shanghai", "08:50").start
    last = window_for(date(2025, 6, 30), "Asia/Shanghai", "08:50").end
    total = sum(1 for p in LISTINGS if first <= p.published < last and CATS.intersection(p.categories))
    assert len(listed.arxiv.api_requests()) == math.ceil(total / 100)
    days = [date(2025, 6, 1) + timedelta(days=n) for n in range(30)]
    shown = []
    for day in days:
        path = listed.post(day.isoformat())
        ids = expected_ids(day.isoformat())
        assert path.exists() == bool(ids)
        if ids:
            shown += shown_ids(path.read_text(encoding="utf-8"))
    assert len(shown) == len(set(shown)) == total
    assert result.stdout.startswith("2025-06-01..2025-06-30: 30 windows, fetched ")


@pytest.mark.parametrize(
    "faults",
    [
        ["rate_limit"],
        [Fault("server_error", status=503), Fault("server_error", status=502)],
        ["stall"],
        ["empty_body"],
        ["bad_xml"],
        ["empty_page"],
    ],
    ids=["429-retry-after", "5xx", "stall", "empty-body", "bad-xml", "empty-page"],
)
def test_transient_failures_are_retried_to_the_same_post(listed: Workspace, faults: list) -> None:
    listed.arxiv.inject(*faults)
    result = listed.cli("-v", "generate", "--date", DAY)
    assert result.returncode == 0, result.stderr
    assert shown_ids(listed.post(DAY).read_text(encoding="utf-8")) == expected_ids(DAY)
    requests = listed.arxiv.api_requests()
    assert len(requests) == len(faults) + 1 and listed.arxiv.max_in_flight == 1
    if faults == ["rate_limit"]:
        # backoff is 0 here: the wait announced is the Retry-After: 1
        assert "WARNING: arXiv: HTTP 429, retrying in 1 s (1/3)" in result.stderr


def test_paging_with_repeats_and_empty_pages_keeps_every_paper_once(listed: Workspace) -> None:
    listed.configure(arxiv={"page_size": 5})
    # page 1 fine, page 2 empty (retried), page 3 repeats an entry of page 2
    listed.arxiv.inject("pass", "empty_page", "pass", "duplicate_first")
    result = listed.cli("generate", "--date", DAY)
    assert result.returncode == 0, result.stderr
    assert shown_ids(listed.post(DAY).read_text(encoding="utf-8")) == expected_ids(DAY)
    assert re.search(rf"fetched {len(expected_ids(DAY))}, ", result.stdout)


def test_arxiv_error_feed_stops_with_arxivs_message_and_changes_nothing(listed: Workspace) -> None:
    listed.arxiv.inject(Fault("error_400", message="unknown category cs.XX"))
    result = listed.cli("generate", "--date", DAY)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: arXiv: arXiv rejected the query: unknown category cs.XX"
    assert listed.posts() == [] and store_rows(listed, "papers") == 0 and store_rows(listed, "windows") == 0


def test_retries_running_out_is_one_clear_error_and_nothing_is_written(listed: Workspace) -> None:
    assert listed.cli("generate", "--date", "2025-06-04").returncode == 0
    papers_before = store_rows(listed, "papers")
    listed.arxiv.inject(*[Fault("server_error", status=503)] * 4)
    result = listed.cli("generate", "--date", DAY)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[:-1] == [f"WARNING: arXiv: HTTP 503, retrying in 0 s ({n}/3)" for n in (1, 2, 3)]
    assert lines[-1].startswith("error: arXiv: HTTP 503") and "after 4 attempts" in lines[-1]
    assert "Traceback" not in result.stderr
    assert listed.posts() == ["2025-06-04-arxiv.md"] and store_rows(listed, "papers") == papers_before


def test_legacy_http_links_are_kept_as_arxiv_returns_them(workspace: Workspace) -> None:
    workspace.arxiv.legacy_http_links = True
    workspace.arxiv.papers.append(make_paper("2510.26372", datetime(2025, 10, 30, 12, 0, tzinfo=UTC)))
    assert workspace.cli("generate", "--date", "2025-10-31").returncode == 0
    text = workspace.post("2025-10-31").read_text(encoding="utf-8")
    assert "- **arXiv**: [http://arxiv.org/abs/2510.26372v1](http://arxiv.org/abs/2510.26372v1)" in text
    assert "- **PDF**: [http://arxiv.org/pdf/2510.26372v1](http://arxiv.org/pdf/2510.26372v1)" in text


def test_hostile_metadata_gives_valid_front_matter_and_inert_markdown(workspace: Workspace) -> None:
    when = datetime(2026, 1, 14, 12, 0, tzinfo=UTC)
    workspace.arxiv.papers.append(
        make_paper(
            "2601.00001",
            when,
            title='{{ site }} {% raw %} <script>alert("x")</script>: "quoted" \'single\' a\\b $\\alpha_1$',
            abstract="<img src=x onerror=alert(1)> {{ page.title }} --- \n\n key: value",
            authors=[f"Zoë Ñoño-{i} 李{i}" for i in range(133)],
        )
    )
    result = workspace.cli("generate", "--date", "2026-01-15")
    assert result.returncode == 0, result.stderr
    text = workspace.post("2026-01-15").read_text(encoding="utf-8")
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["title"] == "arXiv Daily – 2026-01-15"
    assert "<script>" not in text and "<img" not in text
    assert "{{ site }}" not in text and "{% raw %} <" not in text
    assert text.count("李") == 133


def test_filters_and_cap_say_what_they_left_out(listed: Workspace) -> None:
    listed.configure(filter={"max_papers": 3, "exclude_keywords": ["speech"]})
    assert listed.cli("generate", "--date", DAY).returncode == 0
    text = listed.post(DAY).read_text(encoding="utf-8")
    assert len(shown_ids(text)) == 3
    fetched = len(expected_ids(DAY))
    assert f"- 抓取总数：{fetched} 篇 | 本页显示：3 篇（去重/过滤后）" in text
    assert re.search(r"- 另有 \d+ 篇符合条件的论文因每日篇数上限未显示", text)


def test_run_writes_the_latest_closed_window(listed: Workspace) -> None:
    listed.configure(window={"refresh_days": 0})
    result = listed.cli("run", now="2025-06-05T00:49:00Z")  # 08:49 CST: the 06-05 window is still open
    assert result.returncode == 0, result.stderr
    assert listed.posts() == ["2025-06-04-arxiv.md"]


def test_usage_and_config_errors_exit_2_with_one_message(workspace: Workspace) -> None:
    future = workspace.cli("generate", "--date", "2026-11-22")
    assert future.returncode == 2 and "in the future" in future.stderr
    bad = workspace.cli("generate", "--date", "2026-02-30")
    assert bad.returncode == 2 and "not a valid date" in bad.stderr
    workspace.configure(arxiv={"request_interval": "fast"}, colour={"x": 1})
    result = workspace.cli("generate", "--date", DAY)
    assert result.returncode == 2
    assert 'arxiv.request_interval: expected a number >= 0 and <= 600, got "fast"' in result.stderr
    assert "unknown section colour" in result.stderr and "Traceback" not in result.stderr


def test_every_command_has_help_with_examples(workspace: Workspace) -> None:
    for command in ([], ["generate"], ["run"]):
        result = workspace.cli(*command, "--help", now=None)
        assert result.returncode == 0 and "Examples:" in result.stdout
