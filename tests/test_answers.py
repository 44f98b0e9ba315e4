"""Judging answers: the order of the checks, the bounds, the stream watch, loops, the verdict, the
glossary. Recorded answers of Gemma 3 270M (a model that cannot do the job) are in
tests/fixtures/llm/gemma3_270m_answers.json."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arxiv_digest.earlystop import find_loop
from arxiv_digest.errors import ConfigError
from arxiv_digest.glossary import load_glossary, locate, missing_terms
from arxiv_digest.llm import Completion
from arxiv_digest.models import Author, Paper
from arxiv_digest.summarize import (
    Bounds,
    Expectation,
    InvalidAnswer,
    Job,
    check_explainer,
    check_translation,
    judge,
    retry_settings,
    watch_answer,
)
from arxiv_digest.templating import packaged_dir
from arxiv_digest.verdict import ModelUnfit, Verdict

from .llm_script import GOOD_EXPLAINER

RECORDED = json.loads((Path(__file__).parent / "fixtures" / "llm" / "gemma3_270m_answers.json").read_text("utf-8"))
ABSTRACT = RECORDED["abstract"]
WHEN = datetime(2025, 1, 21, tzinfo=UTC)
PAPER = Paper(
    "2501.11999", 1, "", "Rate-Aware Learned Speech Compression", ABSTRACT, (Author("A"),), WHEN, WHEN, "eess.AS",
    ("eess.AS",), "", "",
)  # fmt: skip
GOOD_TRANSLATION = (
    (Path(__file__).parent / "fixtures" / "reference" / "paper-page-2501.11999.md")
    .read_text(encoding="utf-8")
    .split("\n> ")[2]
    .strip()
)


def job(kind: str, prompt: str) -> Job:
    check = partial(check_translation, paper=PAPER) if kind == "translation" else check_explainer
    messages = [{"role": "system", "content": "你是学术翻译。"}, {"role": "user", "content": prompt}]
    return Job(kind, PAPER, "key", "m", messages, check, "abstract")


def verdict_of(kind: str, content: str, finish: str = "stop", prompt: str | None = None) -> str:
    """The reason an answer is rejected for, or 'ok'."""
    task = job(kind, prompt if prompt is not None else RECORDED["prompts"][kind])
    try:
        judge(Completion(content, 1, 1, finish, "m"), task, Expectation.of(task))
    except InvalidAnswer as exc:
        return exc.reason
    return "ok"


@pytest.mark.parametrize("answer", RECORDED["answers"], ids=lambda a: f"{a['task']}-t{a['temperature']}")
def test_every_recorded_gemma_answer_is_rejected_for_what_it_is_not_for_its_length(answer: dict) -> None:
    """All of them ran into max_tokens; the reason must still name the real problem."""
    assert answer["finish_reason"] == "length"
    reason = verdict_of(answer["task"], answer["content"], "length")
    assert reason in ("echo", "loop", "language"), reason


@pytest.mark.parametrize("answer", RECORDED["answers"], ids=lambda a: f"{a['task']}-t{a['temperature']}")
def test_a_recorded_gemma_answer_is_stopped_early_in_the_stream(answer: dict) -> None:
    task = job(answer["task"], RECORDED["prompts"][answer["task"]])
    expect = Expectation.of(task)
    content = answer["content"]
    stopped_at = next(n for n in range(48, len(content) + 48, 48) if watch_answer(content[:n], expect) is not None)
    assert stopped_at < len(content)  # before max_tokens


def test_a_good_answer_passes_and_is_never_stopped() -> None:
    assert verdict_of("translation", GOOD_TRANSLATION) == "ok"
    assert verdict_of("explainer", GOOD_EXPLAINER) == "ok"
    for kind, text in (("translation", GOOD_TRANSLATION), ("explainer", GOOD_EXPLAINER)):
        expect = Expectation.of(job(kind, RECORDED["prompts"][kind]))
        assert all(watch_answer(text[:n], expect) is None for n in range(1, len(text) + 1))


@pytest.mark.parametrize(
    ("content", "finish", "reason"),
    [
        ("", "stop", "empty"),
        ("<think>" + "让我想想。" * 3000, "length", "think"),
        ("抱歉，我无法完成这个请求。", "stop", "refusal"),
        (" ".join(f"Sentence number {n} of this answer is in English." for n in range(8)), "length", "language"),
        ("本文提出了一种新方法。" * 10, "length", "loop"),
        (GOOD_TRANSLATION[:150], "length", "truncated"),
        (GOOD_TRANSLATION + "".join(f"补充说明第{n}点。" for n in range(500)), "stop", "too_long"),
        ("```\n" + GOOD_TRANSLATION + "\n", "stop", "format"),
        ("好的，以下是译文：" + GOOD_TRANSLATION, "stop", "format"),
    ],
)
def test_content_is_judged_before_size_and_size_before_format(content: str, finish: str, reason: str) -> None:
    assert verdict_of("translation", content, finish) == reason


def test_bounds_come_from_the_input() -> None:
    short, long = Bounds.for_task("translation", PAPER, 0), Bounds.for_task("explainer", PAPER, 60000)
    assert short.max_chars == 2 * len(ABSTRACT) + 500
    assert long.max_chars == 12000 and Bounds.for_task("explainer", PAPER, 1000).max_chars == 4000
    three_megabytes = "1)  \n" + "".join(f"第{n}句讲的是另一件事。" for n in range(250_000))
    assert verdict_of("explainer", three_megabytes) == "too_long"


@given(st.text(alphabet="本文提出一种新方法实验结果表明有效。，", min_size=1, max_size=30))
def test_a_unit_repeated_to_the_end_is_a_loop(unit: str) -> None:
    assert find_loop("引言部分。" + unit * (200 // len(unit) + 4)) is not None


def test_real_text_is_not_a_loop() -> None:
    assert find_loop(GOOD_TRANSLATION) is None and find_loop(GOOD_EXPLAINER) is None
    assert find_loop("- a\n- b\n- c\n- d\n- e") is None  # short repeated markers are fine


def test_retries_after_runaway_answers_cool_down_and_penalise_repetition() -> None:
    assert retry_settings(0, 0.3) == (0.3, {})
    settings = [retry_settings(n, 0.3) for n in (1, 2, 3)]
    temperatures = [t for t, _ in settings]
    assert temperatures == sorted(temperatures, reverse=True) and temperatures[0] < 0.3
    assert [o["frequency_penalty"] for _, o in settings] == [0.3, 0.6, 0.9]
    assert [o["repeat_penalty"] for _, o in settings] == [1.15, 1.25, 1.35]


def test_the_verdict_needs_every_one_of_the_first_answers_to_fail() -> None:
    verdict = Verdict(3)
    for reason in ("loop", "loop", "truncated"):
        verdict.check("small")
        verdict.record("small", reason)
    with pytest.raises(ModelUnfit, match=r"kept producing looping answers \(answers cut off .* 1 besides\) \(2/3"):
        verdict.check("small")
    verdict.record("big", None)  # one good answer first: never judged, whatever follows
    for _ in range(10):
        verdict.record("big", "loop")
    verdict.check("big")
    assert [u.model for u in verdict.unfit()] == ["small"]
    off = Verdict(0)
    for _ in range(10):
        off.record("m", "loop")
    off.check("m")


def test_the_starter_glossary_loads_and_matches_phrases_and_plurals() -> None:
    glossary = load_glossary(packaged_dir() / "glossary.tsv")
    terms = glossary.occurring("Neural vocoders for speech-enhancement and zero-shot TTS.")
    found = {t.english for t in terms}
    assert {"vocoder", "neural vocoder", "speech enhancement", "zero-shot"} <= found and "encoder" not in found
    assert [t.english for t in missing_terms("我们提出一种神经声码器用于语音强化。", terms)] == [
        "speech enhancement",
        "zero-shot",
    ]


def test_a_glossary_is_yaml_or_tsv_and_its_errors_say_where(tmp_path: Path) -> None:
    yaml_file, tsv_file, bad = tmp_path / "g.yaml", tmp_path / "g.tsv", tmp_path / "bad.tsv"
    yaml_file.write_text("vocoder: 声码器|声码器模型\n", encoding="utf-8")
    tsv_file.write_text("# comment\nvocoder\t声码器|声码器模型\n", encoding="utf-8")
    bad.write_text("vocoder 声码器\n", encoding="utf-8")
    assert load_glossary(yaml_file) == load_glossary(tsv_file)
    assert load_glossary(yaml_file).terms[0].chinese == ("声码器", "声码器模型")
    with pytest.raises(ConfigError, match="line 1: expected 'English term<TAB>Chinese term'"):
        load_glossary(bad)
    assert locate(Path("/nowhere/glossary.tsv"), tmp_path) == packaged_dir() / "glossary.tsv"
    with pytest.raises(ConfigError, match=r"llm\.glossary"):
        locate(tmp_path / "none.tsv", tmp_path)
