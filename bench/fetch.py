"""Fetch bench: how many arXiv API requests one window and a 31-day range cost, and how long they take.

Why: arXiv asks for one request every few seconds, so in production the request count *is* the
run time (31 requests = 1.5 minutes at the default 3 s interval). A range must be fetched as one
paged query, not one query per day; this bench shows how close the product gets to the minimum.
Pacing is off here (interval 0) so the wall time is the product's own cost.
"""

from __future__ import annotations

from datetime import date

from _common import (
    Workspace,
    arxiv_server,
    bench_settings,
    check_papers,
    days_between,
    fetch_run,
    ideal_paged,
    papers_per_day,
    per_day_requests,
    ratio,
    scratch,
    seconds,
    startup_seconds,
    table,
)

from tests.support.arxiv_server import papers_from_listings

PAGE_SIZE = 200
ONE_DAY = date(2025, 6, 5)
RANGE = (date(2025, 6, 1), date(2025, 7, 1))


def main() -> None:
    papers = papers_from_listings()
    days = days_between(*RANGE)
    counts = papers_per_day(papers, days)
    with arxiv_server(papers) as server, scratch("fetch") as root:
        startup = startup_seconds()
        settings = bench_settings(server, page_size=PAGE_SIZE)
        one = fetch_run(server, Workspace(root / "one").configure(**settings), ONE_DAY)
        span = fetch_run(server, Workspace(root / "range").configure(**settings), *RANGE)
    check_papers(ONE_DAY, one.papers, papers_per_day(papers, [ONE_DAY])[ONE_DAY])
    check_papers(RANGE, span.papers, sum(counts.values()))

    ideal = ideal_paged(span.papers, PAGE_SIZE)
    per_day = len(days)  # one query per day: at least one request each
    table(
        f"fetch: generate --date {ONE_DAY} (interval 0, page_size {PAGE_SIZE})",
        [
            ("API requests", one.requests, "ideal 1"),
            ("papers", one.papers, ""),
            ("wall time", seconds(one.seconds), f"process start-up alone {seconds(startup)}"),
        ],
    )
    table(
        f"fetch: generate --from {RANGE[0]} --to {RANGE[1]} ({len(days)} windows, page_size {PAGE_SIZE})",
        [
            ("papers", span.papers, f"{min(counts.values())}..{max(counts.values())} per day"),
            ("API requests", span.requests, f"ideal ceil({span.papers}/{PAGE_SIZE}) = {ideal}"),
            ("requests / ideal", ratio(span.requests, ideal), "target 1.00x"),
            ("wall time", seconds(span.seconds), f"{seconds(span.seconds / len(days))} per window"),
            ("one query per day", per_day, f"at least 1 per day ({per_day_requests(counts, PAGE_SIZE)} with paging)"),
            ("per-day / paged range", ratio(per_day, span.requests), "requests one paged query saves"),
            ("pacing at arXiv's 3 s", seconds(3 * (span.requests - 1)), f"vs {seconds(3 * (per_day - 1))} per day"),
        ],
    )


if __name__ == "__main__":
    main()
