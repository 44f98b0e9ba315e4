"""Self-tests for the fake LLM server, so product e2e tests can trust what it sends."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.llm_server import (
    FIXTURE_DIR,
    MODEL_STYLES,
    RATE_LIMIT_BODY,
    UNAUTHORIZED_BODY,
    Fault,
    LLMServer,
    count_tokens,
    default_responder,
)

REQUEST: dict[str, Any] = {
    "model": "test-model",
    "messages": [
        {"role": "system", "content": "You translate arXiv abstracts."},
        {"role": "user", "content": "Translate: We propose a method."},
    ],
}


@pytest.fixture
def server() -> Iterator[LLMServer]:
    with LLMServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    """One client for the module: building httpx's SSL context costs ~30 ms per instance."""
    # trust_env=False: a proxy set in the environment must not intercept loopback traffic.
    with httpx.Client(timeout=2.0, trust_env=False) as c:
        yield c


def post(client: httpx.Client, srv: LLMServer, **extra: Any) -> httpx.Response:
    return client.post(f"{srv.base_url}/chat/completions", json={**REQUEST, **extra})


def sse_events(text: str) -> list[Any]:
    """Parse an SSE body into JSON chunks; the ``[DONE]`` sentinel becomes the string 'DONE'."""
    out: list[Any] = []
    for line in text.splitlines():
        if line.startswith("data: "):
            data = line[len("data: ") :]
            out.append("DONE" if data == "[DONE]" else json.loads(data))
    return out


def chinese_ratio(text: str) -> float:
    return sum("\u4e00" <= ch <= "\u9fff" for ch in text) / max(len(text), 1)


# --------------------------------------------------------------------------- fixtures


def test_fixture_copies_match_manifest_checksums() -> None:
    manifest = (FIXTURE_DIR / "MANIFEST.txt").read_text()
    expected = dict(re.findall(r"^(\S+)\n(?:  .*\n)*?  sha256: ([0-9a-f]{64})", manifest, re.M))
    present = [p for p in FIXTURE_DIR.iterdir() if p.name != "MANIFEST.txt"]
    assert present
    for path in present:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == expected[path.name], path.name


def test_decoded_body_is_gunzip_of_recording() -> None:
    import yaml

    cassette = yaml.safe_load((FIXTURE_DIR / "openai_nonstream_gzip_body.mirascope.yaml").read_bytes())
    raw = cassette["interactions"][0]["response"]["body"]["string"]
    decoded = (FIXTURE_DIR / "openai_nonstream_gzip_body.mirascope.DECODED_BODY.json").read_bytes()
    assert gzip.decompress(raw) == decoded


# --------------------------------------------------------------------------- success shapes


def test_success_shape_usage_and_recording(server: LLMServer, client: httpx.Client) -> None:
    r = post(client, server)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert "x-ratelimit-remaining-requests" in r.headers
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "test-model"
    assert body["id"].startswith("chatcmpl-")
    choice = body["choices"][0]
    assert choice["index"] == 0
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    content = choice["message"]["content"]
    assert content == default_responder(REQUEST)
    assert chinese_ratio(content) > 0.7
    usage = body["usage"]
    prompt = "".join(m["content"] for m in REQUEST["messages"])
    assert usage["prompt_tokens"] == count_tokens(prompt)
    assert usage["completion_tokens"] == count_tokens(content)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    (rec,) = server.requests
    assert rec.path == "/v1/chat/completions"
    assert rec.status == 200
    assert rec.json == REQUEST
    assert rec.headers["content-type"] == "application/json"
    assert rec.time <= time.monotonic()
    assert server.max_in_flight == 1


def test_default_responder_is_deterministic_per_message() -> None:
    other = {**REQUEST, "messages": [{"role": "user", "content": "something else"}]}
    assert default_responder(REQUEST) == default_responder(dict(REQUEST))
    assert default_responder(REQUEST) != default_responder(other)


def test_root_path_without_v1_and_unknown_path(server: LLMServer, client: httpx.Client) -> None:
    assert client.post(f"{server.root_url}/chat/completions", json=REQUEST).status_code == 200
    missing = client.post(f"{server.root_url}/v1/completions", json=REQUEST)
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "Invalid URL (POST /v1/completions)"
    assert [r.status for r in server.requests] == [200, 404]


def test_set_responder_and_request_validation(server: LLMServer, client: httpx.Client) -> None:
    server.set_responder(lambda req: f"echo:{req['messages'][-1]['content']}")
    assert post(client, server).json()["choices"][0]["message"]["content"].startswith("echo:Translate")
    assert client.post(f"{server.base_url}/chat/completions", content=b"{not json").status_code == 400
    assert client.post(f"{server.base_url}/chat/completions", json={"messages": []}).status_code == 400


@pytest.mark.parametrize("style", MODEL_STYLES)
def test_model_styles(style: str, client: httpx.Client) -> None:
    with LLMServer(model_style=style) as srv:
        first = post(client, srv).json()
        second = post(client, srv).json()  # same system prompt: counts as a prompt-cache hit
    message, usage = first["choices"][0]["message"], first["usage"]
    assert message["content"] == default_responder(REQUEST)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    if style == "deepseek":
        assert message["reasoning_content"].startswith("Okay")
        assert usage["completion_tokens_details"]["reasoning_tokens"] > 0
        assert (usage["prompt_cache_hit_tokens"], usage["prompt_cache_miss_tokens"]) == (
            0,
            usage["prompt_tokens"],
        )
        hit = second["usage"]["prompt_cache_hit_tokens"]
        assert hit > 0
        assert hit + second["usage"]["prompt_cache_miss_tokens"] == second["usage"]["prompt_tokens"]
    elif style == "ollama":
        assert message["reasoning"].startswith("Okay")
        assert set(usage) == {"prompt_tokens", "completion_tokens", "total_tokens"}
        assert first["system_fingerprint"] == "fp_ollama"
    elif style == "vllm":
        assert first["id"].startswith("chat-")
        assert first["choices"][0]["stop_reason"] is None
    else:
        assert "reasoning_content" not in message
        assert second["usage"]["prompt_tokens_details"]["cached_tokens"] > 0


def test_bad_model_style_rejected() -> None:
    with pytest.raises(ValueError):
        LLMServer(model_style="anthropic")


# --------------------------------------------------------------------------- streaming


@pytest.mark.parametrize("style", MODEL_STYLES)
def test_stream_with_usage(style: str, client: httpx.Client) -> None:
    with LLMServer(model_style=style) as srv:
        r = post(client, srv, stream=True, stream_options={"include_usage": True})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert events[-1] == "DONE"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == default_responder(REQUEST)
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes[-1] == "stop"
    assert [f for f in finishes if f] == ["stop"]
    usage_chunks = [c for c in chunks if c.get("usage")]
    assert len(usage_chunks) == 1
    assert usage_chunks[0]["usage"]["completion_tokens"] >= count_tokens(text)
    if style == "deepseek":  # DeepSeek: usage rides on the finish_reason chunk
        assert usage_chunks[0] is chunks[-1]
        assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
        assert any(c["choices"][0]["delta"].get("reasoning_content") for c in chunks)
    else:  # OpenAI, vLLM, Ollama: separate usage-only chunk with choices == []
        assert usage_chunks[0] is chunks[-1]
        assert chunks[-1]["choices"] == []
    if style == "vllm":  # vLLM: last content piece arrives together with finish_reason
        assert chunks[-2]["choices"][0]["delta"]["content"]
        assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


def test_stream_without_include_usage_has_no_usage(server: LLMServer, client: httpx.Client) -> None:
    chunks = sse_events(post(client, server, stream=True).text)[:-1]
    assert all("usage" not in c for c in chunks)
    assert all(c["choices"] for c in chunks)


def test_stream_with_faulted_content(server: LLMServer, client: httpx.Client) -> None:
    server.inject(Fault("length", content="abcdefgh"))
    chunks = sse_events(post(client, server, stream=True).text)[:-1]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "abcd"
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


# --------------------------------------------------------------------------- faults


def test_rate_limit_then_success(server: LLMServer, client: httpx.Client) -> None:
    server.inject("rate_limit")
    r = post(client, server)
    assert r.status_code == 429
    assert r.content == RATE_LIMIT_BODY
    assert r.json()["error"]["code"] == "rate_limit_exceeded"
    assert r.headers["retry-after"] == "1"
    assert r.headers["retry-after-ms"] == "1000"
    assert r.headers["x-ratelimit-limit-requests"] == "200"
    assert post(client, server).status_code == 200
    assert [q.status for q in server.requests] == [429, 200]


def test_rate_limit_retry_after_variants(server: LLMServer, client: httpx.Client) -> None:
    server.inject(Fault("rate_limit", retry_after=None), Fault("rate_limit", retry_after="0.25"))
    first, second = post(client, server), post(client, server)
    assert "retry-after" not in first.headers
    assert "retry-after-ms" not in first.headers
    assert (second.headers["retry-after"], second.headers["retry-after-ms"]) == ("0.25", "250")


def test_quota(server: LLMServer, client: httpx.Client) -> None:
    server.inject("quota")
    r = post(client, server)
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "insufficient_quota"
    assert "retry-after" not in r.headers


def test_server_errors(server: LLMServer, client: httpx.Client) -> None:
    server.inject("server_error", Fault("server_error", status=502), "overloaded")
    r500, r502, r503 = (post(client, server) for _ in range(3))
    assert r500.status_code == 500
    assert r500.json()["error"]["type"] == "server_error"
    assert r502.status_code == 502
    assert r503.status_code == 503
    assert r503.json()["error"]["message"].startswith("Service is too busy")


def test_stall_outlasts_client_timeout(server: LLMServer) -> None:
    server.inject(Fault("stall", seconds=3.0))
    with httpx.Client(timeout=0.2, trust_env=False) as c:
        with pytest.raises(httpx.ReadTimeout):
            post(c, server)
        assert server.requests[0].status is None  # the client gave up before the stalled answer
        assert post(c, server).status_code == 200


def test_malformed_json(server: LLMServer, client: httpx.Client) -> None:
    server.inject("malformed_json")
    r = post(client, server)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        r.json()


@pytest.mark.parametrize(("kind", "expected"), [("empty_content", ""), ("null_content", None)])
def test_empty_and_null_content(kind: str, expected: str | None, server: LLMServer, client: httpx.Client) -> None:
    server.inject(kind)
    body = post(client, server).json()
    assert body["choices"][0]["message"]["content"] == expected
    assert body["choices"][0]["finish_reason"] == "stop"


def test_content_fault_and_order(server: LLMServer, client: httpx.Client) -> None:
    text = "<think>plan</think>\n```markdown\n## 摘要\n中文\n```"
    server.inject(Fault("content", content="English only."), Fault("content", content=text))
    assert server.pending_faults == 2
    contents = [post(client, server).json()["choices"][0]["message"]["content"] for _ in range(3)]
    assert contents == ["English only.", text, default_responder(REQUEST)]
    assert server.pending_faults == 0


def test_length_cuts_answer_in_half(server: LLMServer, client: httpx.Client) -> None:
    server.inject("length")
    choice = post(client, server).json()["choices"][0]
    full = default_responder(REQUEST)
    assert choice["finish_reason"] == "length"
    assert choice["message"]["content"] == full[: len(full) // 2]


def test_context_length(server: LLMServer, client: httpx.Client) -> None:
    server.inject("context_length")
    r = post(client, server, max_tokens=4096)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert re.search(r"maximum context length is 65536 tokens\. However, you requested \d+ tokens", error["message"])
    assert "4096 in the completion" in error["message"]


def test_unauthorized_fault(server: LLMServer, client: httpx.Client) -> None:
    server.inject("unauthorized")
    r = post(client, server)
    assert r.status_code == 401
    assert r.content == UNAUTHORIZED_BODY
    assert r.json()["error"]["code"] == "invalid_api_key"


def test_gzip(server: LLMServer, client: httpx.Client) -> None:
    server.inject("gzip", "gzip")
    url = f"{server.base_url}/chat/completions"
    with client.stream("POST", url, json=REQUEST) as r:
        raw = b"".join(r.iter_raw())
    assert r.headers["content-encoding"] == "gzip"
    assert raw[:2] == b"\x1f\x8b"
    assert json.loads(gzip.decompress(raw))["choices"][0]["message"]["content"] == default_responder(REQUEST)
    streamed = post(client, server, stream=True)  # httpx decodes gzip transparently, SSE too
    assert streamed.headers["content-encoding"] == "gzip"
    assert sse_events(streamed.text)[-1] == "DONE"


def test_unknown_fault_kind_rejected(server: LLMServer) -> None:
    with pytest.raises(ValueError):
        server.inject("teapot")
    with pytest.raises(ValueError):
        Fault("content")  # content kind needs the text


# --------------------------------------------------------------------------- auth, concurrency, errors


def test_api_key_auth(client: httpx.Client) -> None:
    with LLMServer(api_key="sk-test") as srv:
        srv.inject(Fault("content", content="after auth"))
        url = f"{srv.base_url}/chat/completions"
        missing = client.post(url, json=REQUEST)
        wrong = client.post(url, json=REQUEST, headers={"Authorization": "Bearer nope"})
        ok = client.post(url, json=REQUEST, headers={"Authorization": "Bearer sk-test"})
    assert missing.status_code == wrong.status_code == 401
    assert missing.content == UNAUTHORIZED_BODY
    assert ok.status_code == 200
    assert ok.json()["choices"][0]["message"]["content"] == "after auth"  # 401s consumed no fault
    assert srv.requests[2].headers["authorization"] == "Bearer sk-test"


def test_latency_requests_overlap(client: httpx.Client) -> None:
    with LLMServer(latency=0.3) as srv:
        results: list[int] = []

        def call() -> None:
            with httpx.Client(timeout=2.0, trust_env=False) as c:
                results.append(post(c, srv).status_code)

        threads = [threading.Thread(target=call) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert results == [200, 200]
    assert srv.max_in_flight == 2  # both were held by the latency at the same time


def test_responder_exception_becomes_500_and_fails_the_test(client: httpx.Client) -> None:
    def broken(request: dict) -> str:
        raise KeyError("sections")

    with pytest.raises(AssertionError, match="responder raised"), LLMServer(broken) as srv:
        assert post(client, srv).status_code == 500
    assert isinstance(srv.errors[0], KeyError)


# --------------------------------------------------------------------------- llama.cpp, refusals, key echoes


def test_llamacpp_style_streams_without_usage_even_when_asked(client: httpx.Client) -> None:
    with LLMServer(model_style="llamacpp") as srv:
        plain = post(client, srv).json()
        streamed = sse_events(post(client, srv, stream=True, stream_options={"include_usage": True}).text)
    assert re.fullmatch(r"chatcmpl-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", plain["id"])
    assert plain["usage"]["completion_tokens"] == count_tokens(default_responder(REQUEST))
    chunks = streamed[:-1]
    assert streamed[-1] == "DONE" and not any("usage" in c for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == default_responder(REQUEST)
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}


@pytest.mark.parametrize(
    ("parameter", "needle"),
    [
        ("stream_options", "extra_forbidden"),
        ("stream", "Streaming is not supported"),
        ("repeat_penalty", "Unrecognized request argument supplied: repeat_penalty"),
    ],
)
def test_refused_parameters_get_a_400_naming_them(parameter: str, needle: str, client: httpx.Client) -> None:
    with LLMServer(refuse={parameter}) as srv:
        refused = post(client, srv, stream=True, stream_options={"include_usage": True}, repeat_penalty=1.1)
        accepted = post(client, srv)  # without the parameter: a normal answer
    assert refused.status_code == 400 and needle in refused.text and parameter in refused.text
    assert accepted.status_code == 200


def test_echo_faults_quote_the_key(client: httpx.Client) -> None:
    with LLMServer(api_key="sk-echo-me-123456") as srv:
        srv.inject("echo_key", "echo_headers")
        headers = {"Authorization": "Bearer sk-echo-me-123456"}
        url = f"{srv.base_url}/chat/completions"
        unauthorized = client.post(url, json=REQUEST, headers=headers)
        gateway = client.post(url, json=REQUEST, headers=headers)
    assert unauthorized.status_code == 401 and "Incorrect API key provided: sk-echo-me-123456" in unauthorized.text
    assert unauthorized.json()["error"]["code"] == "invalid_api_key"
    assert gateway.status_code == 500 and "Bearer sk-echo-me-123456" in gateway.text


def test_chunk_delay_paces_the_stream_and_counts_what_was_sent() -> None:
    long_answer = "重复的句子。" * 200
    with LLMServer(lambda request: long_answer, chunk_delay=0.01) as srv:
        url = f"{srv.base_url}/chat/completions"
        with (
            httpx.Client(timeout=5, trust_env=False) as c,
            c.stream("POST", url, json={**REQUEST, "stream": True}) as r,
        ):
            lines = r.iter_lines()
            first = [next(lines) for _ in range(10)]
        time.sleep(0.2)  # the server notices the closed connection on its next write
    assert any(line.startswith("data: ") for line in first)
    (record,) = srv.requests
    assert 3 <= record.events_sent < 100  # of the 300+ events the whole answer takes
