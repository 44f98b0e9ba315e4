"""How a run ended, in one place: what it did (``RunOutcome``), its exit code, the closing line it
prints and the JSON report it leaves, so the code, the line and the report cannot disagree."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .config import Config, LLMConfig
from .errors import DigestError, ExitCode
from .files import write_atomic

if TYPE_CHECKING:
    from .summarize import Usage

PROGRESS_LOGGER = "arxiv_digest.progress"  # a run's progress: a line per step where there is no terminal for a bar

DayNote = Literal["", "unchanged", "no papers, no post", "kept existing better post"]


@dataclass(frozen=True)
class DayOutcome:
    day: date
    fetched: int
    shown: int
    path: Path | None  # None: nothing to write (no papers) or a better post was kept
    note: DayNote = ""  # shown in the closing line and the report

    @property
    def changed(self) -> bool:
        """Whether this run wrote the day's post (a new or different text)."""
        return self.path is not None and self.note != "unchanged"


@dataclass(frozen=True)
class RunOutcome:
    days: tuple[DayOutcome, ...]
    requests: int
    seconds: float
    pending: int
    usage: Usage | None = None  # None: the LLM is not configured
    llm_error: str | None = None  # a failure retrying could not fix (bad key, no quota)
    cost: float | None = None  # when prices are configured
    currency: str = ""
    late: int = 0  # papers added to posts published by earlier runs
    written: tuple[Path, ...] = ()  # every file the run wrote (posts, paper pages, ...): what --commit records
    verdict: str | None = None  # the model was judged unfit early in the run: why, in one line
    given_up: tuple[tuple[str, date], ...] = ()  # (id, post day) of papers this run stopped retrying

    @property
    def fetched(self) -> int:
        return sum(d.fetched for d in self.days)

    @property
    def shown(self) -> int:
        return sum(d.shown for d in self.days)


def llm_cost(usage: Usage | None, llm: LLMConfig) -> float | None:
    """The run's LLM cost, when prices are configured."""
    if usage is None or not (llm.price_input or llm.price_output):
        return None
    return (usage.tokens_in * llm.price_input + usage.tokens_out * llm.price_output) / 1e6


class RunFailed(DigestError):
    """The run finished, but the LLM failed in a way retrying cannot fix (bad key, no quota)."""


def failure_of(outcome: RunOutcome) -> DigestError | None:
    """The error a finished run ends with, if any."""
    return RunFailed(outcome.llm_error) if outcome.llm_error else None


def exit_code(outcome: RunOutcome | None, failure: DigestError | None) -> ExitCode:
    """0 done; 3 finished with papers pending, papers given up by this run, or the model judged
    unfit (only when the LLM is on); else the failure's code."""
    if failure is not None:
        return ExitCode(failure.exit_code)
    unfinished = outcome is not None and (outcome.pending or outcome.given_up or outcome.verdict)
    if outcome is not None and outcome.usage is not None and unfinished:
        return ExitCode.PENDING
    return ExitCode.OK


# -- the closing line ------------------------------------------------------------------------------


def display(path: Path) -> str:
    """``path`` relative to the current folder when it is inside it (as a user would type it)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'s' if count != 1 else ''}"


def closing_line(outcome: RunOutcome) -> str:
    """One line per run: what was fetched and shown, what was written, how long it took."""
    if len(outcome.days) == 1:
        day = outcome.days[0]
        what: str = day.note or "wrote nothing"
        if day.path is not None:
            what = f"{display(day.path)} unchanged" if day.note == "unchanged" else f"wrote {display(day.path)}"
        head = f"{day.day}: fetched {day.fetched}, shown {day.shown}, {what}"
    else:
        first, last = outcome.days[0].day, outcome.days[-1].day
        written = sum(d.path is not None for d in outcome.days)
        head = (
            f"{first}..{last}: {len(outcome.days)} windows, fetched {outcome.fetched}, "
            f"shown {outcome.shown}, wrote {_plural(written, 'post')}"
        )
    extra = f", {_plural(outcome.requests, 'arXiv request')}" if outcome.requests else ""
    return f"{head}{extra}{llm_summary(outcome)} in {outcome.seconds:.1f}s"


def llm_summary(outcome: RunOutcome) -> str:
    usage = outcome.usage
    if usage is None:
        return f", {outcome.pending} pending (no LLM configured)" if outcome.pending else ""
    parts = [f"LLM {_plural(usage.calls, 'call')}", f"{usage.cache_hits} cached"]
    if usage.calls:
        parts.append(f"tokens {usage.tokens_in} in / {usage.tokens_out} out")
    if usage.failures:
        parts.append(f"{usage.failures} failed")
    if usage.early_stops:
        parts.append(f"{usage.early_stops} stopped early (up to {usage.tokens_saved} tokens saved)")
    if usage.ungrounded:
        numbers = sum(len(items) for items in usage.ungrounded.values())
        parts.append(f"{numbers} unsupported numbers/names kept in {len(usage.ungrounded)} explainers (see the report)")
    if usage.skipped_by_budget:
        parts.append(f"{usage.skipped_by_budget} over budget")
    if outcome.cost is not None:
        parts.append(f"cost {outcome.cost:.4f} {outcome.currency}")
    if outcome.pending:
        parts.append(f"{outcome.pending} pending")
    if outcome.given_up:
        days = ", ".join(sorted({day.isoformat() for _, day in outcome.given_up}))
        parts.append(f"{len(outcome.given_up)} given up (retry: generate --date {days} --retry-pending)")
    return ", " + ", ".join(parts)


# -- the JSON report -------------------------------------------------------------------------------


def reports_dir(config: Config) -> Path:
    """Reports go beside the store (``state/reports/`` by default), which the nightly workflow uploads."""
    return config.store.path.parent / "reports"


def run_report(
    command: str, outcome: RunOutcome | None, failure: DigestError | None, started: datetime
) -> dict[str, Any]:
    code = exit_code(outcome, failure)
    report: dict[str, Any] = {
        "command": command,
        "started": started.isoformat(),
        "outcome": code.name.lower(),
        "exit_code": int(code),
        "error": failure.format_message() if failure else None,
    }
    if outcome is not None:
        usage = outcome.usage
        report |= {
            "windows": [d.day.isoformat() for d in outcome.days],
            "requests": outcome.requests,
            "papers": {
                "fetched": outcome.fetched,
                "shown": outcome.shown,
                "late": outcome.late,
                "pending": outcome.pending,
                "given_up": [{"id": arxiv_id, "day": day.isoformat()} for arxiv_id, day in outcome.given_up],
            },
            "verdict": outcome.verdict,
            "posts": [
                {
                    "day": d.day.isoformat(),
                    "path": str(d.path) if d.path else None,
                    "note": d.note,
                    "fetched": d.fetched,
                    "shown": d.shown,
                }
                for d in outcome.days
            ],
            "llm": None
            if usage is None
            else {f.name: getattr(usage, f.name) for f in fields(usage) if not f.name.startswith(("_", "max_"))}
            | {"cost": outcome.cost, "currency": outcome.currency},
            "seconds": round(outcome.seconds, 3),
        }
    return report


def write_report(folder: Path, report: dict[str, Any], started: datetime) -> Path:
    path = folder / f"{started:%Y%m%dT%H%M%S.%f}-{report['command']}.json"  # runs a second apart keep theirs
    write_atomic(path, json.dumps(report, ensure_ascii=False, indent=2) + "\n")
    return path
