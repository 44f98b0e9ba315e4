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
    assert 'arxiv.request_interval: expected a number >= 0, got "fast"' in problems
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
