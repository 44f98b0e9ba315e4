"""An early verdict on the model: if its first answers of a run all fail validation, stop spending.

A model that cannot do the job (it echoes the prompt, loops until ``max_tokens``, answers in
English) shows it in its first few answers; retrying every paper costs the whole night and teaches
the user nothing more. So the first ``threshold`` answers of each model are watched: if every one
of them was rejected, the model is judged unfit, no further call goes to it this run (what is
valid is kept, the rest stays pending), and the run ends with one line naming the problem. A
single valid answer among the first ``threshold`` settles the verdict the other way for the rest
of the run, so a good model is never stopped by it.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

from .llm import LLMError

# What each rejection reason (summarize.InvalidAnswer.reason) looks like to a user, in the plural.
REASON_PHRASES = {
    "empty": "empty answers",
    "loop": "looping answers",
    "too_long": "answers far longer than the task needs",
    "truncated": "answers cut off at llm.max_tokens",
    "think": "answers whose reasoning never ends",
    "echo": "answers that echo the prompt",
    "language": "answers that are not in Chinese",
    "refusal": "refusals",
    "format": "answers in the wrong format",
}

ADVICE = {
    "truncated": "raise llm.max_tokens or try a larger model",
    "loop": "try a larger model or raise llm.max_tokens",
    "too_long": "try a larger model",
    "format": "try a larger model, or check your prompt templates",
}


class ModelUnfit(LLMError):
    """The model's first answers all failed validation: no more calls to it this run."""

    def __init__(self, model: str, reasons: Counter[str], calls: int) -> None:
        self.model = model
        self.reasons = reasons
        top, count = reasons.most_common(1)[0]
        what = REASON_PHRASES.get(top, f"invalid answers ({top})")
        if count < calls:
            others = ", ".join(f"{REASON_PHRASES.get(r, r)} {n}" for r, n in reasons.most_common()[1:])
            what = f"{what} ({others} besides)"
        advice = ADVICE.get(top, "try a larger model")
        super().__init__(f"the model {model} kept producing {what} ({count}/{calls} calls); {advice}")


@dataclass
class _ModelRecord:
    reasons: list[str] = field(default_factory=list)
    settled: bool = False  # a valid answer came first: never judged this run
    unfit: ModelUnfit | None = None


class Verdict:
    """Thread-safe; ``threshold`` 0 turns the verdict off."""

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self._models: dict[str, _ModelRecord] = {}
        self._lock = threading.Lock()

    def check(self, model: str) -> None:
        """Raise ``ModelUnfit`` if ``model`` was judged unfit; called before every call."""
        with self._lock:
            record = self._models.get(model)
            if record is not None and record.unfit is not None:
                raise record.unfit

    def record(self, model: str, reason: str | None) -> None:
        """One validated answer: ``reason`` None when it passed, else why it was rejected."""
        if self.threshold <= 0:
            return
        with self._lock:
            record = self._models.setdefault(model, _ModelRecord())
            if record.settled or record.unfit is not None:
                return
            if reason is None:
                record.settled = True
                return
            record.reasons.append(reason)
            if len(record.reasons) >= self.threshold:
                record.unfit = ModelUnfit(model, Counter(record.reasons), len(record.reasons))

    def unfit(self) -> list[ModelUnfit]:
        with self._lock:
            return [r.unfit for r in self._models.values() if r.unfit is not None]
