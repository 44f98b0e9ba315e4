"""The LLM stage's rules: prompts, answer validation, and one job run until its answer is valid.

Answers are normalised (a leading ``<think>`` block and a wrapping code fence are removed), then
validated; an invalid answer is retried with a message saying what was wrong. Only valid texts
are ever stored, so a post never shows an error or a half answer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import jinja2

from .fulltext import Source
from .llm import ChatClient, LLMError
from .models import PageInfo, Paper, TextKind

log = logging.getLogger(__name__)

THINK = re.compile(r"^\s*<think>.*?</think>\s*", re.DOTALL | re.IGNORECASE)
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


class InvalidAnswer(ValueError):
    """The answer broke a rule; the message is fed back to the model in Chinese and English."""


def normalise(answer: str) -> str:
    text = THINK.sub("", answer.replace("\r\n", "\n"))
    fenced = FENCE.match(text)
    return (fenced.group(1) if fenced else text).strip()


def chinese_ratio(text: str) -> float:
    cjk = len(CJK.findall(text))
    return cjk / max(cjk + len(LATIN.findall(text)) / 4, 1)


def _common_checks(text: str) -> None:
    if not text:
        raise InvalidAnswer("回答为空 (the answer was empty)")
    if "<think>" in text.lower() or "</think>" in text.lower():
        raise InvalidAnswer("回答包含推理过程 <think> (the answer contains reasoning)")
    if "```" in text:
        raise InvalidAnswer("回答包含代码块 (no code fences)")
    if REFUSAL.search(text[:80]):
        raise InvalidAnswer("回答是拒绝或道歉 (the answer is a refusal)")
    if PREAMBLE.match(text):
        raise InvalidAnswer("回答以开场白开头，只需输出正文 (no preamble, only the text)")
    if chinese_ratio(text) < 0.5:
        raise InvalidAnswer("回答不是以中文为主 (the answer must be in Simplified Chinese)")


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
    """Counters shared by the worker threads; also enforces the per-run budget."""

    max_calls: int = 0
    max_tokens: int = 0
    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    failures: int = 0
    cache_hits: int = 0
    skipped_by_budget: int = 0
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


def run_job(job: Job, chat: ChatClient, usage: Usage, temperature: float, max_tokens: int, attempts: int) -> str:
    """Call until the answer validates; each invalid answer is sent back with what was wrong."""
    messages = list(job.messages)
    problem = ""
    for _ in range(attempts):
        if not usage.reserve():
            raise BudgetExhausted
        completion = chat.complete(messages, job.model, temperature, max_tokens)
        usage.add(completion.prompt_tokens, completion.completion_tokens)
        try:
            if completion.finish_reason == "length":
                raise InvalidAnswer("回答被截断，请更简洁 (the answer was cut off; be more concise)")
            return job.check(completion.content)
        except InvalidAnswer as exc:
            problem = str(exc)
            log.info("%s %s: invalid answer: %s", job.paper.versioned_id, job.kind, problem)
            messages = [
                *job.messages,
                {"role": "assistant", "content": completion.content[:4000]},
                {"role": "user", "content": f"上面的回答不符合要求：{problem}。请严格按要求重新输出。"},
            ]
    raise LLMError(f"no valid {job.kind} after {attempts} attempts: {problem}")
