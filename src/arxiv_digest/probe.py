"""`doctor`'s live LLM probe: one translation and one explainer of a known paper, judged like a run's.

An endpoint that answers is not a model that can do the job: a small local model answered
"请只回答一个字：好未来的" to the old one-word check and was reported "ok". The probe sends the real
prompts (the user's templates) for a real paper, reads the answers as
a run would (streamed, stopped early when clearly invalid), validates them with the same rules, and
reports latency and speed, and a plain verdict on whether this model can serve the digest.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

import httpx

from . import render
from .config import Config
from .llm import ChatClient
from .models import Author, Paper
from .polite import RetryPolicy, tls_context
from .summarize import (
    Expectation,
    InvalidAnswer,
    Job,
    check_explainer,
    check_translation,
    excerpt,
    judge,
    load_prompt,
    soft_problem,
    watch_answer,
)

_WHEN = datetime(2025, 1, 21, tzinfo=UTC)
KNOWN_PAPER = Paper(
    arxiv_id="2501.11999",
    version=1,
    entry_id="http://arxiv.org/abs/2501.11999v1",
    title="Rate-Aware Learned Speech Compression",
    summary=(
        "The rapid rise of real-time communication and large language models has significantly increased the "
        "importance of speech compression. Deep learning-based neural speech codecs have outperformed traditional "
        "signal-level speech codecs in terms of rate-distortion (RD) performance. Typically, these neural codecs "
        "employ an encoder-quantizer-decoder architecture, where audio is first converted into latent code feature "
        "representations and then into discrete tokens. However, this architecture exhibits insufficient RD "
        "performance due to two main drawbacks: (1) the inadequate performance of the quantizer, challenging "
        "training processes, and issues such as codebook collapse; (2) the limited representational capacity of the "
        "encoder and decoder, making it difficult to meet feature representation requirements across various "
        "bitrates. In this paper, we propose a rate-aware learned speech compression scheme that replaces the "
        "quantizer with an advanced channel-wise entropy model to improve RD performance, simplify training, and "
        "avoid codebook collapse. We employ multi-scale convolution and linear attention mixture blocks to enhance "
        "the representational capacity and flexibility of the encoder and decoder. Experimental results demonstrate "
        "that the proposed method achieves state-of-the-art RD performance, obtaining 53.51% BD-Rate bitrate saving "
        "in average, and achieves 0.26 BD-VisQol and 0.44 BD-PESQ gains."
    ),
    authors=(Author("Jiahao Xu"),),
    published=_WHEN,
    updated=_WHEN,
    primary_category="eess.AS",
    categories=("eess.AS", "cs.SD"),
    abs_url="https://arxiv.org/abs/2501.11999v1",
    pdf_url="https://arxiv.org/pdf/2501.11999v1",
)


@dataclass(frozen=True)
class ProbeAnswer:
    kind: str
    ok: bool
    seconds: float
    tokens: int
    detail: str  # why it was rejected (with the start of the answer), or a remark on a valid one

    def describe(self) -> str:
        speed = f"{self.seconds:.1f} s, {self.tokens / self.seconds:.0f} tokens/s" if self.seconds > 0 else ""
        head = f"{self.kind} {'valid' if self.ok else 'rejected'}"
        return f"{head} ({', '.join(p for p in (speed, self.detail) if p)})"


def _jobs(config: Config) -> list[Job]:
    env = render.environment(config.site.templates_dir)
    paper, llm = KNOWN_PAPER, config.llm
    translate = load_prompt(env, "prompts/translate.j2").messages(paper=paper)
    explain = load_prompt(env, "prompts/explain.j2").messages(
        paper=paper, fulltext=paper.summary, source_label="仅有摘要"
    )
    check = partial(check_translation, paper=paper)
    return [
        Job("translation", paper, "probe", llm.model, translate, check, "abstract"),
        Job("explainer", paper, "probe", llm.explainer_model or llm.model, explain, check_explainer, "abstract"),
    ]


def _ask(chat: ChatClient, job: Job, config: Config) -> ProbeAnswer:
    expect = Expectation.of(job)
    started = time.monotonic()
    completion = chat.complete(
        job.messages,
        job.model,
        config.llm.temperature,
        config.llm.max_tokens,
        watch=partial(watch_answer, expect=expect),
    )
    seconds, tokens = time.monotonic() - started, completion.completion_tokens
    try:
        text = judge(completion, job, expect)
    except InvalidAnswer as exc:
        stopped = ", stopped early" if completion.stopped is not None else ""
        shown = chat.redact(excerpt(completion.content, 60)).replace("\n", " ")
        return ProbeAnswer(job.kind, False, seconds, tokens, f"{exc.reason}{stopped}: {shown!r}")
    soft = soft_problem(text, job)
    return ProbeAnswer(job.kind, True, seconds, tokens, f"but {soft.reason}: {', '.join(soft.items)}" if soft else "")


def live_probe(config: Config) -> tuple[bool, str]:
    """(can this model serve, one line saying why) from a live translation and explainer."""
    cfg = config.llm
    with httpx.Client(timeout=cfg.timeout, trust_env=False, verify=tls_context()) as client:
        chat = ChatClient(
            client, cfg.base_url, os.environ.get(cfg.api_key_env), RetryPolicy(1, cfg.backoff, 10), stream=cfg.stream
        )
        jobs = _jobs(config)
        answers = [_ask(chat, job, config) for job in jobs]
    models = " / ".join(dict.fromkeys(j.model for j in jobs))
    serves = all(a.ok for a in answers)
    verdict = "this model can serve the digest" if serves else "this model cannot serve the digest; try a larger one"
    return serves, f"{models} at {cfg.base_url}: {'; '.join(a.describe() for a in answers)}: {verdict}"
