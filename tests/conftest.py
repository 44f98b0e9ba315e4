"""Shared fixtures: a workspace with a config pointing at loopback servers, and the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from .llm_script import Script
from .support.arxiv_server import ArxivServer
from .support.llm_server import LLMServer

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Workspace:
    """A user's folder: config.yaml, posts/, state/; runs ``python -m arxiv_digest`` like a user."""

    root: Path
    arxiv: ArxivServer
    settings: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    def configure(self, **sections: dict[str, Any]) -> None:
        for name, values in sections.items():
            self.settings.setdefault(name, {}).update(values)
        self.config.write_text(yaml.safe_dump(self.settings, allow_unicode=True), encoding="utf-8")

    def cli(
        self, *args: str, now: str | None = "2026-11-21T00:00:00Z", timeout: float = 120
    ) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
        env.update(self.env)
        if now:
            env["ARXIV_DIGEST_NOW"] = now
        return subprocess.run(
            [sys.executable, "-m", "arxiv_digest", "-c", str(self.config), *args],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def post(self, day: str) -> Path:
        return self.root / "posts" / f"{day}-arxiv.md"

    def posts(self) -> list[str]:
        folder = self.root / "posts"
        return sorted(p.name for p in folder.glob("[0-9]*-arxiv.md"))


KEY = "sk-test-5ecret-key-0123456789"
DAY = "2026-01-15"


@dataclass
class LLMWorkspace:
    ws: Workspace
    llm: LLMServer
    script: Script

    def generate(self, day: str = DAY, *extra: str):
        return self.ws.cli("generate", "--date", day, *extra)

    def text(self, day: str = DAY) -> str:
        return self.ws.post(day).read_text(encoding="utf-8")


@pytest.fixture
def llm_ws(workspace: Workspace) -> Iterator[LLMWorkspace]:
    script = Script()
    with LLMServer(script, api_key=KEY) as server:
        workspace.env["DEEPSEEK_API_KEY"] = KEY
        workspace.configure(
            llm={
                "provider": "auto",
                "base_url": server.base_url,
                "backoff": 0,
                "retries": 2,
                "timeout": 1,
                "concurrency": 4,
            }
        )
        yield LLMWorkspace(workspace, server, script)


@pytest.fixture
def arxiv() -> Iterator[ArxivServer]:
    with ArxivServer(stall_seconds=3) as server:
        yield server


@pytest.fixture
def workspace(tmp_path: Path, arxiv: ArxivServer) -> Workspace:
    ws = Workspace(tmp_path, arxiv)
    ws.configure(
        arxiv={
            "api_url": arxiv.url,
            "request_interval": 0,
            "backoff": 0,
            "timeout": 1,
            "retries": 3,
            "user_agent": "arxiv-digest-tests/1.0 (mailto:tests@example.org)",
        },
        fulltext={"html_url": f"{arxiv.base}/html", "pdf_url": f"{arxiv.base}/pdf"},
        llm={"provider": "none"},
    )
    return ws
