"""The store's text cache: which stored LLM text answers which question, and the full texts they
were made from.

A text is stored under a key that names everything it depends on (paper id and version, a hash
of what the model read, the prompt's hash, the model, the taxonomy for page info), so a changed
prompt or abstract asks again, and regenerating a cached date makes no LLM call. While a fresher
text is pending, the newest valid one of any key is shown: never worse than nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from .fulltext import FullText, Source, abstract_only
from .glossary import Glossary, Term
from .models import Paper, TextKind, Texts
from .store import Store
from .summarize import Prompt, page_from_json


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def translation_key(paper: Paper, prompt: Prompt, model: str) -> str:
    return _sha(
        json.dumps(["translation", paper.versioned_id, _sha(paper.title + "\n" + paper.summary), prompt.digest, model])
    )


def page_key(paper: Paper, prompt: Prompt, model: str, taxonomy: Sequence[str]) -> str:
    return _sha(
        json.dumps(
            ["page", paper.versioned_id, _sha(paper.title + "\n" + paper.summary), prompt.digest, model, list(taxonomy)]
        )
    )


def explainer_key(paper: Paper, fulltext: FullText, prompt: Prompt, model: str) -> str:
    parts = [
        "explainer",
        paper.versioned_id,
        _sha(paper.summary),
        fulltext.source,
        fulltext.sha256,
        prompt.digest,
        model,
    ]
    return _sha(json.dumps(parts))


@dataclass(frozen=True)
class TextCache:
    """The store's LLM texts and full texts, seen through this run's prompts, models and settings."""

    store: Store
    prompts: Mapping[TextKind, Prompt]
    models: Mapping[TextKind, str]
    taxonomy: tuple[str, ...]
    fulltext_enabled: bool
    pages_enabled: bool
    glossary: Glossary | None = None  # its hash is already part of the prompts' digests
    glossary_prompt: Prompt | None = None  # prompts/glossary.j2: the terms' block in a prompt

    def glossary_terms(self, kind: TextKind, paper: Paper, fulltext: str = "") -> tuple[Term, ...]:
        """The glossary terms a translation (of the abstract) or explainer (of the full text) meets."""
        if self.glossary is None or kind == "page":
            return ()
        read = (paper.summary,) if kind == "translation" else (paper.title, paper.summary, fulltext)
        return self.glossary.occurring(*read)

    def glossary_block(self, terms: Sequence[Term]) -> str:
        assert self.glossary_prompt is not None
        return self.glossary_prompt.template.render(terms=terms).strip()

    def translation_key(self, paper: Paper) -> str:
        return translation_key(paper, self.prompts["translation"], self.models["translation"])

    def explainer_key(self, paper: Paper, source: FullText) -> str:
        return explainer_key(paper, source, self.prompts["explainer"], self.models["explainer"])

    def page_key(self, paper: Paper) -> str:
        return page_key(paper, self.prompts["page"], self.models["page"], self.taxonomy)

    def has(self, key: str) -> bool:
        return self.store.text(key) is not None

    def save(
        self, key: str, kind: TextKind, paper: Paper, text: str, model: str, source: Source, now: datetime
    ) -> None:
        self.store.save_text(key, paper.arxiv_id, paper.version, kind, text, model, source, now)

    def fulltext(self, paper: Paper) -> FullText | None:
        """The full text the explainer reads; None until it has been downloaded."""
        if not self.fulltext_enabled:
            return abstract_only(paper)
        found = self.store.fulltext(paper.versioned_id)
        if found is None:
            return None
        source, text = found
        return FullText(cast(Source, source), text)  # the store holds only what FullText wrote

    def save_fulltext(self, paper: Paper, source: FullText, now: datetime) -> None:
        self.store.save_fulltext(paper.versioned_id, source.source, source.text, now)

    def texts(self, paper: Paper) -> Texts:
        """Current texts, else the newest valid ones of an older prompt/model (never worse than none)."""
        source = self.fulltext(paper)
        translation = self._current_or_newest(self.translation_key(paper), paper, "translation")
        # the explainer's key is unknown until the full text is
        explainer = self._current_or_newest(self.explainer_key(paper, source) if source else None, paper, "explainer")
        unavailable = bool(self.store.given_up([paper.arxiv_id]))  # llm.pending_max_runs
        if not self.pages_enabled:
            return Texts(translation, explainer, unavailable=unavailable)
        page = self._current_or_newest(self.page_key(paper), paper, "page")
        return Texts(translation, explainer, page_from_json(page) if page else None, unavailable=unavailable)

    def complete(self, texts: Texts) -> bool:
        """Every text the run asks for is there (the page info only when pages are on)."""
        return texts.complete and (texts.page is not None or not self.pages_enabled)

    def _current_or_newest(self, key: str | None, paper: Paper, kind: TextKind) -> str | None:
        return (self.store.text(key) if key else None) or self.store.latest_text(paper.arxiv_id, kind)
