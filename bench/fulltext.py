"""Full-text bench: how long turning one arXiv HTML page (LaTeXML) into the LLM's plain text takes.

Why: every paper's explainer starts from this extraction, so a slow or super-linear parser shows up
in every nightly run. This used to be a wall-clock assertion in the test suite (< 0.3 s per page);
timings belong here, where the machine's load is reported rather than failing a test.
"""

from __future__ import annotations

from pathlib import Path

from _common import REPO, seconds, table, timed

from arxiv_digest.fulltext_extract import latexml_text

FIXTURES = REPO / "tests" / "fixtures" / "fulltext"
PAGES = ("2508.08468v6_av_speech_enhancement.html", "2501.11120v1_tell_me_about_yourself.html")
TARGET = 0.3  # seconds per page, best of RUNS
RUNS = 5


def best_time(page: Path) -> tuple[float, int]:
    raw = page.read_bytes()
    runs = [timed(lambda: latexml_text(raw)) for _ in range(RUNS)]
    text = runs[0][0]
    if not text:
        raise AssertionError(f"{page.name}: no text extracted")
    return min(elapsed for _, elapsed in runs), len(text)


def main() -> None:
    rows, verdicts = [], []
    for name in PAGES:
        page = FIXTURES / name
        best, chars = best_time(page)
        rows.append((name, seconds(best), f"{page.stat().st_size // 1024} KB in, {chars} characters out"))
        verdicts.append(f"{name.split('_')[0]}: {'ok' if best < TARGET else 'MISSED'}")
    table(f"fulltext: latexml_text per page (best of {RUNS}, target < {TARGET} s)", rows)
    print("  " + ", ".join(verdicts))


if __name__ == "__main__":
    main()
