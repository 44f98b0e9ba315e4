"""OpenAI-compatible chat client (DeepSeek, OpenAI, Qwen, Ollama, vLLM, llama.cpp).

``base_url`` is everything before ``/chat/completions``. Transient failures (429, 5xx, timeouts,
unreadable bodies) are retried with exponential backoff, never sooner than the server's
Retry-After; failures that retrying cannot fix (bad key, exhausted quota, rejected request) raise
``LLMFatal`` at once. The API key is sent in a header and never appears in messages.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from .errors import DigestError
from .polite import RetriesExhausted, Retryable, RetryPolicy, retry_after_seconds, transport_problem

log = logging.getLogger(__name__)

CONTEXT_OVERFLOW = re.compile(r"context.length|context window|too many tokens|maximum.*tokens", re.IGNORECASE)
TRANSIENT_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})


class LLMError(DigestError):
    """A call failed; the paper stays pending."""


class LLMFatal(LLMError):
    """Retrying cannot help (bad key, no quota, unsupported request): stop calling for this run."""


class LLMTooLong(LLMError):
    """The prompt exceeds the model's context window: a shorter text may still work."""


@dataclass(frozen=True)
class Completion:
    content: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None
    model: str


def _error_message(response: httpx.Response) -> str:
    """The provider's own error text: OpenAI ``{"error": {...}}`` or DashScope ``{"code","message"}``."""
    try:
        body = response.json()
    except ValueError:
        return " ".join(response.text.split())[:200]
    error = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, dict):
        message = str(error.get("message") or "").strip()
        code = error.get("code") or error.get("type")
        return f"{message} ({code})" if code and str(code) not in message else message
    return str(error)[:200]


def _classify(response: httpx.Response) -> LLMError | Retryable:
    status, message = response.status_code, _error_message(response)
    if status in (401, 403):
        return LLMFatal(f"the LLM endpoint rejected the API key (HTTP {status}): {message}")
    if status == 429 and "insufficient_quota" in response.text:
        return LLMFatal(f"the LLM account has no quota left (HTTP 429): {message}")
    if status in TRANSIENT_STATUS:
        return Retryable(f"HTTP {status}", retry_after_seconds(_retry_after(response)), detail=message)
    if status in (400, 413) and CONTEXT_OVERFLOW.search(message):
        return LLMTooLong(f"the text is too long for the model: {message}")
    if status == 404:
        return LLMFatal(f"no chat endpoint at {response.request.url} (HTTP 404): check llm.base_url and llm.model")
    return LLMFatal(f"the LLM endpoint refused the request (HTTP {status}): {message}")


def _retry_after(response: httpx.Response) -> str | None:
    millis = response.headers.get("retry-after-ms")
    if millis:
        try:
            return str(float(millis) / 1000)
        except ValueError:
            pass
    return response.headers.get("retry-after")


def _completion(response: httpx.Response, requested_model: str) -> Completion:
    try:
        body = response.json()
        choice = body["choices"][0]
        message = choice.get("message") or {}
    except (ValueError, KeyError, IndexError, TypeError):
        raise Retryable("the LLM answered with unreadable JSON") from None
    usage = body.get("usage") or {}
    return Completion(
        content=message.get("content") or "",
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        finish_reason=choice.get("finish_reason"),
        model=str(body.get("model") or requested_model),
    )


class ChatClient:
    """Thread-safe: many workers share one connection pool."""

    def __init__(
        self,
        client: httpx.Client,
        base_url: str,
        api_key: str | None,
        policy: RetryPolicy,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.policy = policy
        self.sleep = sleep
        self._fatal: LLMFatal | None = None
        self._lock = threading.Lock()

    def complete(self, messages: list[dict[str, str]], model: str, temperature: float, max_tokens: int) -> Completion:
        payload: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "temperature": temperature,
            "max_tokens": max_tokens,
            "stream": False,
        }

        def once() -> Completion:
            if self._fatal:
                raise self._fatal
            try:
                response = self.client.post(self.url, json=payload, headers=self.headers)
            except httpx.TransportError as exc:
                raise Retryable(transport_problem(exc, self.client.timeout)) from None
            if response.status_code != 200:
                error = _classify(response)
                if isinstance(error, LLMFatal):
                    with self._lock:
                        self._fatal = error  # every other worker stops calling too
                raise error
            return _completion(response, model)

        try:
            return self.policy.call(once, self.sleep, "LLM")
        except RetriesExhausted as exc:
            raise LLMError(f"{exc} (after {exc.attempts} attempts)") from None
