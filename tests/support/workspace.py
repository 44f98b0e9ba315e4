"""A user's folder (config.yaml, posts/, state/) wired to the loopback fakes, and the real CLI run in it.

Why one module: the tests and the benches both need "a config pointing at the fake servers, then
``arxiv-digest ...`` in that folder". ``Workspace.cli`` runs the CLI in this process through click's
``CliRunner`` (a run costs milliseconds, not an interpreter start-up), with the same arguments,
environment and working folder a user's shell would give it. ``Workspace.spawn`` and
``Workspace.run`` start a real process, for what only a process can show: ``kill -9``, the run lock
held by another process, and wall time including start-up (the benches).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any, Self

import yaml
from click.testing import CliRunner

from arxiv_digest.cli import NOW_ENV, main

from .arxiv_server import ArxivServer
from .llm_server import LLMServer

NOW = "2026-11-21T00:00:00Z"  # every date the tests and benches use has a closed window by then
KEY_SUFFIX = "_API_KEY"  # the user's real keys never reach a test run


@dataclass
class Workspace:
    """A folder holding config.yaml; relative paths in it put posts/ and state/ beside it."""

    root: Path
    arxiv: ArxivServer | None = None
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    def configure(self, **sections: dict[str, Any]) -> Self:
        """Merge ``sections`` into the settings and rewrite config.yaml."""
        for name, values in sections.items():
            self.settings.setdefault(name, {}).update(values)
        self.root.mkdir(parents=True, exist_ok=True)
        self.config.write_text(yaml.safe_dump(self.settings, allow_unicode=True), encoding="utf-8")
        return self

    def use_arxiv(self, server: ArxivServer, **arxiv: Any) -> Self:
        """Point the API and full-text downloads at ``server``, without pacing or backoff."""
        self.arxiv = server
        return self.configure(
            arxiv={"api_url": server.url, "request_interval": 0, "backoff": 0, **arxiv},
            fulltext={"html_url": f"{server.base}/html", "pdf_url": f"{server.base}/pdf"},
        )

    def use_llm(self, server: LLMServer, key: str, *, key_env: str = "DEEPSEEK_API_KEY", **llm: Any) -> Self:
        """Point the LLM at ``server``, without backoff, with ``key`` in the variable ``key_env``."""
        self.env[key_env] = key
        return self.configure(llm={"base_url": server.base_url, "api_key_env": key_env, "backoff": 0, **llm})

    def fresh(self, root: Path) -> Self:
        """Another folder with the same servers, settings and environment (an empty store)."""
        settings = {name: dict(values) for name, values in self.settings.items()}
        return replace(self, root=root, settings=settings, env=dict(self.env)).configure()

    # -- running the product

    def cli(self, *args: str, now: str | None = NOW) -> subprocess.CompletedProcess[str]:
        """``arxiv-digest -c config.yaml ARGS`` in this process, run from the folder, clock at ``now``."""
        env: dict[str, str | None] = {name: None for name in os.environ if name.endswith(KEY_SUFFIX)}
        env.update(self.env)
        env[NOW_ENV] = now
        command = ["-c", str(self.config), *args]
        with contextlib.chdir(self.root):
            result = CliRunner().invoke(main, command, env=env, catch_exceptions=False)
        return subprocess.CompletedProcess(command, result.exit_code, result.stdout, result.stderr)

    def spawn(self, *args: str, now: str | None = NOW) -> subprocess.Popen[str]:
        """The same command as a separate ``python -m arxiv_digest`` process (pipes for its output)."""
        return subprocess.Popen(
            self._command(args),
            cwd=self.root,
            env=self._process_env(now),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, *args: str, now: str | None = NOW, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """The same command as a separate process, waited for."""
        return subprocess.run(
            self._command(args),
            cwd=self.root,
            env=self._process_env(now),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def _command(self, args: tuple[str, ...]) -> list[str]:
        return [sys.executable, "-m", "arxiv_digest", "-c", str(self.config), *args]

    def _process_env(self, now: str | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.endswith(KEY_SUFFIX)} | self.env
        if now:
            env[NOW_ENV] = now
        return env

    # -- what it wrote

    def post(self, day: str | date) -> Path:
        return self.root / "posts" / f"{day}-arxiv.md"

    def posts(self) -> list[str]:
        return sorted(p.name for p in (self.root / "posts").glob("[0-9]*-arxiv.md"))

    def post_bytes(self) -> dict[str, bytes]:
        """Every daily post by file name."""
        return {name: (self.root / "posts" / name).read_bytes() for name in self.posts()}
