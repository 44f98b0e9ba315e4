"""Run health: every run leaves a JSON report beside the store, for dashboards and post-mortems."""

from __future__ import annotations

import json
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import Any

from .files import write_atomic
from .pipeline import RunOutcome


def run_report(
    command: str, outcome: RunOutcome | None, exit_code: int, error: str | None, started: datetime
) -> dict[str, Any]:
    report: dict[str, Any] = {
        "command": command,
        "started": started.isoformat(),
        "outcome": "ok" if exit_code == 0 else ("pending" if exit_code == 3 else "failed"),
        "exit_code": exit_code,
        "error": error,
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
    path = folder / f"{started:%Y%m%dT%H%M%S}-{report['command']}.json"
    write_atomic(path, json.dumps(report, ensure_ascii=False, indent=2) + "\n")
    return path
