"""Responders for the loopback LLM server: valid answers by task, with scripted bad ones first."""

from __future__ import annotations

import re
import threading
from collections import defaultdict
from collections.abc import Callable

from .support.llm_server import last_user_text

TITLE = re.compile(r"论文标题(?:（仅供理解上下文，不要输出）)?：(.+)")

GOOD_EXPLAINER = (
    "1)  \n- **研究背景**：该领域的既有方法依赖大量标注数据，计算开销高。  \n- **既有方法的问题**：泛化能力不足。\n\n"
    "2)  \n- **核心方法**：提出一种新的轻量化框架来解决上述问题。  \n"
    "- **解决思路**：  \n  - **要点**：用自监督预训练降低标注需求。\n\n"
    "3)  \n- **任务与效果**：在多个公开基准上评估。  \n- **性能表现**：性能与更大的模型相当。"
)


GOOD_PAGE = (
    '{"title": "速率感知的学习型语音压缩", "class": "其他", '
    '"reason": "这篇论文研究语音压缩，与其他类别无关，因此归入其他。", "tags": ["语音处理", "神经编解码"]}'
)


def task(request: dict) -> str:
    messages = request["messages"]
    if len(messages) > 1 and '"class"' in messages[1]["content"]:
        return "page"
    return "explainer" if "解读" in messages[0]["content"] else "translation"


def title_of(request: dict) -> str:
    """The paper's title from the task's prompt (also on a retry, whose last message is a correction)."""
    texts = [last_user_text(request), *(str(m.get("content") or "") for m in request["messages"])]
    match = next((m for m in map(TITLE.search, texts) if m), None)
    return match.group(1).strip() if match else ""


def good_answer(request: dict) -> str:
    if task(request) == "explainer":
        return GOOD_EXPLAINER
    if task(request) == "page":
        return GOOD_PAGE
    return f"本文研究了{len(title_of(request))}个字符长的标题所描述的问题，并提出了新的方法，实验表明效果显著。"


class Script:
    """Answers from ``bad[task]`` first (in order), then good ones; thread-safe; counts calls."""

    def __init__(self, good: Callable[[dict], str] = good_answer, **bad: list[str]) -> None:
        self.good = good
        self.bad = {kind: list(answers) for kind, answers in bad.items()}
        self.calls: dict[str, int] = defaultdict(int)
        self.lock = threading.Lock()

    def __call__(self, request: dict) -> str:
        kind = task(request)
        with self.lock:
            self.calls[kind] += 1
            queue = self.bad.get(kind)
            if queue:
                return queue.pop(0)
        return self.good(request)
