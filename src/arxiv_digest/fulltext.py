"""Full text for the explainer: arXiv HTML (LaTeXML) first, then the PDF's text, then the abstract.

Downloads share the API's ``PoliteHttp`` (one at a time, spaced, timeouts, User-Agent). Only
definite outcomes are kept in the store; a transient failure falls back to the abstract for this
run and the download is tried again next time.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import httpx

from .errors import ArxivError
from .fulltext_extract import latexml_text, pdf_text, trim_for_llm
from .models import Paper
from .polite import PoliteHttp

log = logging.getLogger(__name__)

Source = Literal["html", "pdf", "abstract"]  # what a model read about a paper

SOURCE_LABELS: dict[Source, str] = {
    "html": "arXiv HTML 全文（已去掉参考文献与附录）",
    "pdf": "PDF 提取的全文（已去掉参考文献）",
    "abstract": "仅有摘要（未能获取全文）",
}


@dataclass(frozen=True)
class FullText:
    source: Source
    text: str
    definite: bool = True  # False: fell back after a transient failure; don't cache

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    @property
    def label(self) -> str:
        return SOURCE_LABELS[self.source]


def abstract_only(paper: Paper, definite: bool = True) -> FullText:
    return FullText("abstract", f"{paper.title}\n\n{paper.summary}", definite)


def _body_or_none(response: httpx.Response) -> bytes | None:
    if response.status_code == 200:
        return response.content
    if response.status_code in (403, 404, 410):
        return None
    raise ArxivError(f"unexpected HTTP {response.status_code} from {response.request.url}")


def download(paper: Paper, http: PoliteHttp, html_url: str, pdf_url: str, max_chars: int) -> FullText:
    """The best text available for ``paper``, trimmed to ``max_chars``."""
    transient = False
    attempts: tuple[tuple[Source, str, Callable[[bytes], str | None]], ...] = (
        ("html", html_url, latexml_text),
        ("pdf", pdf_url, pdf_text),
    )
    for source, base, extract in attempts:
        url = f"{base}/{paper.versioned_id}"
        try:
            body = http.get(url, _body_or_none)
        except ArxivError as exc:
            log.info("%s: %s unavailable (%s)", paper.versioned_id, source, exc)
            transient = True
            continue
        text = extract(body) if body else None
        if text:
            return FullText(source, trim_for_llm(text, max_chars))
    return abstract_only(paper, definite=not transient)
