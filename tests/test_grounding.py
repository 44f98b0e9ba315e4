"""Grounding: numbers and names in a model's Chinese text must be in what it read.

The recorded pair: the reference paper page of 2501.11999 holds a real model's Chinese rendering of
the paper's real English abstract (53.51% BD-Rate, 0.26 BD-VisQol, 0.44 BD-PESQ)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arxiv_digest.grounding import SourceText, unsupported

PAGE = (Path(__file__).parent / "fixtures" / "reference" / "paper-page-2501.11999.md").read_text(encoding="utf-8")
QUOTES = re.findall(r"^> (.+)$", PAGE, re.MULTILINE)
ENGLISH, CHINESE = QUOTES[-1], QUOTES[-2]
SOURCE = SourceText(ENGLISH)


def test_the_recorded_answer_is_grounded_in_its_abstract() -> None:
    assert "53.51%" in CHINESE and "BD-PESQ" in CHINESE
    assert unsupported(CHINESE, SOURCE) == []


@pytest.mark.parametrize(
    ("change", "flagged"),
    [
        (("53.51%", "63.5%"), ["63.5%"]),
        (("0.26 BD-VisQol", "0.31 BD-VisQol"), ["0.31"]),
        (("BD-PESQ", "BD-POLQA"), ["BD-POLQA"]),
        (("实验结果显示", "在 LibriSpeech 上的实验结果显示"), ["LibriSpeech"]),
        (("实验结果显示", "2023 年的实验结果显示"), ["2023"]),
    ],
)
def test_an_invented_number_or_name_is_flagged(change: tuple[str, str], flagged: list[str]) -> None:
    assert unsupported(CHINESE.replace(*change), SOURCE) == flagged


@pytest.mark.parametrize(
    ("source", "answer"),
    [
        ("accuracy of 12.3%", "准确率为 12.3 %"),
        ("accuracy of 12.3 %", "准确率为 12.3%"),
        ("an error rate of 0.123", "错误率为 12.3%"),
        ("1,000 hours of speech", "1000 小时语音"),
        ("1000 hours of speech", "1,000 小时语音"),
        ("10k utterances", "10,000 条语音"),
        ("12,000 clips", "1.2万段音频"),
        ("improves by 12.37%", "提升约 12.4%"),
        ("improves by 12.37%", "提升约 12%"),
        ("a HiFi-GAN vocoder", "HiFiGAN 声码器"),
        ("trained on LibriTTS-R", "在 libritts-r 上训练"),
        ("three datasets", "在 3 个数据集上"),
        ("wav2vec 2.0 features", "wav2vec 2.0 特征"),
    ],
)
def test_formatting_differences_are_allowed(source: str, answer: str) -> None:
    assert unsupported(answer, SourceText(source)) == []


def test_section_markers_small_counts_and_generic_abbreviations_are_not_checked() -> None:
    answer = "1)  \n- **背景**：ASR 与 TTS 系统……\n\n2)  \n- 两个阶段\n\n3)  \n- 第 3 步"
    assert unsupported(answer, SourceText("We propose a method.")) == []


@given(st.integers(min_value=10, max_value=10**9), st.sampled_from(["", ",", " %"]))
def test_every_number_of_the_source_is_supported_however_grouped(value: int, style: str) -> None:
    written = f"{value:,}" if style == "," else f"{value}{style.strip()}"
    assert unsupported(f"共有 {written} 条", SourceText(f"There are {value}{style.replace(',', '')} items.")) == []
