"""Backfill bench: a 90-day ``generate --from/--to`` (a new user filling their blog's history).

Why: a backfill is where a naive fetcher hurts most -- one query per day means 90+ requests, i.e.
4.5 minutes of mandatory pacing at arXiv's 3 s interval -- while one paged query needs only
ceil(papers / page_size). Pacing is off here (interval 0) so the wall time is the product's own
cost; a second run shows that stored windows are re-rendered without touching the network.
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
    table,
)

from tests.support.arxiv_server import papers_from_listings

PAGE_SIZE = 200
RANGE = (date(2025, 6, 1), date(2025, 8, 29))


def main() -> None:
    papers = papers_from_listings()
    days = days_between(*RANGE)
    counts = papers_per_day(papers, days)
    with arxiv_server(papers) as server, scratch("backfill") as root:
        ws = Workspace(root).configure(**bench_settings(server, page_size=PAGE_SIZE))
        first = fetch_run(server, ws, *RANGE)
        again = fetch_run(server, ws, *RANGE)  # every window is stored now: no request expected
    check_papers(RANGE, first.papers, sum(counts.values()))
    if again.requests:
        raise AssertionError(f"re-running a stored backfill made {again.requests} arXiv requests")

    ideal = ideal_paged(first.papers, PAGE_SIZE)
    per_day = per_day_requests(counts, PAGE_SIZE)
    table(
        f"backfill: generate --from {RANGE[0]} --to {RANGE[1]} "
        f"({len(days)} windows, interval 0, page_size {PAGE_SIZE})",
        [
            ("papers", first.papers, f"{min(counts.values())}..{max(counts.values())} per day"),
            ("API requests", first.requests, f"ideal ceil({first.papers}/{PAGE_SIZE}) = {ideal}"),
            ("requests / ideal", ratio(first.requests, ideal), "target 1.00x"),
            ("one query per day", per_day, "sum over days of max(1, ceil(papers_that_day / page_size))"),
            ("per-day / paged range", ratio(per_day, first.requests), "requests one paged query saves"),
            ("wall time", seconds(first.seconds), f"{seconds(first.seconds / len(days))} per window"),
            ("pacing at arXiv's 3 s", seconds(3 * (first.requests - 1)), f"vs {seconds(3 * (per_day - 1))} per day"),
            ("re-run, all stored", seconds(again.seconds), f"{again.requests} API requests"),
        ],
    )


if __name__ == "__main__":
    main()
