"""Config: every problem reported at once with its key path; relative paths; unknown keys warn."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from arxiv_digest.config import describe, load_config
from arxiv_digest.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_repository_config_documents_every_key_with_its_default() -> None:
    raw = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    for key, default, _doc in describe():
        section, name = key.split(".")
        value = raw[section][name]
        assert (tuple(value) if isinstance(value, list) else value) == default, key
    load_config(REPO / "config.yaml")


def test_every_invalid_value_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
arxiv: {request_interval: fast, page_size: 0, categories: [], api_url: "ftp://x"}
window: {timezone: Mars/Olympus, anchor: "25:00"}
filter: {primary_only: "yes", max_papers: -1}
llm: {provider: gpt, api_key_env: "MY KEY"}
""",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    problems = caught.value.problems
    assert 'arxiv.request_interval: expected a number >= 0 and <= 600, got "fast"' in problems
    assert {p.split(":")[0] for p in problems} == {
        "arxiv.request_interval",
        "arxiv.page_size",
        "arxiv.categories",
        "arxiv.api_url",
        "window.timezone",
        "window.anchor",
        "filter.primary_only",
        "filter.max_papers",
        "llm.provider",
        "llm.api_key_env",
    }
    assert caught.value.exit_code == 2


def test_unknown_keys_warn_and_paths_resolve_against_the_file(tmp_path: Path, caplog) -> None:
    path = write(tmp_path, "site: {posts_dir: out, colour: blue}\nextras: {}\nstore: {path: db.sqlite3}\n")
    with caplog.at_level(logging.WARNING):
        config = load_config(path)
    assert config.site.posts_dir == tmp_path / "out"
    assert config.store.path == tmp_path / "db.sqlite3"
    assert "site.colour" in caplog.text and "extras" in caplog.text


@pytest.mark.parametrize(
    "text, message",
    [
        ("arxiv: [1, 2]", "arxiv: expected a mapping"),
        ("- a\n- b", "expected a mapping of sections"),
        ("arxiv: {page_size: 3\n", "not valid YAML at line"),
    ],
)
def test_malformed_files_are_config_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")


def test_llm_auto_follows_the_key_variable(tmp_path: Path, monkeypatch) -> None:
    config = load_config(write(tmp_path, "llm: {api_key_env: DIGEST_TEST_KEY}\n"))
    monkeypatch.delenv("DIGEST_TEST_KEY", raising=False)
    assert not config.llm_enabled
    monkeypatch.setenv("DIGEST_TEST_KEY", "sk-test")
    assert config.llm_enabled


def test_pages_must_live_where_the_site_reads_posts(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"pages\.dir: expected site\.posts_dir or a folder inside it"):
        load_config(write(tmp_path, "site: {posts_dir: posts}\npages: {dir: elsewhere}\n"))
    assert load_config(write(tmp_path, "pages: {dir: posts/papers}\n")).pages.dir == tmp_path / "posts" / "papers"


@pytest.mark.parametrize(
    "text, problem",
    [
        ("arxiv: {timeout: .nan}", "arxiv.timeout: expected a number >= 0.1 and <= 3600, got .nan"),
        ("arxiv: {request_interval: .inf}", "arxiv.request_interval: expected a number >= 0 and <= 600, got .inf"),
        ("llm: {temperature: .NaN}", "llm.temperature: expected a number >= 0 and <= 2, got .nan"),
        ("llm: {price_input: -.inf}", "llm.price_input: expected a number >= 0, got -.inf"),
        ("llm: {backoff: 1.0e+308}", "llm.backoff: expected a number >= 0 and <= 600, got 1e+308"),
        ("arxiv: {retries: 1000000}", "arxiv.retries: expected a whole number >= 0 and <= 20, got 1000000"),
    ],
)
def test_numbers_must_be_finite_and_sane(tmp_path: Path, text: str, problem: str) -> None:
    """``.nan`` passed every bound and crashed later with ValueError; ``.inf`` with OverflowError."""
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert caught.value.problems == [problem]


@pytest.mark.parametrize("anchor, hint", [("8:50", '"08:50"'), ("10:30", '"10:30"'), ("23:59", '"23:59"')])
def test_an_unquoted_anchor_is_recognised_and_the_quotes_suggested(tmp_path: Path, anchor: str, hint: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, f"window: {{anchor: {anchor}}}\n"))
    hours, minutes = anchor.split(":")
    assert caught.value.problems == [
        f'window.anchor: expected a time "HH:MM" in quotes; YAML read the unquoted {anchor} as the number '
        f"{int(hours) * 60 + int(minutes)}: write {hint}"
    ]
    assert load_config(write(tmp_path, f'window: {{anchor: "{anchor}"}}\n')).window.anchor == hint.strip('"')


@pytest.mark.parametrize(
    "pasted",
    [
        "sk-0123456789abcdef0123456789abcdef",
        "sk-proj-AbCdEf0123456789_AbCdEf0123456789",
        "hf_AbCdEfGhIjKlMnOpQrStUvWxYz01234567",
        "d41d8cd98f00b204e9800998ecf8427e",
        "Bearer abc.def.ghi",
    ],
)
def test_a_key_pasted_into_api_key_env_is_refused_without_being_shown(tmp_path: Path, pasted: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, f'llm: {{api_key_env: "{pasted}"}}\n'))
    message = str(caught.value)
    assert "llm.api_key_env" in message and "looks like an API key" in message
    assert pasted not in message and pasted[-8:] not in message


@pytest.mark.parametrize("name", ["DEEPSEEK_API_KEY", "OPENAI_API_KEY", "my_key", "QWEN_KEY_2025", "A" * 40])
def test_ordinary_variable_names_are_accepted(tmp_path: Path, name: str) -> None:
    assert load_config(write(tmp_path, f"llm: {{api_key_env: {name}}}\n")).llm.api_key_env == name
