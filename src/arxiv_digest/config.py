"""Typed configuration: one schema (dataclass fields + checks), every problem reported at once.

Each section is a frozen dataclass whose fields carry a ``check`` in their metadata; ``load_config``
walks the YAML against them, so the schema, the defaults and the validation cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from .errors import ConfigError

if TYPE_CHECKING:
    from .site import SiteOptions

log = logging.getLogger(__name__)

Check = Callable[[Any], Any]


class Invalid(ValueError):
    """A value failed its check; the message reads 'expected ...'."""


def _shown(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return {"nan": ".nan", "inf": ".inf", "-inf": "-.inf"}[repr(value)]  # as YAML spells them
    return f'"{value}"' if isinstance(value, str) else repr(value) if value is not None else "nothing"


def number(minimum: float = 0, *, integer: bool = False, maximum: float | None = None) -> Check:
    """A finite number in bounds (YAML's ``.nan`` and ``.inf`` are floats, but no setting can use them)."""
    kind = "a whole number" if integer else "a number"
    bound = f" >= {minimum:g}" + (f" and <= {maximum:g}" if maximum is not None else "")

    def check(value: Any) -> Any:
        ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
        if (
            isinstance(value, bool)
            or not ok_type
            or not math.isfinite(value)
            or value < minimum
            or (maximum is not None and value > maximum)
        ):
            raise Invalid(f"expected {kind}{bound}, got {_shown(value)}")
        return value

    return check


def seconds(minimum: float = 0, maximum: float = 3600) -> Check:
    """A duration in seconds; the upper bound keeps a typo (``timeout: 1e9``) from hanging a run."""
    return number(minimum, maximum=maximum)


def retry_count(value: Any) -> int:
    return number(0, integer=True, maximum=20)(value)


def text(*, allow_empty: bool = False) -> Check:
    def check(value: Any) -> str:
        if not isinstance(value, str) or (not allow_empty and not value.strip()):
            raise Invalid(f"expected {'a' if allow_empty else 'a non-empty'} string, got {_shown(value)}")
        return value

    return check


def optional(inner: Check) -> Check:
    def check(value: Any) -> Any:
        return None if value is None else inner(value)

    return check


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"expected true or false, got {_shown(value)}")
    return value


def one_of(*choices: str) -> Check:
    def check(value: Any) -> str:
        if value not in choices:
            raise Invalid(f"expected one of {', '.join(choices)}, got {_shown(value)}")
        return value

    return check


def string_list(*, non_empty: bool = False) -> Check:
    def check(value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise Invalid(f"expected a list of non-empty strings, got {_shown(value)}")
        if non_empty and not value:
            raise Invalid("expected at least one entry, got an empty list")
        return tuple(v.strip() for v in value)

    return check


def url(value: Any) -> str:
    if not isinstance(value, str) or not re.match(r"^https?://[^\s/]+", value):
        raise Invalid(f"expected an http:// or https:// URL, got {_shown(value)}")
    return value.rstrip("/")


def clock_time(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 100 * 60:
        hours, minutes = divmod(value, 60)  # YAML 1.1 reads an unquoted 8:50 as 8 * 60 + 50
        raise Invalid(
            f'expected a time "HH:MM" in quotes; YAML read the unquoted {hours}:{minutes:02d} as the number '
            f'{value}: write "{hours:02d}:{minutes:02d}"'
        )
    match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", value) if isinstance(value, str) else None
    if not match:
        raise Invalid(f'expected a time "HH:MM" (24-hour), got {_shown(value)}')
    return f"{int(match[1]):02d}:{match[2]}"


def timezone(value: Any) -> str:
    try:
        if not isinstance(value, str):
            raise ZoneInfoNotFoundError
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise Invalid(f'expected an IANA time zone like "Asia/Shanghai", got {_shown(value)}') from None
    return value


KEY_PREFIXES = ("sk-", "sk_", "hf_", "gsk_", "xai-", "AIza", "Bearer ")


def looks_like_a_key(value: str) -> bool:
    """A provider's key prefix, or a long run of letters and digits no variable name has."""
    token = re.search(r"[A-Za-z0-9]{20,}", value)
    return value.strip().startswith(KEY_PREFIXES) or bool(
        token and re.search(r"\d", token[0]) and re.search(r"[a-z]", token[0])
    )


def env_name(value: Any) -> str:
    """The name of the variable that holds the key; a key pasted here is refused without being shown."""
    if isinstance(value, str) and looks_like_a_key(value):
        raise Invalid(
            "expected the name of an environment variable, got what looks like an API key itself (not shown "
            "here): put the key in a variable, e.g. export DEEPSEEK_API_KEY=..., and name that variable here; "
            "if the key is real, consider rotating it, since it was in a file"
        )
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise Invalid(f"expected the name of an environment variable, got {_shown(value)}")
    return value


PATH = "path"  # marker: resolved against the config file's folder


def setting(default: Any, check: Check, doc: str, *, path: bool = False) -> Any:
    meta = {"check": check, "doc": doc, PATH: path}
    if isinstance(default, list | tuple):
        return field(default_factory=lambda: tuple(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class SiteConfig:
    posts_dir: Path = setting("posts", text(), "where daily posts are written", path=True)
    templates_dir: Path = setting("templates", text(), "your templates; they override the packaged ones", path=True)
    site_dir: Path = setting("_site", text(), "where `arxiv-digest site` writes the HTML site", path=True)
    title: str = setting("arXiv Daily", text(), "site title")
    base_url: str = setting("", text(allow_empty=True), "public URL of the site, for absolute links in feeds")
    per_page: int = setting(20, number(1, integer=True), "posts per index page")
    search: bool = setting(True, boolean, "build the search page and its index (false: no search, a smaller site)")
    kramdown_parse_block_html: bool = setting(
        False, boolean, "true if your Jekyll uses kramdown's parse_block_html (posts then write a span summary)"
    )


@dataclass(frozen=True)
class ServeConfig:
    host: str = setting("127.0.0.1", text(), "preview server address")
    port: int = setting(8000, number(0, integer=True, maximum=65535), "preview server port (0 = any free port)")


@dataclass(frozen=True)
class ArxivConfig:
    api_url: str = setting("https://export.arxiv.org/api/query", url, "arXiv API endpoint")
    categories: tuple[str, ...] = setting(["cs.SD", "eess.AS"], string_list(non_empty=True), "categories")
    request_interval: float = setting(3, seconds(0, 600), "seconds between requests (arXiv asks for >= 3)")
    page_size: int = setting(200, number(1, integer=True, maximum=2000), "results per API request")
    timeout: float = setting(30, seconds(0.1), "seconds before a request is abandoned and retried")
    retries: int = setting(4, retry_count, "retries per request after the first attempt")
    backoff: float = setting(5, seconds(0, 600), "first retry delay in seconds; doubles each retry")
    max_retry_after: float = setting(600, seconds(0, 86400), "longest Retry-After honoured, in seconds")
    user_agent: str = setting(
        "arxiv-digest/0.1 (daily digest bot; set arxiv.user_agent to include your contact)",
        text(),
        "descriptive User-Agent with contact details, as arXiv's terms ask",
    )


@dataclass(frozen=True)
class WindowConfig:
    timezone: str = setting("Asia/Shanghai", timezone, "IANA zone the post date and anchor are in")
    anchor: str = setting("08:50", clock_time, "local time at which each day's window ends")
    refresh_days: int = setting(7, number(0, integer=True, maximum=60), "earlier windows each run re-checks")


@dataclass(frozen=True)
class FilterConfig:
    primary_only: bool = setting(False, boolean, "keep only papers whose primary category is listed")
    include_keywords: tuple[str, ...] = setting([], string_list(), "keep only papers matching one (empty = all)")
    exclude_keywords: tuple[str, ...] = setting([], string_list(), "drop papers matching any")
    max_papers: int = setting(0, number(0, integer=True), "most papers per post (0 = no limit)")


@dataclass(frozen=True)
class LLMConfig:
    provider: str = setting("auto", one_of("auto", "none", "openai"), "auto = openai when the key is set")
    base_url: str = setting("https://api.deepseek.com", url, "everything before /chat/completions")
    model: str = setting("deepseek-chat", text(), "model for translations")
    explainer_model: str | None = setting(None, optional(text()), "model for explainers (default: model)")
    api_key_env: str = setting("DEEPSEEK_API_KEY", env_name, "environment variable holding the API key")
    temperature: float = setting(0.3, number(0, maximum=2), "sampling temperature")
    max_tokens: int = setting(4096, number(1, integer=True), "max tokens per answer")
    timeout: float = setting(180, seconds(0.1), "seconds before a call is abandoned and retried")
    concurrency: int = setting(4, number(1, integer=True, maximum=64), "calls in flight at once")
    retries: int = setting(3, retry_count, "retries per call (transport errors and invalid answers)")
    backoff: float = setting(2, seconds(0, 600), "first retry delay in seconds; doubles each retry")
    max_retry_after: float = setting(120, seconds(0, 86400), "longest Retry-After honoured, in seconds")
    max_calls: int = setting(0, number(0, integer=True), "per-run call budget (0 = unlimited)")
    max_total_tokens: int = setting(0, number(0, integer=True), "per-run token budget (0 = unlimited)")
    price_input: float = setting(0, number(0), "price per million input tokens, for the cost line")
    price_output: float = setting(0, number(0), "price per million output tokens")
    currency: str = setting("USD", text(), "currency of the prices")
    stream: bool = setting(True, boolean, "stream answers so a clearly invalid one is stopped early")
    verdict_after: int = setting(
        6, number(0, integer=True), "stop calling a model whose first this-many answers all fail (0 = never)"
    )
    pending_max_runs: int = setting(
        3, number(0, integer=True), "runs a paper's texts may fail in before it is given up (0 = never)"
    )
    glossary: Path | None = setting(
        None, optional(text()), "English -> Chinese terms (YAML or TSV) for the prompts", path=True
    )


@dataclass(frozen=True)
class FulltextConfig:
    enabled: bool = setting(True, boolean, "read the paper's HTML/PDF for the explainer")
    html_url: str = setting("https://arxiv.org/html", url, "arXiv HTML base")
    pdf_url: str = setting("https://arxiv.org/pdf", url, "arXiv PDF base")
    max_chars: int = setting(60000, number(1000, integer=True), "characters of full text given to the LLM")
    timeout: float = setting(60, seconds(0.1), "seconds per download")


@dataclass(frozen=True)
class PagesConfig:
    enabled: bool = setting(False, boolean, "also write one page per paper (title, class, tags, abstracts)")
    dir: Path | None = setting(None, optional(text()), "where pages go (default: site.posts_dir)", path=True)
    permalink: str = setting("/papers/{id}/", text(), "stable URL of a paper's page; {id} is the arXiv id")
    taxonomy: tuple[str, ...] = setting(
        ["语音识别", "语音合成", "音乐", "音频理解", "其他"],
        string_list(non_empty=True),
        "classes the LLM chooses from",
    )


@dataclass(frozen=True)
class StoreConfig:
    path: Path = setting("state/digest.sqlite3", text(), "SQLite database file", path=True)
    lock_wait: float = setting(
        10, seconds(0, 600), "seconds to wait for another program (a SQLite browser, a backup) holding the store"
    )


@dataclass(frozen=True)
class Config:
    site: SiteConfig = field(default_factory=SiteConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    arxiv: ArxivConfig = field(default_factory=ArxivConfig)
    window: WindowConfig = field(default_factory=WindowConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    fulltext: FulltextConfig = field(default_factory=FulltextConfig)
    pages: PagesConfig = field(default_factory=PagesConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    source: Path | None = None  # the file it came from, if any

    @property
    def llm_enabled(self) -> bool:
        """``auto`` turns the LLM on exactly when its key is present in the environment."""
        if self.llm.provider == "auto":
            return bool(os.environ.get(self.llm.api_key_env))
        return self.llm.provider == "openai"


SECTIONS: dict[str, type] = {
    f.name: f.default_factory  # type: ignore[misc]
    for f in dataclasses.fields(Config)
    if f.name != "source"
}


def _default(spec: dataclasses.Field[Any]) -> Any:
    """A setting's default: its ``default_factory`` called, else its ``default``."""
    factory = spec.default_factory
    return factory() if callable(factory) else spec.default


def _build_section(name: str, cls: type, raw: Any, base: Path, problems: list[str]) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        problems.append(f"{name}: expected a mapping of settings, got {_shown(raw)}")
        raw = {}
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in known:
            log.warning("config: unknown key %s.%s ignored", name, key)
    values: dict[str, Any] = {}
    for key, spec in known.items():
        if key not in raw:
            value = _default(spec)
        else:
            try:
                value = spec.metadata["check"](raw[key])
            except Invalid as exc:
                problems.append(f"{name}.{key}: {exc}")
                continue
        if spec.metadata[PATH] and value is not None:
            value = (base / Path(value).expanduser()).resolve()
        values[key] = value
    return cls(**values) if len(values) == len(known) else None


def load_config(path: Path | None = None) -> Config:
    """Read ``path`` (or ./config.yaml if present, else defaults) and validate all of it."""
    if path is None:
        candidate = Path("config.yaml")
        path = candidate if candidate.exists() else None
    raw: Any = {}
    if path is not None:
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise ConfigError([f"file not found: {path}"], "config") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError([f"cannot read {path}: {exc}"], "config") from None
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
            raise ConfigError([f"not valid YAML{at}: {getattr(exc, 'problem', exc)}"], str(path)) from None
        if not isinstance(raw, dict):
            raise ConfigError([f"expected a mapping of sections, got {_shown(raw)}"], str(path))
    base = path.parent.resolve() if path is not None else Path.cwd()
    problems: list[str] = []
    for key in raw:
        if key not in SECTIONS:
            log.warning("config: unknown section %s ignored", key)
    sections = {name: _build_section(name, cls, raw.get(name), base, problems) for name, cls in SECTIONS.items()}
    pages, site = sections["pages"], sections["site"]
    if pages and site and pages.dir and not pages.dir.is_relative_to(site.posts_dir):
        problems.append(f"pages.dir: expected site.posts_dir or a folder inside it, got {pages.dir}")
    if problems:
        raise ConfigError(problems, str(path) if path else "config")
    return Config(**sections, source=path.resolve() if path else None)


def describe() -> list[tuple[str, Any, str]]:
    """(key path, default, doc) for every setting: used by docs and tests to keep config.yaml complete."""
    rows = []
    for name, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            rows.append((f"{name}.{f.name}", _default(f), f.metadata["doc"]))
    return rows


def site_options(config: Config, *, incremental: bool = True) -> SiteOptions:
    """What ``site`` and ``serve`` build, from the ``site`` section."""
    from .site import SiteOptions  # imported here: the site's renderer is heavy, and config is imported everywhere

    site = config.site
    return SiteOptions(
        posts_dir=site.posts_dir,
        site_dir=site.site_dir,
        templates_dirs=(site.templates_dir / "site",),
        title=site.title,
        base_url=site.base_url,
        posts_per_listing=site.per_page,
        search=site.search,
        incremental=incremental,
        state_dir=config.store.path.parent / "site-build",
    )
