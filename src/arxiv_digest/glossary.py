"""A terminology glossary (English term -> Chinese term) for consistent translations.

Readers of a daily digest see the same terms every day; "vocoder" should be 声码器 on Monday and
on Friday. The glossary is a YAML mapping or a two-column TSV file (``llm.glossary``). Only the
terms that occur in a paper go into its prompts (to keep prompts small); a translation that
renders one of them differently is retried once. Its hash is part of the texts' cache keys.
A Chinese side may list accepted variants separated by ``|``; the first one is the one asked for.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import yaml

from .errors import ConfigError
from .templating import packaged_dir


@dataclass(frozen=True)
class Term:
    english: str
    chinese: tuple[str, ...]  # accepted renderings; the first is the preferred one

    @property
    def preferred(self) -> str:
        return self.chinese[0]

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        words = [re.escape(w) for w in re.split(r"[\s-]+", self.english.strip())]
        return re.compile(r"(?<![A-Za-z])" + r"[\s-]+".join(words) + r"(?:s|es)?(?![A-Za-z])", re.IGNORECASE)

    def occurs_in(self, text: str) -> bool:
        return self.pattern.search(text) is not None

    def rendered_in(self, text: str) -> bool:
        return any(variant in text for variant in self.chinese)


@dataclass(frozen=True)
class Glossary:
    terms: tuple[Term, ...]
    digest: str  # part of the cache key: a changed glossary regenerates the texts

    def occurring(self, *texts: str) -> tuple[Term, ...]:
        joined = "\n".join(texts)
        return tuple(term for term in self.terms if term.occurs_in(joined))


def missing_terms(translation: str, terms: Iterable[Term]) -> list[Term]:
    """Glossary terms of the paper that the translation renders some other way."""
    return [term for term in terms if not term.rendered_in(translation)]


def _pairs(path: Path, text: str) -> list[tuple[str, str]]:
    if path.suffix.lower() in (".yaml", ".yml"):
        data = yaml.safe_load(text) or {}
        if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
            raise ConfigError(["expected a mapping of English term: Chinese term"], str(path))
        return list(data.items())
    pairs = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cells = [c.strip() for c in line.split("\t")]
        if len(cells) != 2 or not all(cells):
            raise ConfigError([f"line {number}: expected 'English term<TAB>Chinese term'"], str(path))
        pairs.append((cells[0], cells[1]))
    return pairs


def load_glossary(path: Path) -> Glossary:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"cannot read the glossary: {exc}"], "llm.glossary") from None
    try:
        pairs = _pairs(path, text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"not valid YAML: {exc}"], str(path)) from None
    terms = tuple(
        Term(english.strip(), tuple(v.strip() for v in chinese.split("|") if v.strip())) for english, chinese in pairs
    )
    canonical = "\n".join(f"{t.english}\t{'|'.join(t.chinese)}" for t in terms)
    return Glossary(terms, hashlib.sha256(canonical.encode()).hexdigest()[:16])


def locate(path: Path, templates_dir: Path) -> Path:
    """``path`` if it exists, else a file of that name in the user's templates or the packaged ones."""
    if path.is_file():
        return path
    for folder in (templates_dir, packaged_dir()):
        if (folder / path.name).is_file():
            return folder / path.name
    raise ConfigError(
        [f"file not found: {path} (nor {path.name} in {templates_dir} or the packaged templates)"], "llm.glossary"
    )
