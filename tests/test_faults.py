"""Hostile input and a broken environment, as the user meets them: crafted arXiv ids, folders that
are files or read-only, a full disk, a damaged or locked store, impossible dates, bad config values,
broken templates, retries that must say why the run waits, and the mode of written files."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from .conftest import DAY, KEY, LLMWorkspace, Workspace
from .support.arxiv_server import Fault, make_paper
from .support.llm_server import Fault as LLMFault

START = datetime(2026, 1, 14, 1, 0, tzinfo=UTC)


def add(ws, *ids: str) -> None:
    for n, arxiv_id in enumerate(ids):
        ws.arxiv.papers.append(make_paper(arxiv_id, START + timedelta(minutes=n), title=f"Audio paper {n}"))


# -- item 5: ids -------------------------------------------------------------------------------------


CRAFTED_IDS = ["/../../x", "2601.00002/../../../y", "2601.123456", "hep-th/99010011", "2601.00003 x", "<b>2601.0001"]


def test_a_crafted_id_is_skipped_with_a_warning_and_the_window_is_still_written(llm_ws: LLMWorkspace) -> None:
    ws = llm_ws.ws
    ws.configure(pages={"enabled": True})
    add(ws, "2601.00001", *CRAFTED_IDS, "2601.00009")
    result = llm_ws.generate()
    assert result.returncode == 0, result.stderr
    outside = [p for p in ws.root.rglob("*.md") if not p.resolve().is_relative_to(ws.root / "posts")]
    assert outside == []
    assert sorted(p.name for p in (ws.root / "posts").iterdir()) == [
        "2026-01-14-2601.00001.md",
        "2026-01-14-2601.00009.md",
        "2026-01-15-arxiv.md",
    ]
    for crafted in CRAFTED_IDS:
        assert f"skipped an entry without a valid arXiv id or a date: 'http://arxiv.org/abs/{crafted}v1'" in (
            result.stderr
        )
    assert "fetched 2, shown 2, wrote posts/2026-01-15-arxiv.md" in result.stdout
    assert "2601.00002" not in llm_ws.text()


def test_old_style_ids_get_pages_named_with_an_underscore(llm_ws: LLMWorkspace) -> None:
    """``hep-th/9901001``: arXiv's own link keeps the slash; the page file and permalink use
    ``hep-th_9901001`` (one flat folder of pages; no other id contains ``_``)."""
    ws = llm_ws.ws
    ws.configure(pages={"enabled": True}, arxiv={"categories": ["cs.SD", "hep-th", "math.GT"]})
    ws.arxiv.papers.append(make_paper("hep-th/9901001", START, title="Old strings", categories=["hep-th"]))
    ws.arxiv.papers.append(make_paper("math.GT/0309136", START, title="Old knots", categories=["math.GT"]))
    result = llm_ws.generate()
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (ws.root / "posts").iterdir()) == [
        "2026-01-14-hep-th_9901001.md",
        "2026-01-14-math.GT_0309136.md",
        "2026-01-15-arxiv.md",
    ]
    page = (ws.root / "posts" / "2026-01-14-hep-th_9901001.md").read_text(encoding="utf-8")
    assert 'permalink: "/papers/hep-th_9901001/"' in page and 'arxiv_id: "hep-th/9901001"' in page
    assert "[Arxiv](https://arxiv.org/abs/hep-th/9901001)" in page
    daily = llm_ws.text()
    assert "](/papers/hep-th_9901001/)" in daily and "https://arxiv.org/abs/hep-th/9901001v1" in daily


@pytest.mark.parametrize(
    "value, valid",
    [
        ("2501.12345", True),
        ("0704.0001", True),
        ("2501.12345v12", True),
        ("hep-th/9901001", True),
        ("math.GT/0309136v2", True),
        ("cond-mat/0412498", True),
        ("2501.123", False),
        ("2501.123456", False),
        ("../2501.12345", False),
        ("hep-th/990100", False),
        ("hep-th/9901001/..", False),
        ("HEP-TH/9901001", False),
        ("2501.12345v0", False),
        ("2501.12345\n", False),
    ],
)
def test_arxiv_id_grammar(value: str, valid: bool) -> None:
    from arxiv_digest.arxiv import id_slug, is_arxiv_id

    assert is_arxiv_id(value) is valid
    if valid:
        assert "/" not in id_slug(value)
    else:
        with pytest.raises(ValueError):
            id_slug(value)


# -- item 8: waits are explained ---------------------------------------------------------------------


def retry_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "retrying in" in line]


def test_each_arxiv_retry_says_why_and_how_long_it_waits(workspace: Workspace) -> None:
    """Under cron (no terminal) at default verbosity: one line per wait, nothing else."""
    workspace.configure(arxiv={"backoff": 0.1})
    add(workspace, "2601.00001")
    workspace.arxiv.inject(Fault("server_error", status=503), Fault("stall", seconds=3), Fault("rate_limit"))
    result = workspace.cli("generate", "--date", DAY)
    assert result.returncode == 0, result.stderr
    assert retry_lines(result.stderr) == [
        "WARNING: arXiv: HTTP 503, retrying in 0.1 s (1/3)",
        "WARNING: arXiv: no answer in 1 s, retrying in 0.2 s (2/3)",
        "WARNING: arXiv: HTTP 429, retrying in 1 s (3/3)",  # the server's Retry-After: 1
    ]
    quiet = workspace.cli("-q", "generate", "--date", DAY, "--refetch")
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_a_dead_network_is_not_silent(workspace: Workspace) -> None:
    workspace.configure(arxiv={"api_url": "http://127.0.0.1:9/api/query", "backoff": 0.1, "retries": 2})
    result = workspace.cli("generate", "--date", DAY)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert [line.split(" (")[0] for line in lines[:2]] == ["WARNING: arXiv: cannot connect"] * 2
    assert lines[0].endswith(", retrying in 0.1 s (1/2)") and lines[1].endswith(", retrying in 0.2 s (2/2)")
    assert len(lines) == 3 and lines[2].startswith("error: arXiv: cannot connect") and "after 3 attempts" in lines[2]


def test_each_llm_retry_says_why_and_never_quotes_the_server(llm_ws: LLMWorkspace) -> None:
    add(llm_ws.ws, "2601.00001")
    llm_ws.ws.configure(llm={"concurrency": 1, "timeout": 1})
    llm_ws.llm.inject(LLMFault("server_error", status=502), LLMFault("stall", seconds=3))
    result = llm_ws.generate()
    assert result.returncode == 0, result.stderr
    assert retry_lines(result.stderr) == [
        "WARNING: LLM: HTTP 502, retrying in 0 s (1/2)",
        "WARNING: LLM: no answer in 1 s, retrying in 0 s (2/2)",
    ]
    assert "Sorry about that" not in result.stderr and KEY not in result.stderr


def test_a_servers_error_text_stays_out_of_the_retry_line_but_reaches_the_final_error(caplog) -> None:
    from arxiv_digest.polite import RetriesExhausted, Retryable, RetryPolicy

    secret = "Incorrect API key provided: sk-live-0123456789abcdef"

    def once() -> None:
        raise Retryable("HTTP 500", detail=secret)

    with caplog.at_level("WARNING"), pytest.raises(RetriesExhausted) as caught:
        RetryPolicy(retries=1, backoff=2, max_retry_after=0).call(once, lambda _: None, "LLM")
    assert caplog.messages == ["LLM: HTTP 500, retrying in 2 s (1/1)"]
    assert str(caught.value) == f"HTTP 500: {secret}" and caught.value.attempts == 2
