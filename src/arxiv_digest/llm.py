"""OpenAI-compatible chat client (DeepSeek, OpenAI, Qwen, Ollama, vLLM, llama.cpp).

``base_url`` is everything before ``/chat/completions``. Answers are streamed (SSE) so a caller's
``watch`` can stop reading one that is clearly invalid (a loop, a runaway length) instead of paying
for it up to ``max_tokens``; a server that refuses streaming or ``stream_options`` (or an optional
sampling parameter) gets the plain form instead, remembered for the rest of the run. Transient
failures (429, 5xx, timeouts, unreadable bodies) are retried with exponential backoff, never sooner
than the server's Retry-After; failures that retrying cannot fix (bad key, exhausted quota, rejected
request) raise ``LLMFatal`` at once. The API key is sent in a header, and every text that comes back
from the server is passed through ``Redactor`` before it reaches a message, a log line or a report:
providers echo keys in their error bodies.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from .errors import DigestError
from .polite import RetriesExhausted, Retryable, RetryPolicy, retry_after_seconds, transport_problem

log = logging.getLogger(__name__)

CONTEXT_OVERFLOW = re.compile(r"context.length|context window|too many tokens|maximum.*tokens", re.IGNORECASE)
SSE_LINE_END = re.compile(rb"\r\n|\r|\n")
TRANSIENT_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})
# Parameters a server may refuse without the request being wrong: dropped (for the run) when it does.
OPTIONAL_PARAMETERS = ("stream_options", "repeat_penalty", "frequency_penalty", "presence_penalty", "stream")
REJECTION_STATUS = frozenset({400, 422, 500})  # llama-cpp-python reports validation errors as 500
REPEAT_PENALTY_SERVERS = frozenset({"llama.cpp", "ollama"})
WATCH_EVERY_CHARS = 48  # how much new text arrives between two looks at a streamed answer

BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=*-]{6,}")
KEY_SHAPED = re.compile(r"\b(?:sk|pk|rk|ak)-[A-Za-z0-9_*.-]{6,}|\bAIza[0-9A-Za-z_-]{20,}")
KEY_ASSIGNMENT = re.compile(r"""(?i)\b(api[_-]?key|x-api-key|authorization)(["']?\s*[:=]\s*["']?)[^\s"',}]{6,}""")
REDACTED = "[redacted]"
KEY_FRAGMENT = 8  # a run of this many characters of the key, echoed anywhere, is redacted with its token


class LLMError(DigestError):
    """A call failed; the paper stays pending."""


class LLMFatal(LLMError):
    """Retrying cannot help (bad key, no quota, unsupported request): stop calling for this run."""


class LLMTooLong(LLMError):
    """The prompt exceeds the model's context window: a shorter text may still work."""


class Redactor:
    """Removes the configured key (whole or in part) and anything shaped like a key or bearer token."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self.secrets = tuple(s for s in secrets if s and len(s) >= 4)
        fragments = {s[i : i + KEY_FRAGMENT] for s in self.secrets for i in range(max(1, len(s) - KEY_FRAGMENT + 1))}
        self._fragments = (
            re.compile(r"\S*(?:" + "|".join(map(re.escape, sorted(fragments, key=len, reverse=True))) + r")\S*")
            if fragments
            else None
        )

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        if self._fragments is not None:
            text = self._fragments.sub(REDACTED, text)
        text = BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
        text = KEY_ASSIGNMENT.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
        return KEY_SHAPED.sub(REDACTED, text)


@dataclass(frozen=True)
class Completion:
    content: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None  # "stop", "length", or "early_stop" when ``watch`` stopped the stream
    model: str
    stopped: Exception | None = None  # what ``watch`` objected to, when it stopped the stream
    usage_estimated: bool = False  # the server sent no usage (or the stream was cut): counted by us
    seconds: float = 0.0  # from sending the request to the last byte read


Watch = Callable[[str], Exception | None]  # sees the answer so far; returns a reason to stop reading


def estimate_tokens(text: str) -> int:
    """Rough token count for servers that report none: a CJK character is about one token, four
    other characters are about one."""
    cjk = sum(1 for ch in text if "\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff")
    return cjk + (len(text) - cjk) // 4 + 1


def _error_message(response: httpx.Response) -> tuple[str, str]:
    """The provider's own error text (OpenAI ``{"error": {...}}`` or DashScope ``{"code","message"}``)
    and the request parameter it names (OpenAI's ``param``), if any."""
    try:
        body = response.json()
    except ValueError:
        return " ".join(response.text.split())[:300], ""
    error = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, dict):
        message = " ".join(str(error.get("message") or "").split())[:300]
        code = error.get("code") or error.get("type")
        text = f"{message} ({code})" if code and str(code) not in message else message
        return text, str(error.get("param") or "")
    return str(error)[:300], ""


def _retry_after(response: httpx.Response) -> str | None:
    millis = response.headers.get("retry-after-ms")
    if millis:
        try:
            return str(float(millis) / 1000)
        except ValueError:
            pass
    return response.headers.get("retry-after")


def _rejected_parameter(message: str, sent: Iterable[str]) -> str | None:
    """The optional parameter a 400/422 names, if any (``stream`` only when no longer name matched)."""
    for name in sent:
        pattern = r"\bstream(?:ing)?\b(?!_)" if name == "stream" else rf"\b{name}\b"
        if re.search(pattern, message, re.IGNORECASE):
            return name
    return None


def _server_kind(response: httpx.Response, body: Mapping[str, Any]) -> str | None:
    """llama.cpp (its own server or llama-cpp-python) and Ollama accept ``repeat_penalty``."""
    fingerprint = str(body.get("system_fingerprint") or "")
    if fingerprint == "fp_ollama":
        return "ollama"
    if response.headers.get("server", "").startswith("llama.cpp") or re.fullmatch(r"b\d+-\w+", fingerprint):
        return "llama.cpp"
    # llama-cpp-python: uuid4 ids behind uvicorn
    if re.fullmatch(r"chatcmpl-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", str(body.get("id"))):
        return "llama.cpp"
    return None


class _Refused(Exception):
    """Internal: the server refused an optional parameter; the request is sent again without it."""

    def __init__(self, parameter: str) -> None:
        super().__init__(parameter)
        self.parameter = parameter


class _Aborted(Exception):
    """Internal: the caller's watch stopped the stream."""

    def __init__(self, reason: Exception) -> None:
        super().__init__(str(reason))
        self.reason = reason


@dataclass
class _StreamState:
    content: str = ""
    pieces: int = 0  # events that carried text (content or reasoning): about one token each
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    model: str = ""


class ChatClient:
    """Thread-safe: many workers share one connection pool and what was learnt about the endpoint."""

    def __init__(
        self,
        client: httpx.Client,
        base_url: str,
        api_key: str | None,
        policy: RetryPolicy,
        sleep: Callable[[float], None] = time.sleep,
        *,
        stream: bool = True,
    ) -> None:
        self.client = client
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.policy = policy
        self.sleep = sleep
        self.redact = Redactor([api_key])
        self.server_kind: str | None = None
        self._refused: set[str] = set() if stream else {"stream"}
        self._fatal: LLMFatal | None = None
        self._lock = threading.Lock()

    @property
    def streaming(self) -> bool:
        return "stream" not in self._refused

    def refused(self) -> frozenset[str]:
        """Parameters this endpoint refused during the run (so they are no longer sent)."""
        with self._lock:
            return frozenset(self._refused)

    def complete(
        self,
        messages: list[dict[str, str]],
        model: str,
        temperature: float,
        max_tokens: int,
        *,
        options: Mapping[str, float] | None = None,
        watch: Watch | None = None,
    ) -> Completion:
        """One answer. ``options`` are optional sampling parameters (``frequency_penalty``, ...;
        ``repeat_penalty`` goes only to llama.cpp and Ollama); ``watch`` sees a streamed answer as it
        grows and may stop it: the result then has ``finish_reason == "early_stop"``."""

        def once() -> Completion:
            while True:
                if self._fatal:
                    raise self._fatal
                payload = self._payload(messages, model, temperature, max_tokens, options or {})
                started = time.monotonic()
                try:
                    return self._send(payload, model, watch, started)
                except _Refused as refused:
                    with self._lock:
                        self._refused.add(refused.parameter)
                    log.info("LLM: the endpoint refused %s; continuing without it", refused.parameter)
                except httpx.TransportError as exc:
                    raise Retryable(transport_problem(exc, self.client.timeout)) from None

        try:
            return self.policy.call(once, self.sleep, "LLM")
        except RetriesExhausted as exc:
            raise LLMError(f"{exc} (after {exc.attempts} attempts)") from None

    def _payload(
        self, messages: list[dict[str, str]], model: str, temperature: float, max_tokens: int, options: Mapping
    ) -> dict[str, Any]:
        refused = self.refused()
        payload: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "temperature": temperature,
            "max_tokens": max_tokens,
            "stream": "stream" not in refused,
        }
        if payload["stream"] and "stream_options" not in refused:
            payload["stream_options"] = {"include_usage": True}
        for name, value in options.items():
            if name == "repeat_penalty" and self.server_kind not in REPEAT_PENALTY_SERVERS:
                continue
            if name not in refused:
                payload[name] = value
        return payload

    def _send(self, payload: dict[str, Any], model: str, watch: Watch | None, started: float) -> Completion:
        with self.client.stream("POST", self.url, json=payload, headers=self.headers) as response:
            if response.status_code != 200:
                response.read()
                raise self._failure(response, payload)
            if response.headers.get("content-type", "").startswith("text/event-stream"):
                return self._read_stream(response, model, watch, started, payload)
            response.read()
            return self._plain(response, model, started, payload)

    def _failure(self, response: httpx.Response, payload: Mapping[str, Any]) -> Exception:
        text, param = _error_message(response)
        status, message = response.status_code, self.redact(text)
        optional = [name for name in OPTIONAL_PARAMETERS if name in payload and payload[name] is not False]
        parameter = _rejected_parameter(f"{param} {message}", optional) if status in REJECTION_STATUS else None
        if parameter and not (parameter == "stream" and status >= 500):  # a 500 naming "stream" is no refusal
            return _Refused(parameter)
        error = self._classify(response, status, message)
        if isinstance(error, LLMFatal):
            with self._lock:
                self._fatal = error  # every other worker stops calling too
        return error

    def _classify(self, response: httpx.Response, status: int, message: str) -> LLMError | Retryable:
        if status in (401, 403):
            return LLMFatal(f"the LLM endpoint rejected the API key (HTTP {status}): {message}")
        if status == 429 and "insufficient_quota" in response.text:
            return LLMFatal(f"the LLM account has no quota left (HTTP 429): {message}")
        if status in TRANSIENT_STATUS:
            return Retryable(f"HTTP {status}", retry_after_seconds(_retry_after(response)), detail=message)
        if status in (400, 413) and CONTEXT_OVERFLOW.search(message):
            return LLMTooLong(f"the text is too long for the model: {message}")
        if status == 404:
            where = self.redact(str(response.request.url))
            return LLMFatal(f"no chat endpoint at {where} (HTTP 404): check llm.base_url and llm.model")
        return LLMFatal(f"the LLM endpoint refused the request (HTTP {status}): {message}")

    def _learn(self, response: httpx.Response, body: Mapping[str, Any]) -> None:
        if self.server_kind is None and (kind := _server_kind(response, body)):
            self.server_kind = kind

    def _plain(self, response: httpx.Response, model: str, started: float, payload: Mapping) -> Completion:
        try:
            body = response.json()
            choice = body["choices"][0]
            message = choice.get("message") or {}
        except (ValueError, KeyError, IndexError, TypeError):
            raise Retryable("the LLM answered with unreadable JSON") from None
        self._learn(response, body)
        usage = body.get("usage") or {}
        content = message.get("content") or ""
        estimated = not usage.get("completion_tokens")
        return Completion(
            content=content,
            prompt_tokens=int(usage.get("prompt_tokens") or 0) or _prompt_estimate(payload),
            completion_tokens=int(usage.get("completion_tokens") or 0) or estimate_tokens(content),
            finish_reason=choice.get("finish_reason"),
            model=str(body.get("model") or model),
            usage_estimated=estimated,
            seconds=time.monotonic() - started,
        )

    def _read_stream(
        self, response: httpx.Response, model: str, watch: Watch | None, started: float, payload: Mapping
    ) -> Completion:
        state = _StreamState(model=model)
        watched = 0
        try:
            for chunk in _sse_chunks(response):
                if "error" in chunk:  # some servers report a failure as an event, after the 200
                    error = chunk["error"]
                    text = error.get("message") if isinstance(error, dict) else error
                    raise Retryable("the LLM stream failed", detail=self.redact(str(text))[:300])
                self._learn(response, chunk)
                _absorb(state, chunk)
                if watch is not None and len(state.content) - watched >= WATCH_EVERY_CHARS:
                    watched = len(state.content)
                    if (reason := watch(state.content)) is not None:
                        raise _Aborted(reason)
        except _Aborted as aborted:  # leaving the ``with`` closes the connection: the server stops
            return self._streamed(state, payload, started, "early_stop", aborted.reason)
        except (json.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
            raise Retryable("the LLM stream had an unreadable event") from None
        return self._streamed(state, payload, started, state.finish_reason, None)

    def _streamed(
        self, state: _StreamState, payload: Mapping, started: float, finish: str | None, stopped: Exception | None
    ) -> Completion:
        usage = state.usage if stopped is None else None
        out = int((usage or {}).get("completion_tokens") or 0)
        return Completion(
            content=state.content,
            prompt_tokens=int((usage or {}).get("prompt_tokens") or 0) or _prompt_estimate(payload),
            completion_tokens=out or max(state.pieces, estimate_tokens(state.content) if state.content else 0),
            finish_reason=finish,
            model=state.model,
            stopped=stopped,
            usage_estimated=not out,
            seconds=time.monotonic() - started,
        )


def _sse_lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """An SSE body's lines, which end at CRLF, LF or CR only. httpx's ``iter_lines`` splits like
    ``str.splitlines``, also at U+2028, U+0085, form feed and vertical tab, which a model's answer can
    carry raw inside an event's JSON: that event would be cut in two and read as garbage. Splitting the
    bytes is safe, as no byte of a multi-byte UTF-8 character is CR or LF."""
    pending = b""
    for chunk in chunks:
        *lines, pending = SSE_LINE_END.split(pending + chunk)
        for line in lines:
            yield line.decode("utf-8", "replace")
    if pending:
        yield pending.decode("utf-8", "replace")


def _sse_chunks(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """The JSON events of an SSE body, up to ``data: [DONE]`` (comments and other fields skipped)."""
    for line in _sse_lines(response.iter_bytes()):
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        if data:
            yield json.loads(data)


def _absorb(state: _StreamState, chunk: Mapping[str, Any]) -> None:
    if chunk.get("usage"):
        state.usage = chunk["usage"]
    if chunk.get("model"):
        state.model = str(chunk["model"])
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        piece = delta.get("content") or ""
        thought = delta.get("reasoning_content") or delta.get("reasoning") or ""
        if piece or thought:
            state.pieces += 1
        state.content += piece
        if choice.get("finish_reason"):
            state.finish_reason = choice["finish_reason"]


def _prompt_estimate(payload: Mapping[str, Any]) -> int:
    return estimate_tokens("".join(str(m.get("content") or "") for m in payload.get("messages") or ()))
