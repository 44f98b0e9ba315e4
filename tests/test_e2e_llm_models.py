"""Unsuitable models, end to end: early stops, retries that change something, the model verdict,
honest rejection reasons, the bounded pending queue, grounding, the glossary, and the key kept out
of every output. The real CLI against the loopback chat server, which streams like the real ones."""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from arxiv_digest.postformat import PENDING_LINE, UNAVAILABLE_LINE

from .conftest import KEY, LLMWorkspace, Workspace
from .llm_script import GOOD_EXPLAINER, good_answer, task
from .support.arxiv_server import make_paper
from .support.llm_server import Fault, LLMServer

DAY = "2026-01-15"
START = datetime(2026, 1, 14, 1, 0, tzinfo=UTC)

LOOPING = "本文提出了一种新的方法。" * 400
TOO_LONG = "".join(f"第{n}句介绍了论文在另一个方面的不同内容，" for n in range(400))
ENDLESS_THINK = "<think>" + "".join(f"思考第{n}步，" for n in range(2000))
ENGLISH = " ".join(f"This paper studies audio problem number {n} and proposes a method." for n in range(80))
# What Gemma 3 270M answered to the translation prompt (tests/fixtures/llm/gemma3_270m_answers.json)
ECHO = (
    "请把下面这篇 arXiv 论文的英文摘要翻译成简体中文。\n\n要求：\n"
    "- 只输出译文本身：不要标题，不要“好的”“以下是译文”之类的开场白，不要解释，不要代码块。\n"
    "- 忠实原文，不增删信息；按原文分段（通常是一段）。\n"
)


def add_papers(ws: Workspace, count: int, **overrides: str) -> list[str]:
    ids = [f"2601.{n:05d}" for n in range(1, count + 1)]
    for n, arxiv_id in enumerate(ids):
        title = overrides.get("title", f"A study of audio number {n}")
        extra = {k: v for k, v in overrides.items() if k != "title"}
        ws.arxiv.papers.append(make_paper(arxiv_id, START + timedelta(minutes=n), title=title, **extra))
    return ids


def chat_requests(llm: LLMServer) -> list:
    return [r for r in llm.requests if r.path.endswith("/chat/completions") and r.status == 200]


def report(ws: Workspace) -> dict:
    latest = sorted((ws.root / "state" / "reports").glob("*.json"))[-1]
    return json.loads(latest.read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("bad", "reason"),
    [(LOOPING, "loop"), (TOO_LONG, "too_long"), (ENDLESS_THINK, "think"), (ENGLISH, "language")],
    ids=["loop", "length", "unclosed-think", "english"],
)
def test_a_runaway_answer_is_stopped_early_and_the_retry_fills_the_paper(
    llm_ws: LLMWorkspace, bad: str, reason: str
) -> None:
    add_papers(llm_ws.ws, 1)
    llm_ws.llm.chunk_delay = 0.0005  # like a model generating: the stream is cut while it is produced
    llm_ws.script.bad["translation"] = [bad]
    result = llm_ws.ws.cli("-v", "generate", "--date", DAY)
    assert result.returncode == 0, result.stderr
    assert PENDING_LINE not in llm_ws.text() and bad[:30] not in llm_ws.text()
    assert f"answer rejected ({reason})" in result.stderr
    saved = re.search(r"1 stopped early \(up to (\d+) tokens saved\)", result.stdout)
    assert saved and int(saved.group(1)) > 3000, result.stdout  # of max_tokens 4096
    first = next(r for r in chat_requests(llm_ws.llm) if task(r.json) == "translation")
    events = len(bad) // 4 + 3  # what the whole answer would have taken
    assert first.events_sent < events / 2
    assert report(llm_ws.ws)["llm"]["early_stops"] == 1 and report(llm_ws.ws)["llm"]["rejected"] == {reason: 1}


def test_retries_change_the_request_and_quote_only_an_excerpt(llm_ws: LLMWorkspace) -> None:
    add_papers(llm_ws.ws, 1)
    llm_ws.ws.configure(llm={"retries": 3, "temperature": 0.6})
    llm_ws.script.bad["translation"] = [LOOPING, LOOPING, ENGLISH]
    assert llm_ws.generate().returncode == 0
    calls = [r.json for r in chat_requests(llm_ws.llm) if task(r.json) == "translation"]
    assert len(calls) == 4
    assert [c["temperature"] for c in calls] == [0.6, 0.3, 0.2, 0.2]
    assert [c.get("frequency_penalty") for c in calls] == [None, 0.3, 0.6, 0.6]
    assert [c.get("presence_penalty") for c in calls] == [None, 0.2, 0.4, 0.4]
    assert "repeat_penalty" not in json.dumps(calls)  # an OpenAI-style server: not sent
    assert len({json.dumps(c, sort_keys=True) for c in calls}) == 4  # never the same request twice
    for call in calls[1:]:
        assistant, correction = call["messages"][-2:]
        assert assistant["role"] == "assistant" and len(assistant["content"]) <= 202
        assert "不符合要求" in correction["content"]
    assert "重复" in calls[1]["messages"][-1]["content"] and "中文" in calls[3]["messages"][-1]["content"]


def test_llama_cpp_gets_repeat_penalty_on_a_retry(workspace: Workspace) -> None:
    add_papers(workspace, 1)
    with LLMServer(model_style="llamacpp") as server:
        answers = iter([LOOPING])
        server.set_responder(lambda request: next(answers, None) or good_answer(request))
        workspace.env["DEEPSEEK_API_KEY"] = KEY
        workspace.configure(llm={"provider": "auto", "base_url": server.base_url, "backoff": 0, "concurrency": 1})
        result = workspace.cli("generate", "--date", DAY)
    assert result.returncode == 0, result.stderr
    retry = next(r.json for r in server.requests if len(r.json["messages"]) == 4)
    assert retry["repeat_penalty"] == 1.15 and retry["frequency_penalty"] == 0.3
    assert "tokens" in result.stdout  # llama.cpp streams no usage: counted by the client


def test_a_model_that_only_loops_is_stopped_after_its_first_answers(llm_ws: LLMWorkspace) -> None:
    add_papers(llm_ws.ws, 8)
    llm_ws.script.good = lambda request: LOOPING
    llm_ws.ws.configure(llm={"retries": 3, "concurrency": 2})
    result = llm_ws.generate()
    assert result.returncode == 3, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        "the model deepseek-chat kept producing looping answers (6/6 calls); try a larger model or raise llm.max_tokens"
    )
    assert len(chat_requests(llm_ws.llm)) <= 6 + 1  # what was in flight when the verdict came may finish
    assert llm_ws.text().count(PENDING_LINE) == 8 and "本文提出" not in llm_ws.text()
    assert report(llm_ws.ws)["verdict"] == last and report(llm_ws.ws)["exit_code"] == 3


def test_the_verdict_threshold_is_configurable(llm_ws: LLMWorkspace) -> None:
    add_papers(llm_ws.ws, 3)
    llm_ws.script.good = lambda request: ENGLISH
    llm_ws.ws.configure(llm={"verdict_after": 2, "concurrency": 1})
    result = llm_ws.generate()
    assert result.returncode == 3
    assert "kept producing answers that are not in Chinese (2/2 calls)" in result.stderr
    assert len(chat_requests(llm_ws.llm)) == 2


def test_a_good_model_is_never_stopped_by_the_verdict(llm_ws: LLMWorkspace) -> None:
    """Its first answer is valid; many later ones are not: every paper still gets its retries."""
    add_papers(llm_ws.ws, 3)
    llm_ws.ws.configure(llm={"concurrency": 1, "retries": 2})
    first = iter([True])
    llm_ws.script.good = lambda request: good_answer(request) if next(first, False) else LOOPING
    result = llm_ws.generate()
    assert result.returncode == 3 and "kept producing" not in result.stderr + result.stdout
    assert len(chat_requests(llm_ws.llm)) == 1 + 5 * 3  # one good answer, then every job's three attempts


def test_rejections_name_the_real_problem_and_show_the_answer_with_v(llm_ws: LLMWorkspace) -> None:
    """An echoed prompt cut off at max_tokens is an echo, not a reason to be 'more concise'."""
    add_papers(llm_ws.ws, 1)
    llm_ws.ws.configure(llm={"concurrency": 1})
    llm_ws.llm.inject(Fault("length", content=ECHO * 4))
    result = llm_ws.ws.cli("-v", "generate", "--date", DAY)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stderr.splitlines() if "answer rejected" in line)
    assert "answer rejected (echo)" in line and "echoes the prompt" in line and "cut off" not in line
    assert "请把下面这篇 arXiv 论文的英文摘要翻译成简体中文" in line  # the first ~200 characters
    correction = chat_requests(llm_ws.llm)[1].json["messages"][-1]["content"]
    assert "复述提示词" in correction


def test_a_paper_that_keeps_failing_is_given_up_after_pending_max_runs(llm_ws: LLMWorkspace) -> None:
    add_papers(llm_ws.ws, 2)
    llm_ws.ws.configure(llm={"concurrency": 1, "retries": 0, "verdict_after": 0, "pending_max_runs": 2})
    english = "This paper is about audio and will not be translated by this model at all."
    llm_ws.script.good = lambda request: (
        english if "number 0" in json.dumps(request, ensure_ascii=False) else (good_answer(request))
    )
    first = llm_ws.generate()
    assert first.returncode == 3 and "1 pending" in first.stdout and "given up" not in first.stdout
    second = llm_ws.generate()
    assert second.returncode == 3, second.stdout
    assert f"1 given up (retry: generate --date {DAY} --retry-pending)" in second.stdout
    text = llm_ws.text()
    assert text.count(UNAVAILABLE_LINE) == 1 and PENDING_LINE not in text and english not in text
    assert report(llm_ws.ws)["papers"]["given_up"] == [{"id": "2601.00001", "day": DAY}]
    calls = len(chat_requests(llm_ws.llm))
    third = llm_ws.generate()  # given up: no longer retried, no longer pending
    assert third.returncode == 0 and len(chat_requests(llm_ws.llm)) == calls and "LLM 0 calls" in third.stdout
    llm_ws.script.good = good_answer
    retried = llm_ws.generate(DAY, "--retry-pending")
    assert retried.returncode == 0, retried.stdout
    assert UNAVAILABLE_LINE not in llm_ws.text() and PENDING_LINE not in llm_ws.text()
    with sqlite3.connect(llm_ws.ws.root / "state" / "digest.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM llm_failures").fetchone()[0] == 0


INVENTED = GOOD_EXPLAINER.replace("性能与更大的模型相当。", "词错误率降低了 37.5%，优于 WavLM-Large。")


def test_an_explainer_inventing_a_number_is_retried_with_the_numbers_named(llm_ws: LLMWorkspace) -> None:
    add_papers(llm_ws.ws, 1)
    llm_ws.script.bad["explainer"] = [INVENTED]
    result = llm_ws.generate()
    assert result.returncode == 0 and "unsupported" not in result.stdout
    assert GOOD_EXPLAINER in llm_ws.text() and "37.5" not in llm_ws.text()
    correction = chat_requests(llm_ws.llm)[-1].json["messages"][-1]["content"]
    assert "找不到：37.5%、WavLM-Large" in correction
    assert report(llm_ws.ws)["llm"]["ungrounded"] == {}


def test_an_explainer_still_inventing_after_the_retry_is_kept_and_reported(llm_ws: LLMWorkspace) -> None:
    add_papers(llm_ws.ws, 1)
    llm_ws.script.bad["explainer"] = [INVENTED, INVENTED]
    result = llm_ws.generate()
    assert result.returncode == 0, result.stderr
    assert "37.5%" in llm_ws.text() and llm_ws.script.calls["explainer"] == 2  # one retry, then kept
    assert "2 unsupported numbers/names kept in 1 explainers" in result.stdout
    assert report(llm_ws.ws)["llm"]["ungrounded"] == {"2601.00001v1": ["37.5%", "WavLM-Large"]}


ABSTRACT = "We improve speech enhancement with a neural vocoder, evaluated on 1,000 noisy utterances."


def test_the_glossary_reaches_the_prompts_and_a_translation_ignoring_it_is_retried_once(
    llm_ws: LLMWorkspace,
) -> None:
    add_papers(llm_ws.ws, 1, abstract=ABSTRACT)
    llm_ws.ws.configure(llm={"glossary": "glossary.tsv", "concurrency": 1})  # the packaged starter glossary
    good = "我们利用神经声码器改进语音增强，并在 1,000 条带噪语音上进行了评估，实验表明效果显著。"
    ignored = good.replace("语音增强", "语音改善")
    llm_ws.script.bad["translation"] = [ignored, ignored]
    llm_ws.script.good = lambda request: good if task(request) == "translation" else good_answer(request)
    result = llm_ws.generate()
    assert result.returncode == 0, result.stderr
    translations = [r.json for r in chat_requests(llm_ws.llm) if task(r.json) == "translation"]
    prompt = translations[0]["messages"][1]["content"]
    assert "术语表" in prompt and "- speech enhancement → 语音增强" in prompt and "- vocoder → 声码器" in prompt
    assert "music" not in prompt.split("术语表")[1]  # only the paper's own terms
    assert len(translations) == 2 and "speech enhancement → 语音增强" in translations[1]["messages"][-1]["content"]
    assert ignored in llm_ws.text()  # retried once, then kept
    assert report(llm_ws.ws)["llm"]["glossary_misses"] == {"2601.00001v1": ["speech enhancement"]}


def test_the_glossary_is_part_of_the_cache_key(llm_ws: LLMWorkspace) -> None:
    add_papers(llm_ws.ws, 1, abstract=ABSTRACT)
    translation = "我们利用神经声码器改进语音增强，并在 1,000 条带噪语音上进行了评估。"
    llm_ws.script.good = lambda request: translation if task(request) == "translation" else good_answer(request)
    assert llm_ws.generate().returncode == 0
    glossary = llm_ws.ws.root / "terms.yaml"
    glossary.write_text("vocoder: 声码器\n", encoding="utf-8")
    llm_ws.ws.configure(llm={"glossary": "terms.yaml"})
    with_glossary = llm_ws.generate()
    assert "LLM 2 calls, 0 cached" in with_glossary.stdout  # both texts asked again, with the term
    glossary.write_text("vocoder: 声码器\nspeech enhancement: 语音增强\n", encoding="utf-8")
    assert "LLM 2 calls, 0 cached" in llm_ws.generate().stdout


def test_a_glossary_that_cannot_be_read_is_a_config_error(llm_ws: LLMWorkspace) -> None:
    add_papers(llm_ws.ws, 1)
    llm_ws.ws.configure(llm={"glossary": "missing.tsv"})
    result = llm_ws.generate()
    assert result.returncode == 2 and "llm.glossary" in result.stderr and "Traceback" not in result.stderr


def test_a_key_echoed_by_the_provider_appears_nowhere(llm_ws: LLMWorkspace) -> None:
    add_papers(llm_ws.ws, 2)
    llm_ws.ws.configure(llm={"concurrency": 1, "retries": 1})
    llm_ws.llm.inject("echo_headers", "echo_headers", "echo_key")  # a 500 quoting the header (twice), then a 401
    result = llm_ws.ws.cli("-vv", "generate", "--date", DAY)
    assert result.returncode == 1, result.stdout
    assert "rejected the API key (HTTP 401): Incorrect API key provided: [redacted]" in result.stderr
    assert "[redacted]" in result.stderr.split("rejected the API key")[0]  # the 500's retry line, redacted
    store = (llm_ws.ws.root / "state" / "digest.sqlite3").read_bytes()
    reports = "".join(p.read_text() for p in (llm_ws.ws.root / "state" / "reports").glob("*.json"))
    assert KEY not in result.stdout + result.stderr + reports + llm_ws.text()
    assert KEY.encode() not in store and KEY[:12] not in result.stderr + reports
    assert "[redacted]" in report(llm_ws.ws)["error"]


def test_doctor_probes_the_model_and_says_plainly_whether_it_can_serve(llm_ws: LLMWorkspace) -> None:
    good = llm_ws.ws.cli("doctor")
    line = next(line for line in good.stdout.splitlines() if line.startswith("LLM"))
    assert re.search(r"translation valid \([\d.]+ s, \d+ tokens/s\); explainer valid", line), line
    assert line.endswith("this model can serve the digest") and good.returncode == 0
    llm_ws.script.good = lambda request: ECHO * 4
    bad = llm_ws.ws.cli("doctor")
    line = next(line for line in bad.stdout.splitlines() if line.startswith("LLM"))
    assert line.startswith("LLM        FAIL") and bad.returncode == 1
    assert "translation rejected (" in line and "echo, stopped early: '请把下面这篇 arXiv" in line
    assert line.endswith("this model cannot serve the digest; try a larger one")
    assert KEY not in good.stdout + bad.stdout
