"""Loopback OpenAI-compatible ``POST /chat/completions`` server for end-to-end tests.

Why: the product's LLM client (httpx) must be exercised over real HTTP -- timeouts,
retries, gzip, SSE, concurrency -- without network access. Response shapes, error
bodies and headers are loaded from recorded exchanges (VCR cassettes) copied
byte-for-byte into ``tests/fixtures/llm/``, so the fake cannot drift from what
OpenAI, DeepSeek, Ollama and vLLM actually send.

Usage::

    with LLMServer(api_key="sk-test") as server:
        server.inject("rate_limit", Fault("content", content="English only"))
        client = httpx.Client(base_url=server.base_url)
        ...
        assert [r.status for r in server.requests] == [429, 200]
"""

from __future__ import annotations

import contextlib
import copy
import gzip
import hashlib
import json
import marshal
import time
import uuid
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import yaml

from .loopback import LoopbackHandler, LoopbackServer

Responder = Callable[[dict], str]

FIXTURE_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "llm"
MODEL_STYLES = ("openai", "deepseek", "ollama", "vllm")
FAULT_KINDS = frozenset(
    {
        "rate_limit",
        "quota",
        "server_error",
        "overloaded",
        "stall",
        "malformed_json",
        "empty_content",
        "null_content",
        "content",
        "length",
        "context_length",
        "unauthorized",
        "gzip",
        "echo_key",
        "echo_headers",
    }
)
CONTEXT_LIMIT = 65536
CHAT_PATHS = ("/chat/completions", "/v1/chat/completions")
STREAM_PIECE_CHARS = 4


# --------------------------------------------------------------------------- recordings

_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _response(name: str, index: int = 0) -> dict[str, Any]:
    """Recorded response ``index`` of cassette ``name`` (vcrpy / pydantic-ai YAML)."""
    with (FIXTURE_DIR / name).open("rb") as fh:
        return cast(dict[str, Any], yaml.load(fh, Loader=_YAML_LOADER)["interactions"][index]["response"])


def _headers(response: dict[str, Any]) -> dict[str, str]:
    """Recorded headers, lower-cased, first value only (cassettes store lists)."""
    return {key.lower(): str(values[0]) for key, values in response["headers"].items()}


def _raw_body(response: dict[str, Any]) -> bytes:
    """Body bytes as the client sees them after undoing Content-Encoding: gzip."""
    body = response["body"]["string"]
    data = body if isinstance(body, bytes) else body.encode("utf-8")
    if _headers(response).get("content-encoding") == "gzip":
        data = gzip.decompress(data)
    return data


def _json_body(response: dict[str, Any]) -> dict[str, Any]:
    """JSON body; pydantic-ai cassettes store it already parsed as ``parsed_body``."""
    if "parsed_body" in response:
        return cast(dict[str, Any], response["parsed_body"])
    return cast(dict[str, Any], json.loads(_raw_body(response)))


def _sse_events(response: dict[str, Any]) -> list[dict[str, Any]]:
    """The JSON chunks of a recorded SSE transcript, without the ``[DONE]`` sentinel."""
    text = _raw_body(response).decode("utf-8")
    return [
        json.loads(line[len("data: ") :])
        for line in text.splitlines()
        if line.startswith("data: ") and line.strip() != "data: [DONE]"
    ]


def _wire_order(body: dict[str, Any]) -> dict[str, Any]:
    """pydantic-ai stores bodies with sorted keys; restore the order providers send."""
    top = ("id", "object", "created", "model", "choices", "usage", "system_fingerprint")
    body = {k: body[k] for k in sorted(body, key=lambda k: top.index(k) if k in top else len(top))}
    for choice in body["choices"]:
        msg = choice["message"]
        choice["message"] = {k: msg[k] for k in ("role", "content", "reasoning_content") if k in msg}
    return body


def _pick(headers: dict[str, str], *prefixes: str) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.startswith(prefixes)}


_R429 = _response("openai_429_rate_limit_then_200.dd-trace-py.yaml")
RATE_LIMIT_BODY: bytes = _raw_body(_R429)
RATE_LIMIT_HEADERS: dict[str, str] = _pick(_headers(_R429), "x-ratelimit-", "x-request-id", "content-type")

_R401 = _response("openai_401_invalid_api_key.mirascope.yaml")
UNAUTHORIZED_BODY: bytes = _raw_body(_R401)
UNAUTHORIZED_HEADERS: dict[str, str] = _pick(_headers(_R401), "x-request-id", "content-type")

_ROK = _response("openai_nonstream_gzip_body.mirascope.yaml")

# llama-cpp-python (recorded for this project): its stream never carries usage, even when asked.
_LLAMACPP = "llamacpp_python_gemma3_270m.yaml"
EXTRA_STYLES = ("llamacpp",)  # styles whose streams lack a usage chunk (kept out of MODEL_STYLES)
OPENAI_SUCCESS_HEADERS: dict[str, str] = _pick(_headers(_ROK), "x-ratelimit-", "openai-version")

# Non-streaming templates: a real body per provider; ids, content and usage get overwritten.
_COMPLETION_TEMPLATES: dict[str, dict[str, Any]] = {
    "openai": json.loads((FIXTURE_DIR / "openai_nonstream_gzip_body.mirascope.DECODED_BODY.json").read_bytes()),
    "deepseek": _wire_order(_json_body(_response("deepseek_reasoner_nonstream_usage.pydantic-ai.yaml"))),
    "ollama": _json_body(_response("ollama_gemma3_nonstream.mirascope.yaml")),
    "vllm": _json_body(_response("vllm_chat_nonstream.openllmetry.yaml")),
    "llamacpp": _json_body(_response(_LLAMACPP, 0)),
}
_OLLAMA_REASONING = _json_body(_response("ollama_qwen3_json_schema_reasoning.pydantic-ai.yaml"))
assert "reasoning" in _OLLAMA_REASONING["choices"][0]["message"], "Ollama recording lost message.reasoning"

# Streaming templates: recorded chunk sequences (Ollama has no stream recording; synthesized).
_STREAM_TEMPLATES: dict[str, list[dict[str, Any]]] = {
    "openai": _sse_events(_response("openai_stream_sse_usage.mirascope.yaml")),
    "deepseek": _sse_events(_response("deepseek_reasoner_stream_sse.pydantic-ai.yaml")),
    "vllm": _sse_events(_response("vllm_chat_stream_sse.openllmetry.yaml")),
    "llamacpp": _sse_events(_response(_LLAMACPP, 1)),
}


def _pretty(payload: dict[str, Any]) -> bytes:
    """OpenAI pretty-prints error bodies with 4-space indents and a trailing newline."""
    return (json.dumps(payload, indent=4) + "\n").encode("utf-8")


def _error(message: str, type_: str | None, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


# Not recorded in the fixtures; shapes from providers' public error reports.
QUOTA_BODY = _pretty(
    _error(
        "You exceeded your current quota, please check your plan and billing details. For more "
        "information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
        "insufficient_quota",
        "insufficient_quota",
    )
)
SERVER_ERROR_BODY = _pretty(
    _error("The server had an error while processing your request. Sorry about that!", "server_error", None)
)
OVERLOADED_BODY = json.dumps({"error": {"message": "Service is too busy. Please try again later."}}).encode()


def echo_key_body(token: str) -> bytes:
    """The recorded 401, but echoing the key in full, as OpenAI did until 2023 and some proxies still do."""
    body = json.loads(UNAUTHORIZED_BODY)
    body["error"]["message"] = (
        f"Incorrect API key provided: {token}. You can find your API key at https://platform.openai.com/account/api-keys."
    )
    return _pretty(body)


def echo_headers_body(headers: dict[str, str]) -> bytes:
    """A gateway's 500 that dumps the request it could not forward, Authorization header included."""
    shown = {k: v for k, v in headers.items() if k in ("authorization", "content-type", "user-agent")}
    message = f"upstream connect error; request was POST /v1/chat/completions with headers {shown!r}"
    return _pretty(_error(message, "server_error", None))


def refusal_body(parameter: str) -> bytes:
    """How servers refuse a parameter they do not know: vLLM's pydantic ``extra_forbidden`` list for
    ``stream_options``, a plain message for ``stream``, OpenAI's wording for anything else."""
    if parameter == "stream_options":
        detail = [
            {"type": "extra_forbidden", "loc": ["body", "stream_options"], "msg": "Extra inputs are not permitted"}
        ]
        return json.dumps({"object": "error", "message": str(detail), "type": "BadRequestError", "code": 400}).encode()
    if parameter == "stream":
        return _pretty(_error("Streaming is not supported by this endpoint.", "invalid_request_error", None, "stream"))
    message = f"Unrecognized request argument supplied: {parameter}"
    return _pretty(_error(message, "invalid_request_error", None))


# --------------------------------------------------------------------------- public API


@dataclass
class Fault:
    """One scripted misbehaviour, consumed by the next chat-completions request."""

    kind: str
    retry_after: str | None = "1"  # rate_limit: retry-after header; None omits retry-after(-ms)
    status: int = 500  # server_error
    seconds: float = 5.0  # stall
    content: str | None = None  # content (required), length (optional: text to cut in half)

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {sorted(FAULT_KINDS)}")
        if self.kind == "content" and self.content is None:
            raise ValueError("Fault('content') needs content=...")


@dataclass
class RecordedRequest:
    """What the server saw; ``status`` is filled in just before the response is written."""

    path: str
    headers: dict[str, str]
    json: Any
    time: float
    status: int | None = None
    method: str = "POST"
    body: bytes = b""
    events_sent: int = 0  # SSE events written before the stream ended or the client went away


def count_tokens(text: str | None) -> int:
    """Deterministic stand-in for a tokenizer, so tests can predict ``usage``."""
    return len(text or "") // 2 + 1


def message_text(content: Any) -> str:
    """Text of a message ``content`` (plain string or list of ``{"type":"text"}`` parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def last_user_text(request: dict) -> str:
    """Text of the last ``role: user`` message ('' if none)."""
    for message in reversed(request.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return message_text(message.get("content"))
    return ""


def _message_number(request: dict) -> int:
    return int(hashlib.sha256(last_user_text(request).encode("utf-8")).hexdigest()[:8], 16) % 100000


def default_responder(request: dict) -> str:
    """Deterministic, obviously mostly-Chinese answer keyed on a hash of the last user message."""
    n = _message_number(request)
    return f"这是对第{n}条消息的中文回答。本文提出了一种新方法，实验结果表明该方法在多个基准上有效。"


def _reasoning_for(request: dict) -> str:
    """English chain-of-thought, so a client that leaks reasoning into content is caught."""
    return f"Okay, the user sent message {_message_number(request)}. Let me think about it before answering."


# --------------------------------------------------------------------------- rendering


@dataclass
class _Answer:
    """Everything needed to render one successful completion in any provider style."""

    id: str
    created: int
    model: str
    content: str | None
    finish_reason: str
    reasoning: str | None
    usage: dict[str, int]


def _fill_usage(template: dict[str, Any], counts: dict[str, int]) -> dict[str, Any]:
    """Keep the provider's usage keys (and nesting), replace every number."""
    return {
        key: _fill_usage(value, counts) if isinstance(value, dict) else counts.get(key, 0)
        for key, value in template.items()
    }


def _pieces(text: str | None) -> list[str]:
    text = text or ""
    return [text[i : i + STREAM_PIECE_CHARS] for i in range(0, len(text), STREAM_PIECE_CHARS)]


def _completion(style: str, a: _Answer) -> dict[str, Any]:
    """Non-streaming body built on the recorded template of ``style``."""
    body = copy.deepcopy(_COMPLETION_TEMPLATES[style])
    body.update(id=a.id, created=a.created, model=a.model)
    choice = body["choices"][0]
    choice["finish_reason"] = a.finish_reason
    message = choice["message"]
    message["content"] = a.content
    if style == "deepseek":
        message["reasoning_content"] = a.reasoning
    elif style == "ollama":
        choice["message"] = {"role": "assistant", "content": a.content, "reasoning": a.reasoning}
    elif style == "vllm":
        choice["stop_reason"] = None
    body["usage"] = _fill_usage(body["usage"], a.usage)
    return body


def _chunk(template: dict[str, Any], a: _Answer, **choice: Any) -> dict[str, Any]:
    """Copy a recorded chunk, re-stamp id/created/model and replace its choice fields. (A chunk is
    JSON values, which marshal copies deep in a third of ``copy.deepcopy``'s time: an answer is
    hundreds of chunks.)"""
    out = marshal.loads(marshal.dumps(template))
    out.update(id=a.id, created=a.created, model=a.model)
    if out["choices"]:
        out["choices"][0].update(choice)
    return out


def _stream_events(style: str, a: _Answer, include_usage: bool) -> list[dict[str, Any]]:
    """Chunk sequence (before ``[DONE]``) in the shape recorded for ``style``."""
    pieces, thoughts = _pieces(a.content), _pieces(a.reasoning)
    events: list[dict[str, Any]] = []
    if style == "openai":
        t = _STREAM_TEMPLATES["openai"]
        events.append(_chunk(t[0], a))
        events += [_chunk(t[1], a, delta={"content": p}) for p in pieces]
        events.append(_chunk(t[-2], a, finish_reason=a.finish_reason))
        if include_usage:
            events.append(_chunk(t[-1], a))
            events[-1]["usage"] = _fill_usage(t[-1]["usage"], a.usage)
        else:  # without stream_options.include_usage OpenAI sends no usage field at all
            for event in events:
                event.pop("usage", None)
    elif style == "deepseek":
        # DeepSeek puts usage on the finish_reason chunk, not on a separate choices:[] chunk.
        t = _STREAM_TEMPLATES["deepseek"]
        content_template = next(e for e in t if e["choices"] and e["choices"][0]["delta"].get("content"))
        events.append(_chunk(t[0], a))
        events += [_chunk(t[1], a, delta={"content": None, "reasoning_content": p}) for p in thoughts]
        events += [_chunk(content_template, a, delta={"content": p, "reasoning_content": None}) for p in pieces]
        events.append(_chunk(t[-1], a, finish_reason=a.finish_reason))
        events[-1]["usage"] = _fill_usage(t[-1]["usage"], a.usage) if include_usage else None
    elif style == "vllm":
        # vLLM sends the last piece of content together with finish_reason + stop_reason.
        t = _STREAM_TEMPLATES["vllm"]
        head, last = pieces[:-1], (pieces[-1] if pieces else "")
        events.append(_chunk(t[0], a))
        events += [_chunk(t[1], a, delta={"content": p}) for p in head]
        events.append(_chunk(t[-1], a, delta={"content": last}, finish_reason=a.finish_reason))
        if include_usage:
            usage = _fill_usage(_COMPLETION_TEMPLATES["vllm"]["usage"], a.usage)
            events.append({**_chunk(t[0], a), "choices": [], "usage": usage})
    elif style == "llamacpp":
        # llama-cpp-python: role chunk, content pieces, an empty-delta finish chunk; never usage.
        t = _STREAM_TEMPLATES["llamacpp"]
        events.append(_chunk(t[0], a))
        events += [_chunk(t[1], a, delta={"content": p}) for p in pieces]
        events.append(_chunk(t[-1], a, finish_reason=a.finish_reason))
    else:  # ollama: no recorded stream; shape of Ollama's OpenAI-compat layer
        base = {
            "id": a.id,
            "object": "chat.completion.chunk",
            "created": a.created,
            "model": a.model,
            "system_fingerprint": "fp_ollama",
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {
                **base,
                "choices": [{"index": 0, "delta": {"role": "assistant", **delta}, "finish_reason": finish}],
            }

        events += [chunk({"content": "", "reasoning": p}) for p in thoughts]
        events += [chunk({"content": p}) for p in pieces]
        events.append(chunk({"content": ""}, a.finish_reason))
        if include_usage:
            usage = _fill_usage(_COMPLETION_TEMPLATES["ollama"]["usage"], a.usage)
            events.append({**base, "choices": [], "usage": usage})
    return events


_RESPONDER_FAILED = object()  # sentinel: the test's responder raised


# --------------------------------------------------------------------------- HTTP plumbing


class _Handler(LoopbackHandler):
    """Parses, records and dispatches one request; all policy lives in ``LLMServer``."""

    server_version = "llm-test-server"
    sys_version = ""

    @property
    def owner(self) -> LLMServer:
        return cast("LLMServer", self.server.owner)  # type: ignore[attr-defined]

    def do_POST(self) -> None:
        self._handle()

    def do_GET(self) -> None:
        self._handle()

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            parts: list[bytes] = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(parts)
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        body = self._read_body()
        try:
            parsed: Any = json.loads(body) if body else None
        except ValueError:
            parsed = None
        record = RecordedRequest(
            path=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            json=parsed,
            time=time.monotonic(),
            method=self.command,
            body=body,
        )
        try:
            self.owner._dispatch(self, record)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True  # client gave up (e.g. its timeout fired first)

    def send_bytes(
        self,
        record: RecordedRequest,
        status: int,
        body: bytes,
        headers: dict[str, str] | None = None,
        *,
        gzip_body: bool = False,
    ) -> None:
        """Write a complete response with Content-Length."""
        merged = {"content-type": "application/json", **(headers or {})}
        if gzip_body:
            body = gzip.compress(body)
            merged["content-encoding"] = "gzip"
        record.status = status
        self.send_response(status)
        for key, value in merged.items():
            self.send_header(key, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_sse(
        self,
        record: RecordedRequest,
        events: Iterable[dict[str, Any]],
        headers: dict[str, str] | None = None,
        *,
        gzip_body: bool = False,
    ) -> None:
        """Write ``data: {chunk}`` events then ``data: [DONE]``, one HTTP chunk per event. Paced by
        ``chunk_delay``, each event is sent as it is made, so a client that hangs up stops the
        stream; unpaced, the same bytes go out in one write (an answer of 500 events took 50 ms of
        the suite's time written event by event, 39 ms so)."""
        record.status = 200
        self.send_response(200)
        merged = {
            "content-type": "text/event-stream; charset=utf-8",
            "cache-control": "no-cache",
            **(headers or {}),
        }
        merged["transfer-encoding"] = "chunked"
        if gzip_body:
            merged["content-encoding"] = "gzip"
        for key, value in merged.items():
            self.send_header(key, value)
        self.end_headers()
        compressor = zlib.compressobj(wbits=31) if gzip_body else None
        lines = [f"data: {json.dumps(e, ensure_ascii=False, separators=(',', ':'))}\n\n" for e in events]
        delay = self.owner.chunk_delay
        pending = bytearray()
        for line in [*lines, "data: [DONE]\n\n"]:
            if delay and self.owner._closing.wait(delay):
                return
            data = line.encode("utf-8")
            if compressor:
                data = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
            pending += _chunk_frame(data)
            if delay:
                self.wfile.write(pending)
                pending.clear()
            record.events_sent += 1
        if compressor:
            pending += _chunk_frame(compressor.flush())
        self.wfile.write(pending + b"0\r\n\r\n")


def _chunk_frame(data: bytes) -> bytes:
    """``data`` as one HTTP/1.1 chunk; nothing for no data (a zero-length chunk ends the body)."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n" if data else b""


# --------------------------------------------------------------------------- the server


class LLMServer(LoopbackServer[RecordedRequest, Fault]):
    """OpenAI-compatible chat-completions server on 127.0.0.1 (random port), with fault injection.

    Serving starts in ``__init__`` (so ``base_url`` works immediately); use it as a
    context manager or call ``close()``. Faults queued with ``inject`` are consumed,
    in order, by the next requests that reach the chat endpoint with valid auth.
    """

    handler = _Handler
    fault_type = Fault
    thread_name = "llm-server"

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        latency: float = 0.0,
        api_key: str | None = None,
        model_style: str = "openai",
        refuse: Iterable[str] = (),
        chunk_delay: float = 0.0,
    ) -> None:
        if model_style not in (*MODEL_STYLES, *EXTRA_STYLES):
            raise ValueError(f"model_style must be one of {MODEL_STYLES + EXTRA_STYLES}, not {model_style!r}")
        self.refuse = set(refuse)  # request parameters answered with a 400 naming them
        self.chunk_delay = chunk_delay  # seconds before each SSE event, like a model generating
        self.responder: Responder = responder or default_responder
        self.latency = latency
        self.api_key = api_key
        self.model_style = model_style
        self._seen_prefixes: set[str] = set()
        self._seq = 0
        super().__init__()
        self.base_url = f"{self.root_url}/v1"  # root_url: DeepSeek-style base_url (no /v1) also works

    # ---- test-facing controls

    def set_responder(self, responder: Responder) -> None:
        """Swap the function that produces assistant content (takes effect for the next request)."""
        self.responder = responder

    # ---- internals (called from handler threads)

    def _next_id(self, style: str) -> str:
        with self._lock:
            self._seq += 1
            seq = self._seq
        digest = hashlib.sha256(f"{self.port}:{seq}".encode()).hexdigest()
        if style == "deepseek":
            return str(uuid.UUID(digest[:32]))
        if style == "ollama":
            return f"chatcmpl-{seq}"
        if style == "vllm":
            return f"chat-{digest[:32]}"
        if style == "llamacpp":
            return f"chatcmpl-{uuid.UUID(digest[:32], version=4)}"
        return f"chatcmpl-{digest[:29]}"

    def _dispatch(self, handler: _Handler, record: RecordedRequest) -> None:
        self._begin(record)
        try:
            self._respond(handler, record)
        finally:
            self._end()

    def _respond(self, h: _Handler, record: RecordedRequest) -> None:
        path = record.path.split("?", 1)[0].rstrip("/")
        if record.method != "POST" or path not in CHAT_PATHS:
            message = f"Invalid URL ({record.method} {record.path})"
            h.send_bytes(record, 404, _pretty(_error(message, "invalid_request_error", None)))
            return
        if self.api_key is not None and record.headers.get("authorization") != f"Bearer {self.api_key}":
            h.send_bytes(record, 401, UNAUTHORIZED_BODY, UNAUTHORIZED_HEADERS)
            return
        request = record.json
        if not isinstance(request, dict):
            message = "We could not parse the JSON body of your request."
            h.send_bytes(record, 400, _pretty(_error(message, "invalid_request_error", None)))
            return
        if not request.get("model"):
            message = "you must provide a model parameter"
            h.send_bytes(record, 400, _pretty(_error(message, "invalid_request_error", None)))
            return
        if not isinstance(request.get("messages"), list) or not request["messages"]:
            message = "Missing required parameter: 'messages'."
            h.send_bytes(record, 400, _pretty(_error(message, "invalid_request_error", None, "messages")))
            return

        refused = next((name for name in sorted(self.refuse) if request.get(name)), None)
        if refused is not None:
            h.send_bytes(record, 400, refusal_body(refused))
            return

        fault = self._next_fault()
        kind = fault.kind if fault else None
        if self.latency and self._closing.wait(self.latency):
            h.close_connection = True
            return

        if fault is not None and kind == "rate_limit":
            headers = dict(RATE_LIMIT_HEADERS)
            if fault.retry_after is not None:
                headers["retry-after"] = fault.retry_after
                with contextlib.suppress(ValueError):  # HTTP-date form: no ms variant
                    headers["retry-after-ms"] = str(int(float(fault.retry_after) * 1000))
            h.send_bytes(record, 429, RATE_LIMIT_BODY, headers)
            return
        if kind == "quota":
            h.send_bytes(record, 429, QUOTA_BODY, {"content-type": "application/json; charset=utf-8"})
            return
        if fault is not None and kind == "server_error":
            h.send_bytes(record, fault.status, SERVER_ERROR_BODY)
            return
        if kind == "overloaded":
            h.send_bytes(record, 503, OVERLOADED_BODY)
            return
        if kind == "unauthorized":
            h.send_bytes(record, 401, UNAUTHORIZED_BODY, UNAUTHORIZED_HEADERS)
            return
        if kind == "echo_key":
            token = record.headers.get("authorization", "").removeprefix("Bearer ")
            h.send_bytes(record, 401, echo_key_body(token), UNAUTHORIZED_HEADERS)
            return
        if kind == "echo_headers":
            h.send_bytes(record, 500, echo_headers_body(record.headers))
            return
        if kind == "context_length":
            prompt = CONTEXT_LIMIT + count_tokens(self._prompt_text(request))
            completion = int(request.get("max_tokens") or request.get("max_completion_tokens") or 0)
            message = (
                f"This model's maximum context length is {CONTEXT_LIMIT} tokens. However, you requested "
                f"{prompt + completion} tokens ({prompt} in the messages, {completion} in the completion). "
                "Please reduce the length of the messages or completion."
            )
            body = json.dumps(_error(message, "invalid_request_error", "invalid_request_error")).encode()
            h.send_bytes(record, 400, body)
            return
        if fault is not None and kind == "stall" and self._closing.wait(fault.seconds):
            h.close_connection = True  # server shutting down: drop the request unanswered
            return

        content, finish = self._content_for(request, fault)
        if content is _RESPONDER_FAILED:
            h.send_bytes(record, 500, _pretty(_error("test responder raised", "server_error", None)))
            return
        answer = self._answer(request, cast("str | None", content), finish)
        headers = {**OPENAI_SUCCESS_HEADERS, "x-request-id": f"req_{answer.id[-12:]}"}
        headers = headers if self.model_style == "openai" else {}
        if kind == "malformed_json":
            full = json.dumps(_completion(self.model_style, answer), ensure_ascii=False).encode("utf-8")
            h.send_bytes(record, 200, full[: len(full) // 2], headers)
        elif request.get("stream"):
            include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
            events = _stream_events(self.model_style, answer, include_usage)
            h.send_sse(record, events, headers, gzip_body=kind == "gzip")
        else:
            indent = 2 if self.model_style == "openai" else None  # OpenAI pretty-prints, others don't
            body = json.dumps(_completion(self.model_style, answer), ensure_ascii=False, indent=indent)
            h.send_bytes(record, 200, body.encode("utf-8"), headers, gzip_body=kind == "gzip")

    def _content_for(self, request: dict, fault: Fault | None) -> tuple[object, str]:
        """(content, finish_reason) for a 200 answer; calls the responder only when needed."""
        kind = fault.kind if fault else None
        if fault is not None and kind == "content":
            return fault.content, "stop"
        if kind == "empty_content":
            return "", "stop"
        if kind == "null_content":
            return None, "stop"
        if fault is not None and kind == "length" and fault.content is not None:
            return fault.content[: len(fault.content) // 2], "length"
        try:
            text = self.responder(request)
        except Exception as exc:  # surfaced again in __exit__
            self.record_error(exc)
            return _RESPONDER_FAILED, "stop"
        if kind == "length":
            return text[: len(text) // 2], "length"
        return text, "stop"

    @staticmethod
    def _prompt_text(request: dict) -> str:
        return "".join(message_text(m.get("content")) for m in request["messages"] if isinstance(m, dict))

    def _answer(self, request: dict, content: str | None, finish: str) -> _Answer:
        """Assemble ids and deterministic usage; a repeated first message counts as a cache hit."""
        reasoning = _reasoning_for(request) if self.model_style in ("deepseek", "ollama") else None
        prompt_tokens = count_tokens(self._prompt_text(request))
        first = request["messages"][0]
        prefix = message_text(first.get("content")) if isinstance(first, dict) else ""
        with self._lock:
            hit = min(len(prefix) // 2, prompt_tokens) if prefix in self._seen_prefixes else 0
            self._seen_prefixes.add(prefix)
        reasoning_tokens = count_tokens(reasoning) if reasoning else 0
        completion_tokens = count_tokens(content) + reasoning_tokens
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "reasoning_tokens": reasoning_tokens,
            "cached_tokens": hit,
            "prompt_cache_hit_tokens": hit,
            "prompt_cache_miss_tokens": prompt_tokens - hit,
        }
        return _Answer(
            id=self._next_id(self.model_style),
            created=int(time.time()),
            model=str(request["model"]),
            content=content,
            finish_reason=finish,
            reasoning=reasoning,
            usage=usage,
        )
