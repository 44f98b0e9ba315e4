"""The search index on disk: what a query finds and in which order, prefixes, phrases, CJK bigrams,
AND semantics, and that any sequence of incremental builds leaves the same index as a full build."""

from __future__ import annotations

import gzip
import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arxiv_digest import search_bulk, search_index, search_segments, search_tokens
from arxiv_digest.search_docs import SearchDoc
from arxiv_digest.search_index import SearchIndexWriter
from arxiv_digest.search_postings import Run, decode_postings, encode_postings, impact
from arxiv_digest.search_query import Searcher, folder_fetch, parse
from arxiv_digest.search_segments import SegmentInfo, read_segment
from arxiv_digest.search_text import TOKEN, field_terms, fold, is_cjk
from arxiv_digest.search_tokens import index_papers

DAY = date(2026, 1, 10)


def paper(n: int, day: date = DAY, page: str = "", **fields: object) -> SearchDoc:
    page = page or f"{day:%Y/%m/%d}/arxiv.html"
    values: dict = {"title": f"Paper {n}"} | fields
    return SearchDoc(url=f"{page}#p{n}", date=day, arxiv_id=f"2601.{n:05d}", **values)


def build(folder: Path, docs: list[SearchDoc], **options: object) -> Searcher:
    writer = SearchIndexWriter(folder / "search", folder / "state", **options)  # type: ignore[arg-type]
    for doc in docs:
        writer.add(doc)
    writer.finish()
    writer.close()
    return Searcher(folder_fetch(folder / "search"))


def titles(searcher: Searcher, query: str) -> list[str]:
    return [r["t"] for r in searcher.search(query, shown=50).records]


CORPUS = [
    paper(1, title="Speech enhancement with diffusion", translation="基于扩散模型的语音增强方法，引用 Zhang。"),
    paper(2, title="Diffusion for music", translation="音乐生成，同时讨论语音与增强。", authors=("Ana Speech",)),
    paper(3, title="A survey", translation="本文综述语音增强与分离。", authors=("Wei Wang", "Li Zhang")),
    paper(4, DAY - timedelta(days=1), title="Enhancement of speech codecs", translation="编解码器研究。"),
    paper(5, DAY - timedelta(days=2), title="Spectrogram transformers", authors=("Jun Wang",)),
    paper(6, DAY - timedelta(days=2), title="Speaker verification", translation="说话人验证，用于 codecs。"),
    paper(7, DAY - timedelta(days=3), title="Twin study"),
    paper(8, DAY - timedelta(days=1), title="Twin study"),
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Searcher:
    return build(tmp_path_factory.mktemp("corpus"), CORPUS)


def test_records_round_trip(corpus: Searcher) -> None:
    result = corpus.search("survey")
    assert result.count == 1
    assert result.records == [
        {
            "u": "2026/01/10/arxiv.html#p3",
            "d": "2026-01-10",
            "t": "A survey",
            "a": ["Wei Wang", "Li Zhang"],
            "z": "本文综述语音增强与分离。",
            "i": "2601.00003",
        }
    ]
    assert result.rounds == 3  # meta, dictionary shards, records (no postings file on so small an index)


def test_title_and_author_matches_rank_above_text_matches(corpus: Searcher) -> None:
    assert titles(corpus, "codecs") == ["Enhancement of speech codecs", "Speaker verification"]
    assert titles(corpus, "zhang") == ["A survey", "Speech enhancement with diffusion"]
    twins = corpus.search("twin")
    newer_first = ["2026/01/09/arxiv.html#p8", "2026/01/07/arxiv.html#p7"]  # a tie in score
    assert [r["u"] for r in twins.records] == newer_first


def test_every_word_must_match(corpus: Searcher) -> None:
    assert titles(corpus, "codecs enhancement ") == ["Enhancement of speech codecs"]
    assert titles(corpus, "speech diffusion ") == ["Speech enhancement with diffusion", "Diffusion for music"]
    assert titles(corpus, "speech nothing ") == []
    assert corpus.search("nothing").count == 0


def test_the_last_word_is_a_prefix_while_typing(corpus: Searcher) -> None:
    assert set(titles(corpus, "spe")) == {
        "Speech enhancement with diffusion",
        "Diffusion for music",  # its author is called Speech
        "Enhancement of speech codecs",
        "Spectrogram transformers",
        "Speaker verification",
    }
    assert titles(corpus, "spe ") == []  # a finished word is not a prefix
    assert titles(corpus, "speech enh") == ["Speech enhancement with diffusion", "Enhancement of speech codecs"]
    assert titles(corpus, "sp") == []  # too short to complete


def test_quoted_phrases_match_adjacent_words(corpus: Searcher) -> None:
    assert titles(corpus, '"speech enhancement"') == ["Speech enhancement with diffusion"]
    assert titles(corpus, '"enhancement speech"') == []
    assert titles(corpus, '"wei wang"') == ["A survey"]
    assert titles(corpus, '"wang li"') == []  # no pair across two authors' names


def test_chinese_words_are_found_by_bigrams(corpus: Searcher) -> None:
    assert titles(corpus, "语音增强") == ["Speech enhancement with diffusion", "A survey"]  # not 语音与增强
    assert titles(corpus, "说话人") == ["Speaker verification"]
    assert titles(corpus, "论文") == []
    assert set(titles(corpus, "音")) == {"Speech enhancement with diffusion", "Diffusion for music", "A survey"}


def test_parse_is_what_search_js_does() -> None:
    clauses = parse('Spéech "diffusion model" 语音增强 enh')
    assert [(c.terms, c.prefix) for c in clauses] == [
        (("speech",), ""),
        (("diffusion model",), ""),
        (("语音",), ""),
        (("音增",), ""),
        (("增强",), ""),
        ((), "enh"),
    ]


def dump(folder: Path) -> dict[str, dict[int, int]]:
    """Every posting of the index, whatever its segments: term -> {paper id: impact}."""
    meta = json.loads(gzip.decompress((folder / "meta.gz").read_bytes()))
    postings: dict[str, dict[int, int]] = {}
    for segment in meta["segments"]:
        files = len(list((folder / segment["name"]).glob("p*.gz")))
        info = SegmentInfo(segment["name"], tuple(segment["bounds"]), files, frozenset())
        for run in read_segment(folder, info):
            starts = np.cumsum(run.df) - run.df
            for term, start, df in zip(run.terms, starts, run.df, strict=True):
                found = dict(
                    zip(run.ids[start : start + df].tolist(), run.impacts[start : start + df].tolist(), strict=True)
                )
                assert not found.keys() & postings.get(term, {}).keys(), f"{term} twice"
                postings.setdefault(term, {}).update(found)
    return postings


def records(folder: Path) -> dict[str, list]:
    return {str(p.relative_to(folder)): json.loads(gzip.decompress(p.read_bytes())) for p in folder.glob("r/*.gz")}


def days_of_posts(count: int) -> list[list[SearchDoc]]:
    """``count`` daily posts of three papers; every fifth paper shares words with others."""
    first = date(2025, 1, 1)
    posts = []
    for n in range(count):
        day = first + timedelta(days=n)
        posts.append(
            [
                paper(
                    n * 10 + k,
                    day,
                    title=f"Topic{n % 7} speech model {k}",
                    translation=f"第{n}天的语音论文{'增强' if k else '分离'}。",
                    authors=(f"Author{n % 5}", "Common Name"),
                )
                for k in range(3)
            ]
        )
    return posts


QUERIES = ["speech", "topic3 speech", '"speech model"', "spe", "common", "语音增强", "论文分离", "author2 model", "增"]


def test_incremental_builds_give_the_full_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    posts = days_of_posts(40)
    spilled: list[Path] = []
    monkeypatch.setattr(search_segments, "FLUSH_PAPERS", 2)  # old days re-indexed go through spills

    def spill(run: Run, path: Path, real=search_segments.spill) -> None:
        spilled.append(path)
        real(run, path)

    monkeypatch.setattr(search_segments, "spill", spill)
    # incremental: a post a build, with edits to recent and old posts, a removal and a second page on a day
    state, folder = tmp_path / "inc", tmp_path / "inc" / "search"
    final: dict[str, list[SearchDoc]] = {}
    for n, post in enumerate(posts):
        writer = SearchIndexWriter(folder, state / "state", hot_days=3)
        page = post[0].page
        writer_docs = post
        if n % 6 == 5:  # a late paper added to yesterday's post
            previous = posts[n - 1]
            extra = paper(9000 + n, previous[0].date, title="Late speech paper", translation="迟到的论文。")
            final[previous[0].page] = [*final[previous[0].page], extra]
            for doc in final[previous[0].page]:
                writer.add(doc)
        if n == 30:  # an old post edited
            old = posts[3]
            final[old[0].page] = [old[0], paper(9999, old[0].date, title="Edited old speech", translation="修改。")]
            for doc in final[old[0].page]:
                writer.add(doc)
        if n == 33:  # a post removed
            writer.remove(posts[10][0].page)
            del final[posts[10][0].page]
        if n == 35:  # a second page on an existing day, sorting before its post
            extra = paper(8888, posts[20][0].date, page="2025/01/21/aaa.html", title="Another speech page")
            final[extra.page] = [extra]
            writer.add(extra)
        for doc in writer_docs:
            writer.add(doc)
        final[page] = writer_docs
        writer.finish()
        writer.close()
    full = tmp_path / "full"
    monkeypatch.setattr(search_index, "BATCH_PAPERS", 7)  # the full build gathers terms from many batches
    build(full, [doc for docs in final.values() for doc in docs], hot_days=3)

    # as a site build's workers do it: whole days indexed apart, a few at a time, and gathered in order
    gathered = tmp_path / "gathered"
    writer = SearchIndexWriter(gathered / "search", gathered / "state", hot_days=3)
    by_day: dict[int, dict[str, list[SearchDoc]]] = {}
    for page, docs in final.items():
        by_day.setdefault(docs[0].day, {})[page] = docs
    days = sorted(by_day)
    cutoff = writer.hot_cutoff(days[-1])
    for start in range(0, len(days), 4):
        chunk = {page: docs for day in days[start : start + 4] for page, docs in by_day[day].items()}
        writer.add_days(search_index.index_days(gathered / "search", chunk, cutoff))
    monkeypatch.setattr(search_bulk, "CHUNK_BYTES", 64)  # its postings gathered in small pieces
    monkeypatch.setattr(search_bulk, "RUN_GAP", 0)  # read in as many runs as they are apart
    writer.finish()
    writer.close()

    assert dump(folder) == dump(full / "search") == dump(gathered / "search")
    assert records(folder) == records(full / "search") == records(gathered / "search")
    full_files, gathered_files = (
        {str(f.relative_to(d)): f.read_bytes() for f in d.rglob("*.gz")} for d in (full / "search", gathered / "search")
    )
    assert full_files == gathered_files  # two full builds: the same files, byte for byte
    incremental, complete = Searcher(folder_fetch(folder)), Searcher(folder_fetch(full / "search"))
    for query in QUERIES:
        got, expected = incremental.search(query, shown=30), complete.search(query, shown=30)
        assert (got.count, got.ids, got.records) == (expected.count, expected.ids, expected.records), query
    meta = json.loads(gzip.decompress((folder / "meta.gz").read_bytes()))
    assert len(meta["segments"]) > 2  # the incremental side did merge and keep several segments
    assert spilled  # and it spilled papers of old days to disk before writing their segment


def test_re_adding_unchanged_pages_writes_no_postings(tmp_path: Path) -> None:
    posts = [doc for post in days_of_posts(5) for doc in post]
    build(tmp_path, posts)
    writer = SearchIndexWriter(tmp_path / "search", tmp_path / "state")
    assert not writer.fresh
    for doc in posts:
        writer.add(doc)
    update = writer.finish()
    assert update.days_indexed == 0
    assert update.written == update.removed == ()


def test_a_state_that_does_not_match_the_folder_starts_afresh(tmp_path: Path) -> None:
    build(tmp_path, CORPUS)
    (tmp_path / "search" / "meta.gz").unlink()
    writer = SearchIndexWriter(tmp_path / "search", tmp_path / "state")
    assert writer.fresh
    writer.add(CORPUS[0])
    update = writer.finish()
    assert update.papers == 1
    assert not list((tmp_path / "search" / "r").glob("*.gz"))[1:]  # the old records were removed


# ---------------------------------------------------------------------------------------------------
# The numpy tokeniser against the plain reference, and the postings encoding

TEXT = st.text(
    alphabet=st.sampled_from(
        [
            *"ab cdÉé-_.,\n语音增强的模型ｆＡ①ﬁΣσİ가ᄀ하ᅡ々〇",
            *("\u0301", "\u0345", "\u05b4", "\u0591", "\u3099", "\u309b", "\u1e9e", "\u2126", "\uff9e", "\u30ff"),
            *("\U0001d49c", "\U00020000", "\uffe0"),
        ]
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.tuples(st.sampled_from([0.5, 1.0, 4.0]), TEXT), min_size=1, max_size=3), max_size=4))
def test_numpy_terms_match_the_reference(papers: list[list[tuple[float, str]]]) -> None:
    run = index_papers([(i + 1, fields) for i, fields in enumerate(papers)])
    got = {
        (term, int(pid)): int(imp)
        for term, start, df in zip(run.terms, np.cumsum(run.df) - run.df, run.df, strict=True)
        for pid, imp in zip(run.ids[start : start + df], run.impacts[start : start + df], strict=True)
    }
    expected = {}
    for pid, fields in enumerate(papers, 1):
        weights: dict[str, float] = {}
        length = 0.0
        for weight, text in fields:
            counts, size = field_terms(text)
            length += weight * size
            for term, count in counts.items():
                weights[term] = weights.get(term, 0) + weight * count
        for term, weight in weights.items():
            expected[(term, pid)] = int(impact(np.array([weight]), np.array([length]))[0])
    assert got == expected
    assert run.terms == sorted(run.terms, key=lambda t: t.encode("utf-16-be"))


@given(st.lists(st.lists(st.integers(0, 2**27), min_size=1, max_size=30, unique=True), max_size=10))
def test_postings_encoding_round_trips(lists: list[list[int]]) -> None:
    ids = [sorted(x) for x in lists]
    run = Run(
        [f"t{i:03d}" for i in range(len(ids))],
        np.array([len(x) for x in ids], np.int64),
        np.array([i for x in ids for i in x], np.uint32),
        np.array([(i % 32) + 1 for x in ids for i in x], np.uint8),
    )
    buffer, offsets, gap_lens = encode_postings(run.df, run.ids, run.impacts)
    back = decode_postings(run.terms, run.df, buffer, offsets, gap_lens)
    assert back.ids.tolist() == run.ids.tolist() and back.impacts.tolist() == run.impacts.tolist()


def _leb128(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


@given(
    st.lists(
        st.tuples(st.integers(0, 2**32 - 1), st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=12, unique=True)),
        max_size=12,
    ),
    st.booleans(),
)
def test_postings_encoding_is_the_format_search_js_reads(terms: list[tuple[int, list[int]]], with_base: bool) -> None:
    """Byte for byte, against LEB128 written out one value at a time: per term its gaps (the first
    from its base), then one impact byte per posting; over the whole 32-bit range of ids."""
    lists = [sorted(ids) for _, ids in terms]
    bases = [min(base, ids[0]) if with_base else 0 for (base, _), ids in zip(terms, lists, strict=True)]
    expected, offsets, gap_lens = b"", [], []
    for ids, base in zip(lists, bases, strict=True):
        gap_bytes = b"".join(_leb128(b - a) for a, b in zip([base, *ids[:-1]], ids, strict=True))
        offsets.append(len(expected))
        gap_lens.append(len(gap_bytes))
        expected += gap_bytes + bytes((i % 32) + 1 for i in ids)
    got = encode_postings(
        np.array([len(ids) for ids in lists], np.int64),
        np.array([i for ids in lists for i in ids], np.uint32),
        np.array([(i % 32) + 1 for ids in lists for i in ids], np.uint8),
        np.array(bases, np.int64) if with_base else None,
    )
    assert (got[0], got[1].tolist(), got[2].tolist()) == (expected, offsets, gap_lens)


def test_fold_matches_search_js_steps() -> None:
    assert fold("Ｓｐéech ﬁne Ⅻ") == "speech fine xii"
    assert fold("语音，增强（模型）") == "语音 增强 模型 "


def test_the_folds_known_in_advance_are_the_folds_learned() -> None:
    """ASCII and the CJK ideographs are filled in before any text is seen; each must be what
    ``search_text.fold`` gives."""
    table = search_tokens._CharTable()
    known = np.flatnonzero(table.fold[1:]) + 1
    assert len(known) > 27_000
    assert [chr(c) for c in known if fold(chr(c)) != chr(int(table.fold[c]))] == []


def test_the_kinds_learned_on_first_sight_are_what_the_tokeniser_pattern_says() -> None:
    """Every BMP character's kind, learned as text shows it, against ``search_text.TOKEN``: a CJK
    run, a run of other letters and digits (not ``_``), or neither."""
    table = search_tokens._CharTable()
    kinds = table.kinds(np.arange(0x10000))
    every = "".join(map(chr, range(0x10000)))
    expected = np.zeros(0x10000, np.uint8)
    for match in TOKEN.finditer(every):
        expected[match.start() : match.end()] = 2 if is_cjk(match[0][0]) else 1
    assert np.flatnonzero(kinds != expected).tolist() == []
    assert table.kinds(np.array([ord("a"), 0x4E00, ord("_")])).tolist() == [1, 2, 0]
