"""The chat client against the loopback server: streaming, usage, fallbacks, early stops, redaction."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from arxiv_digest.llm import ChatClient, LLMError, LLMFatal, Redactor, estimate_tokens
from arxiv_digest.polite import RetryPolicy
from tests.support.llm_server import EXTRA_STYLES, MODEL_STYLES, Fault, LLMServer, count_tokens, default_responder

MESSAGES = [{"role": "system", "content": "你是翻译。"}, {"role": "user", "content": "Translate: We propose a method."}]
KEY = "sk-proj-Zq9mT4xW2vR7pL0aB3cD5eF8gH1jK6nM"


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=3, trust_env=False) as client:
        yield client


def chat(http: httpx.Client, server: LLMServer, *, key: str | None = None, retries: int = 0, **kw) -> ChatClient:
    return ChatClient(http, server.base_url, key, RetryPolicy(retries, 0, 0), sleep=lambda _: None, **kw)


def chat_requests(server: LLMServer) -> list[dict]:
    return [r.json for r in server.requests]


@pytest.mark.parametrize("style", MODEL_STYLES + EXTRA_STYLES)
def test_streamed_answers_and_their_usage_in_every_provider_shape(style: str, http: httpx.Client) -> None:
    with LLMServer(model_style=style) as server:
        answer = chat(http, server).complete(MESSAGES, "m", 0.3, 100)
    (request,) = chat_requests(server)
    assert request["stream"] is True and request["stream_options"] == {"include_usage": True}
    expected = default_responder(request)
    assert answer.content == expected and answer.finish_reason == "stop" and answer.stopped is None
    if style == "llamacpp":  # llama-cpp-python sends no usage when streaming: counted by us
        assert answer.usage_estimated and answer.completion_tokens > 0
        assert answer.prompt_tokens == estimate_tokens("".join(m["content"] for m in MESSAGES))
    else:  # as the server counted them (DeepSeek and Ollama add their reasoning tokens)
        assert not answer.usage_estimated and answer.completion_tokens >= count_tokens(expected)


def test_a_server_refusing_stream_options_is_asked_without_them_for_the_rest_of_the_run(http: httpx.Client) -> None:
    with LLMServer(refuse={"stream_options"}) as server:
        client = chat(http, server)
        first = client.complete(MESSAGES, "m", 0.3, 100)
        second = client.complete(MESSAGES, "m", 0.3, 100)
    requests = server.requests
    assert [r.status for r in requests] == [400, 200, 200]  # one refusal, then remembered
    assert "stream_options" in requests[0].json and "stream_options" not in requests[1].json
    assert requests[1].json["stream"] is True and requests[2].json["stream"] is True
    assert first.content == second.content and first.usage_estimated  # no usage without the option


def test_a_server_refusing_streaming_gets_plain_calls(http: httpx.Client) -> None:
    with LLMServer(refuse={"stream"}) as server:
        client = chat(http, server)
        answers = [client.complete(MESSAGES, "m", 0.3, 100) for _ in range(2)]
    assert [r.status for r in server.requests] == [400, 200, 200]
    assert [r.json["stream"] for r in server.requests] == [True, False, False]
    assert not client.streaming and all(a.content == default_responder({"messages": MESSAGES}) for a in answers)
    assert not answers[0].usage_estimated


PENALTIES = {"frequency_penalty": 0.3, "presence_penalty": 0.2, "repeat_penalty": 1.15}


@pytest.mark.parametrize(("style", "sends_repeat_penalty"), [("openai", False), ("ollama", True), ("llamacpp", True)])
def test_repeat_penalty_goes_only_to_llama_cpp_and_ollama(style: str, sends_repeat_penalty: bool, http) -> None:
    with LLMServer(model_style=style) as server:
        client = chat(http, server)
        client.complete(MESSAGES, "m", 0.3, 100)  # the first answer tells which server this is
        client.complete(MESSAGES, "m", 0.1, 100, options=PENALTIES)
    retry = server.requests[1].json
    assert retry["frequency_penalty"] == 0.3 and retry["presence_penalty"] == 0.2 and retry["temperature"] == 0.1
    assert ("repeat_penalty" in retry) is sends_repeat_penalty


def test_a_refused_penalty_is_dropped_and_not_sent_again(http: httpx.Client) -> None:
    with LLMServer(model_style="llamacpp", refuse={"repeat_penalty"}) as server:
        client = chat(http, server)
        client.complete(MESSAGES, "m", 0.3, 100)
        client.complete(MESSAGES, "m", 0.1, 100, options=PENALTIES)
        client.complete(MESSAGES, "m", 0.1, 100, options=PENALTIES)
    assert [r.status for r in server.requests] == [200, 400, 200, 200]
    assert "repeat_penalty" not in server.requests[3].json and server.requests[3].json["frequency_penalty"] == 0.3
    assert client.refused() == {"repeat_penalty"}


def test_a_watch_stops_reading_and_the_server_stops_sending(http: httpx.Client) -> None:
    looping = "同一句话一遍又一遍。" * 300
    with LLMServer(lambda request: looping, chunk_delay=0.002) as server:
        seen: list[int] = []

        def watch(text: str) -> Exception | None:
            seen.append(len(text))
            return ValueError("enough") if len(text) > 200 else None

        answer = chat(http, server).complete(MESSAGES, "m", 0.3, 4000, watch=watch)
        time.sleep(0.1)
    assert answer.finish_reason == "early_stop" and str(answer.stopped) == "enough"
    assert 200 < len(answer.content) < 400 and seen == sorted(seen)
    assert answer.usage_estimated and answer.completion_tokens < 300  # estimated from what was read
    assert server.requests[0].events_sent < 150  # of ~750 events: generation stopped with the read


def test_the_key_is_redacted_from_a_401_that_echoes_it(http: httpx.Client) -> None:
    with LLMServer(api_key=KEY) as server:
        server.inject("echo_key")
        with pytest.raises(LLMFatal) as caught:
            chat(http, server, key=KEY).complete(MESSAGES, "m", 0.3, 100)
    assert "Incorrect API key provided: [redacted]" in str(caught.value)
    assert KEY not in str(caught.value) and KEY[:12] not in str(caught.value)


def test_the_key_is_redacted_from_a_500_that_quotes_the_authorization_header(
    http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    with LLMServer(api_key=KEY) as server:
        server.inject("echo_headers", "echo_headers")
        with caplog.at_level("DEBUG"), pytest.raises(LLMError) as caught:
            chat(http, server, key=KEY, retries=1).complete(MESSAGES, "m", 0.3, 100)
    assert "HTTP 500" in str(caught.value) and "[redacted]" in str(caught.value)
    assert KEY not in str(caught.value) + caplog.text
    assert "LLM: HTTP 500, retrying in 0 s (1/1)" in caplog.text  # the retry line: the short problem only


@pytest.mark.parametrize(
    "text",
    [
        f"Incorrect API key provided: {KEY[:10]}*****{KEY[-4:]}",
        f"headers {{'authorization': 'Bearer {KEY}'}}",
        f'{{"api_key": "{KEY}"}}',
        "x-api-key=AKIAIOSFODNN7EXAMPLE123",
        f"key={KEY[5:30]}",
    ],
)
def test_redactor_removes_whole_and_partial_keys(text: str) -> None:
    redacted = Redactor([KEY])(text)
    assert "[redacted]" in redacted
    assert KEY not in redacted and KEY[5:13] not in redacted and "AKIAIOSFODNN7" not in redacted


def test_redactor_leaves_ordinary_error_text_alone() -> None:
    text = "This model's maximum context length is 65536 tokens. Please reduce the length of the messages."
    assert Redactor([KEY])(text) == text


def test_a_fault_mid_run_still_retries_transport_errors(http: httpx.Client) -> None:
    with LLMServer() as server:
        server.inject(Fault("server_error", status=503))
        answer = chat(http, server, retries=1).complete(MESSAGES, "m", 0.3, 100)
    assert [r.status for r in server.requests] == [503, 200] and answer.content


@pytest.mark.parametrize("style", MODEL_STYLES)
def test_a_streamed_answer_keeps_unicode_line_separators_and_control_characters(style: str, http) -> None:
    """SSE lines end at CR/LF only: U+2028, U+0085, form feed and vertical tab inside an event's JSON
    are part of the answer, not line ends (httpx's iter_lines splits at them)."""
    text = "第一段\u2028第二段\u0085第三段\f第四段\v第五段\u2029完。"
    with LLMServer(model_style=style, responder=lambda request: text) as server:
        answer = chat(http, server).complete(MESSAGES, "m", 0.3, 100)
    assert server.requests[0].json["stream"] is True
    assert answer.content == text and answer.finish_reason == "stop"
