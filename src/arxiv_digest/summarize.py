"""The LLM stage's rules: prompts, answer validation, and one job run until its answer is valid.

Answers are normalised (a leading ``<think>`` block and a wrapping code fence are removed), then
judged in an order that names the real problem: content first (empty, reasoning that never ends,
a refusal, the prompt echoed back, a repetition loop, not Chinese), then size (cut off at
``max_tokens``, or longer than the task's ``Bounds``), then format (sections, preamble, fences).
A streamed answer is watched with the same content and size checks and stopped as soon as one
fails. A retry always differs from the call before it: a corrective message naming the problem
(quoting only a short excerpt of the bad answer) and, after a runaway answer, a lower temperature
and repetition penalties. Only valid texts are ever stored, so a post never shows an error or a
half answer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import jinja2

from .earlystop import find_loop
from .fulltext import Source
from .glossary import Term, missing_terms
from .grounding import SourceText, unsupported
from .llm import ChatClient, Completion, LLMError
from .models import PageInfo, Paper, TextKind
from .verdict import Verdict

log = logging.getLogger(__name__)

THINK = re.compile(r"^\s*<think>.*?</think>\s*", re.DOTALL | re.IGNORECASE)
OPEN_THINK = re.compile(r"^\s*<think>", re.IGNORECASE)
FENCE = re.compile(r"^\s*```[\w-]*[ \t]*\n(.*?)\n```\s*$", re.DOTALL)
CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
LATIN = re.compile(r"[A-Za-z]")
PREAMBLE = re.compile(
    r"^\s*(好的|当然|没问题|以下是|下面是|这是|译文[:：]|翻译[:：]|中文翻译[:：]|sure\b|here\s+is|here's|certainly)",
    re.IGNORECASE,
)
REFUSAL = re.compile(
    r"(抱歉|对不起|我无法|我不能|作为(一个)?(AI|人工智能)|I'm sorry|I cannot|I can't|as an AI)", re.IGNORECASE
)
SECTION = re.compile(r"^[ \t]*\**([123])[)）]\**[ \t]*(.*)$", re.MULTILINE)
SECTION_CHARS = (20, 4000)
EXCERPT_CHARS = 200  # of a rejected answer: logged with -v and quoted back to the model
ECHO_GRAM, ECHO_SHARE, ECHO_WINDOW = 12, 0.5, 2000  # an answer made mostly of the prompt's 12-grams
# characters of a streamed answer before it is judged for echoing the prompt, and for its language
STREAM_ECHO_AFTER, STREAM_LANGUAGE_AFTER = 100, 200
RUNAWAY = frozenset({"loop", "too_long", "truncated", "think"})  # answers that did not know when to stop


class InvalidAnswer(ValueError):
    """The answer broke a rule; the message is fed back to the model in Chinese and English.
    ``reason`` names the kind of rule (for the model verdict and the run report)."""

    def __init__(self, message: str, reason: str = "format", items: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.reason = reason
        self.items = list(items)  # what exactly was wrong, where that is a list (numbers, terms)


@dataclass(frozen=True)
class Bounds:
    """The longest answer a task can need, derived from its input. Longer answers are invalid
    (never written), and a streamed answer is stopped as soon as it passes the bound."""

    max_chars: int

    @classmethod
    def for_task(cls, kind: str, paper: Paper, prompt_chars: int) -> Bounds:
        if kind == "translation":  # Chinese runs at a third to a half of the English it translates
            return cls(2 * len(paper.summary) + 500)
        if kind == "explainer":  # three sections of at most SECTION_CHARS each, less for a short source
            return cls(min(3 * SECTION_CHARS[1], 2000 + 2 * prompt_chars))
        return cls(3000)  # the page's small JSON object


def normalise(answer: str) -> str:
    text = THINK.sub("", answer.replace("\r\n", "\n"))
    fenced = FENCE.match(text)
    return (fenced.group(1) if fenced else text).strip()


def chinese_ratio(text: str) -> float:
    cjk = len(CJK.findall(text))
    return cjk / max(cjk + len(LATIN.findall(text)) / 4, 1)


def _grams(text: str) -> set[str]:
    flat = " ".join(text.split())
    return {flat[i : i + ECHO_GRAM] for i in range(len(flat) - ECHO_GRAM + 1)}


@dataclass(frozen=True)
class Expectation:
    """What every answer to one job must satisfy, prepared once per job."""

    bounds: Bounds
    chinese: bool  # the answer must be mostly Chinese (not the page's JSON)
    prompt_grams: frozenset[str]

    @classmethod
    def of(cls, job: Job) -> Expectation:
        prompt = "\n".join(m["content"] for m in job.messages)
        bounds = Bounds.for_task(job.kind, job.paper, len(job.messages[-1]["content"]))
        return cls(bounds, job.kind != "page", frozenset(_grams(prompt)))

    def echoes(self, text: str) -> bool:
        mine = _grams(text[:ECHO_WINDOW])
        return len(mine) >= ECHO_GRAM and len(mine & self.prompt_grams) >= ECHO_SHARE * len(mine)


def content_problem(text: str, expect: Expectation, *, partial: bool = False) -> InvalidAnswer | None:
    """The first content or size rule ``text`` breaks; ``partial`` for a stream still arriving
    (judged only once enough of it is there)."""
    if OPEN_THINK.match(text):  # normalise() removed a closed block: this one has not ended
        if partial and len(text) <= 2 * expect.bounds.max_chars:
            return None
        return InvalidAnswer("推理过程 <think> 没有结束 (the <think> block never ends)", "think")
    if not text:
        return None if partial else InvalidAnswer("回答为空 (the answer was empty)", "empty")
    if "<think>" in text.lower() or "</think>" in text.lower():
        return InvalidAnswer("回答包含推理过程 <think> (the answer contains reasoning)", "think")
    if REFUSAL.search(text[:80]):
        return InvalidAnswer("回答是拒绝或道歉 (the answer is a refusal)", "refusal")
    if (not partial or len(text) >= STREAM_ECHO_AFTER) and expect.echoes(text):
        return InvalidAnswer("回答在复述提示词或原文，而不是完成任务 (the answer echoes the prompt)", "echo")
    if (unit := find_loop(text)) is not None:
        return InvalidAnswer(f"回答陷入重复，“{unit}”反复出现 (the answer repeats itself)", "loop")
    judged = not partial or len(text) >= STREAM_LANGUAGE_AFTER
    if judged and expect.chinese and chinese_ratio(text) < (0.3 if partial else 0.5):
        return InvalidAnswer("回答不是以中文为主 (the answer must be in Simplified Chinese)", "language")
    if len(text) > expect.bounds.max_chars:
        return InvalidAnswer(
            f"回答长度 {len(text)} 字，远超任务所需的 {expect.bounds.max_chars} 字 (the answer is far too long)",
            "too_long",
        )
    return None


def watch_answer(content: str, expect: Expectation) -> InvalidAnswer | None:
    """For the client's stream: a reason to stop reading this answer now, or None."""
    return content_problem(THINK.sub("", content.replace("\r\n", "\n")).lstrip(), expect, partial=True)


def judge(completion: Completion, job: Job, expect: Expectation) -> str:
    """The validated text of ``completion``: content checks, then size, then the task's format."""
    if isinstance(completion.stopped, InvalidAnswer):
        raise completion.stopped
    problem = content_problem(normalise(completion.content), expect)
    if problem is not None:
        raise problem
    if completion.finish_reason == "length":
        raise InvalidAnswer("回答在长度上限处被截断，请更简洁 (the answer was cut off; be more concise)", "truncated")
    return job.check(completion.content)


def _common_checks(text: str) -> None:
    if not text:
        raise InvalidAnswer("回答为空 (the answer was empty)", "empty")
    if "<think>" in text.lower() or "</think>" in text.lower():
        raise InvalidAnswer("回答包含推理过程 <think> (the answer contains reasoning)", "think")
    if REFUSAL.search(text[:80]):
        raise InvalidAnswer("回答是拒绝或道歉 (the answer is a refusal)", "refusal")
    if chinese_ratio(text) < 0.5:
        raise InvalidAnswer("回答不是以中文为主 (the answer must be in Simplified Chinese)", "language")
    if "```" in text:
        raise InvalidAnswer("回答包含代码块 (no code fences)")
    if PREAMBLE.match(text):
        raise InvalidAnswer("回答以开场白开头，只需输出正文 (no preamble, only the text)")


def check_translation(answer: str, paper: Paper) -> str:
    text = normalise(answer)
    _common_checks(text)
    if (paper.title and text.lower().startswith(paper.title.lower()[:40])) or text.startswith(("标题", "# ")):
        raise InvalidAnswer("不要重复论文标题 (do not repeat the title)")
    return text


def check_explainer(answer: str) -> str:
    """Three sections ``1)``, ``2)``, ``3)`` in order, each non-empty and of sane length.

    Section marker lines are normalised to the reference form ``N)`` + two spaces (a Markdown line break).
    """
    text = normalise(answer)
    _common_checks(text)
    markers = list(SECTION.finditer(text))
    numbers = [m.group(1) for m in markers]
    if numbers != ["1", "2", "3"]:
        found = "、".join(f"{n})" for n in numbers) or "无"
        raise InvalidAnswer(f"必须依次包含 1)、2)、3) 三部分，实际为：{found} (need sections 1), 2), 3) in order)")
    if text[: markers[0].start()].strip():
        raise InvalidAnswer("1) 之前不能有任何内容 (nothing before section 1)")
    lines = []
    for index, marker in enumerate(markers):
        end = markers[index + 1].start() if index + 1 < len(markers) else len(text)
        body = (marker.group(2) + "\n" + text[marker.end() : end]).strip("\n")
        size = len(body.strip())
        if not SECTION_CHARS[0] <= size <= SECTION_CHARS[1]:
            raise InvalidAnswer(
                f"第 {marker.group(1)}) 部分长度为 {size} 字，应在 {SECTION_CHARS[0]}–{SECTION_CHARS[1]} 之间"
            )
        lines.append(f"{marker.group(1)})  \n{body.strip(chr(10))}")
    return "\n\n".join(lines)


def check_page(answer: str, paper: Paper, taxonomy: Sequence[str]) -> PageInfo:
    """The page's JSON: a translated title, a class of the taxonomy, a Chinese reason, 2-4 short tags."""
    text = normalise(answer)
    start, end = text.find("{"), text.rfind("}")
    try:
        data = json.loads(text[start : end + 1]) if start >= 0 else None
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        raise InvalidAnswer("回答必须是一个 JSON 对象 (answer with one JSON object)")
    title, category, reason = (str(data.get(k) or "").strip() for k in ("title", "class", "reason"))
    tags = data.get("tags")
    if not title or chinese_ratio(title) < 0.3 or title.lower() == paper.title.lower():
        raise InvalidAnswer("标题没有译成中文 (translate the title into Chinese)")
    if category not in taxonomy:
        raise InvalidAnswer(
            f"类别必须是以下之一：{'、'.join(taxonomy)}，而不是“{category}” (class must be in the list)"
        )
    if not reason or chinese_ratio(reason) < 0.5 or REFUSAL.search(reason):
        raise InvalidAnswer("理由必须是一段中文 (the reason must be Chinese)")
    if not isinstance(tags, list) or not 2 <= len(tags) <= 4:
        raise InvalidAnswer("标签必须是 2 到 4 个 (give 2 to 4 tags)")
    tags = [str(tag).strip().strip("#") for tag in tags]
    if any(not tag or len(tag) > 12 for tag in tags):
        raise InvalidAnswer("每个标签都要简短且非空，不超过 12 个字 (tags must be short)")
    return PageInfo(title, category, reason, tuple(dict.fromkeys(tags)))


def page_to_json(info: PageInfo) -> str:
    return json.dumps(
        {"title": info.title, "class": info.category, "reason": info.reason, "tags": list(info.tags)},
        ensure_ascii=False,
    )


def page_from_json(text: str) -> PageInfo:
    data = json.loads(text)
    return PageInfo(data["title"], data["class"], data["reason"], tuple(data["tags"]))


# -- prompts --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prompt:
    name: str
    template: jinja2.Template
    digest: str

    def messages(self, **values: object) -> list[dict[str, str]]:
        context = self.template.new_context(values)
        return [
            {"role": role, "content": "".join(self.template.blocks[role](context)).strip()}
            for role in ("system", "user")
        ]


def load_prompt(env: jinja2.Environment, name: str) -> Prompt:
    source, _, _ = env.loader.get_source(env, name)  # type: ignore[union-attr]
    return Prompt(name, env.get_template(name), hashlib.sha256(source.encode()).hexdigest()[:16])


# -- running calls ------------------------------------------------------------------------------------


@dataclass
class Usage:
    """Counters shared by the worker threads; also enforces the per-run budget. Every public field
    lands in the run report."""

    max_calls: int = 0
    max_tokens: int = 0
    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    failures: int = 0
    cache_hits: int = 0
    skipped_by_budget: int = 0
    passed: int = 0  # answers that passed validation
    rejected: dict[str, int] = field(default_factory=dict)  # answers rejected, by reason
    early_stops: int = 0  # streamed answers stopped as soon as they were clearly invalid
    tokens_saved: int = 0  # at most this many output tokens not generated thanks to early stops
    estimated_usage: int = 0  # calls whose server reported no token counts (we estimated them)
    ungrounded: dict[str, list[str]] = field(default_factory=dict)  # explainers kept with unsupported items
    glossary_misses: dict[str, list[str]] = field(default_factory=dict)  # translations kept despite the glossary
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def reserve(self) -> bool:
        with self._lock:
            over = (self.max_calls and self.calls >= self.max_calls) or (
                self.max_tokens and self.tokens_in + self.tokens_out >= self.max_tokens
            )
            if over:
                self.skipped_by_budget += 1
                return False
            self.calls += 1
            return True

    def add(self, tokens_in: int, tokens_out: int) -> None:
        with self._lock:
            self.tokens_in += tokens_in
            self.tokens_out += tokens_out

    def record(self, completion: Completion, max_tokens: int) -> None:
        """Tokens of one call, and what an early stop saved (at most ``max_tokens`` minus what was read)."""
        self.add(completion.prompt_tokens, completion.completion_tokens)
        with self._lock:
            self.estimated_usage += completion.usage_estimated
            if completion.stopped is not None:
                self.early_stops += 1
                self.tokens_saved += max(0, max_tokens - completion.completion_tokens)

    def judged(self, reason: str | None) -> None:
        with self._lock:
            if reason is None:
                self.passed += 1
            else:
                self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def kept_despite(self, job: Job, problem: InvalidAnswer) -> None:
        ledger = self.ungrounded if problem.reason == "ungrounded" else self.glossary_misses
        with self._lock:
            ledger[job.paper.versioned_id] = problem.items

    def failed(self) -> None:
        with self._lock:
            self.failures += 1


class BudgetExhausted(Exception):
    """The run's call/token budget is spent; the paper stays pending for the next run."""


@dataclass(frozen=True)
class Job:
    kind: TextKind
    paper: Paper
    key: str
    model: str
    messages: list[dict[str, str]]
    check: Callable[[str], str]
    source: Source  # what the model read
    terms: tuple[Term, ...] = ()  # glossary terms occurring in the paper (a translation must use them)


def retry_settings(runaways: int, temperature: float) -> tuple[float, dict[str, float]]:
    """Sampling for the next call: after ``runaways`` answers that did not know when to stop
    (loops, cut off, far too long), a lower temperature and growing repetition penalties."""
    if not runaways:
        return temperature, {}
    return round(temperature / (runaways + 1), 3), {
        "frequency_penalty": round(min(2.0, 0.3 * runaways), 2),
        "presence_penalty": round(min(2.0, 0.2 * runaways), 2),
        "repeat_penalty": round(1.05 + 0.1 * runaways, 2),  # llama.cpp and Ollama only
    }


def excerpt(answer: str, limit: int = EXCERPT_CHARS) -> str:
    text = answer.strip()
    return text if len(text) <= limit else text[:limit] + "……"


def corrective(job: Job, answer: str, problem: InvalidAnswer, retry: int) -> list[dict[str, str]]:
    """The original request, a short excerpt of the rejected answer, and what was wrong with it."""
    request = f"上面的回答不符合要求：{problem}。请严格按要求重新输出完整的回答，不要解释（第 {retry} 次重试）。"
    return [
        *job.messages,
        {"role": "assistant", "content": excerpt(answer) or "（空）"},
        {"role": "user", "content": request},
    ]


def soft_problem(text: str, job: Job) -> InvalidAnswer | None:
    """Problems worth one more try but not worth losing a valid answer over: numbers or names in an
    explainer that the source does not contain; glossary terms a translation rendered otherwise."""
    if job.kind == "explainer":
        items = unsupported(text, SourceText("\n".join(m["content"] for m in job.messages)))
        if items:
            shown = "、".join(items[:12])
            message = f"以下数字或名称在给出的论文内容中找不到：{shown}。只写原文中出现的数字与名称"
            return InvalidAnswer(message + " (numbers or names not in the paper)", "ungrounded", items)
    if job.kind == "translation" and (missing := missing_terms(text, job.terms)):
        wanted = "、".join(f"{t.english} → {t.preferred}" for t in missing)
        message = f"请按术语表翻译这些术语：{wanted} (use the glossary)"
        return InvalidAnswer(message, "glossary", [t.english for t in missing])
    return None


def run_job(
    job: Job,
    chat: ChatClient,
    usage: Usage,
    temperature: float,
    max_tokens: int,
    attempts: int,
    *,
    verdict: Verdict | None = None,
) -> str:
    """Call until the answer validates; each invalid answer is sent back, in short, with what was
    wrong. An answer valid but for a soft problem is retried once, then the better one is kept.
    Raises ``verdict.ModelUnfit`` when the run's verdict says the model cannot do the job."""
    expect = Expectation.of(job)
    watch = partial(watch_answer, expect=expect)
    messages = list(job.messages)
    problem: InvalidAnswer | None = None
    kept: tuple[str, InvalidAnswer] | None = None  # valid but for a soft problem, kept unless bettered
    runaways = 0
    for attempt in range(attempts):
        if verdict is not None and kept is None:
            verdict.check(job.model)
        if not usage.reserve():
            if kept is not None:
                break
            raise BudgetExhausted
        runaways += problem is not None and problem.reason in RUNAWAY
        call_temperature, options = retry_settings(runaways, temperature)
        try:
            completion = chat.complete(messages, job.model, call_temperature, max_tokens, options=options, watch=watch)
        except LLMError:
            if kept is not None:
                break  # the retry for a soft problem failed in transport: keep the valid answer
            raise
        usage.record(completion, max_tokens)
        try:
            text = judge(completion, job, expect)
        except InvalidAnswer as exc:
            usage.judged(exc.reason)
            if verdict is not None:
                verdict.record(job.model, exc.reason)
            log.info(
                "%s %s: answer rejected (%s): %s; it began: %r",
                job.paper.versioned_id,
                job.kind,
                exc.reason,
                exc,
                chat.redact(excerpt(completion.content)),
            )
            if kept is not None:
                break  # the one retry for a soft problem came back invalid: keep the earlier answer
            problem = exc
            messages = corrective(job, completion.content, exc, attempt + 1)
            continue
        usage.judged(None)
        if verdict is not None:
            verdict.record(job.model, None)
        soft = soft_problem(text, job)
        if soft is None:
            return text
        log.info("%s %s: %s", job.paper.versioned_id, job.kind, soft)
        if kept is None or len(soft.items) < len(kept[1].items):
            kept = (text, soft)
        if problem is not None and problem.reason == soft.reason:
            break  # retried once for it already
        problem = soft
        messages = corrective(job, completion.content, soft, attempt + 1)
    if kept is not None:
        usage.kept_despite(job, kept[1])
        return kept[0]
    raise LLMError(f"no valid {job.kind} after {attempts} attempts: {problem}")
