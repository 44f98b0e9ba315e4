"""``SwapWriter``: site files rewritten through a recycled spare must behave, for every reader and
every other name of a file, exactly as a rename over the old file does."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arxiv_digest.files import FileWriteError, SwapWriter

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="swapping needs renameat2")


def _files(tmp_path: Path, *names: str) -> list[Path]:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    for name in names:
        (site / name).write_text(f"old {name}")
    return [site / name for name in names]


def test_a_rewritten_file_swaps_in_the_spare_and_its_old_file_is_the_next_spare(tmp_path) -> None:
    first, second = _files(tmp_path, "a.html", "b.html")
    writer = SwapWriter(tmp_path / "spares")
    old_first = first.stat().st_ino
    writer.write(first, "new a")
    writer.write(second, b"new b")
    assert (first.read_text(), second.read_text()) == ("new a", "new b")
    assert second.stat().st_ino == old_first  # a's old file, rewritten: nothing made or freed
    assert len(list((tmp_path / "spares").iterdir())) == 1
    writer.sweep()
    assert list((tmp_path / "spares").iterdir()) == []


def test_each_file_keeps_its_own_mode_and_a_new_one_gets_the_umask_mode(tmp_path) -> None:
    first, second = _files(tmp_path, "a.html", "b.html")
    first.chmod(0o600)
    second.chmod(0o644)
    writer = SwapWriter(tmp_path / "spares")
    old = os.umask(0o027)
    try:
        writer.write(first, "new a")
        writer.write(second, "new b")
        writer.write(tmp_path / "site" / "c.html", "new c")
    finally:
        os.umask(old)
    modes = [stat.S_IMODE(p.stat().st_mode) for p in (first, second, tmp_path / "site" / "c.html")]
    assert modes == [0o600, 0o644, 0o640]


def test_an_old_file_with_another_name_is_never_rewritten(tmp_path) -> None:
    first, second = _files(tmp_path, "a.html", "b.html")
    backup = tmp_path / "backup-a.html"
    os.link(first, backup)
    writer = SwapWriter(tmp_path / "spares")
    writer.write(first, "new a")
    writer.write(second, "new b")
    assert (first.read_text(), second.read_text(), backup.read_text()) == ("new a", "new b", "old a.html")


def test_a_reader_of_an_old_file_reads_it_whole_after_later_writes(tmp_path) -> None:
    first, second, third = _files(tmp_path, "a.html", "b.html", "c.html")
    writer = SwapWriter(tmp_path / "spares")
    reader = os.open(first, os.O_RDONLY)  # unbuffered: each read is of the file as it is then
    try:
        writer.write(first, "new a")
        writer.write(second, "new b")
        writer.write(third, "new c")
        assert os.pread(reader, 100, 0) == b"old a.html"
    finally:
        os.close(reader)
    assert [p.read_text() for p in (first, second, third)] == ["new a", "new b", "new c"]


def test_a_symlink_is_replaced_by_a_file_and_what_it_pointed_to_is_untouched(tmp_path) -> None:
    (first,) = _files(tmp_path, "a.html")
    elsewhere = tmp_path / "elsewhere.html"
    elsewhere.write_text("keep me")
    link = tmp_path / "site" / "link.html"
    link.symlink_to(elsewhere)
    writer = SwapWriter(tmp_path / "spares")
    writer.write(first, "new a")
    writer.write(link, "new link")
    assert not link.is_symlink() and link.read_text() == "new link"
    assert elsewhere.read_text() == "keep me"


def test_a_folder_where_a_file_should_be_is_an_error_and_stays(tmp_path) -> None:
    (first,) = _files(tmp_path, "a.html")
    folder = tmp_path / "site" / "b.html"
    (folder / "inside").mkdir(parents=True)
    writer = SwapWriter(tmp_path / "spares")
    writer.write(first, "new a")
    with pytest.raises(FileWriteError, match=r"b\.html"):
        writer.write(folder, "new b")
    assert (folder / "inside").is_dir()
    assert list((tmp_path / "spares").glob("**/inside")) == []


def test_a_forked_process_makes_its_own_spare(tmp_path) -> None:
    first, second, third, fourth = _files(tmp_path, "a.html", "b.html", "c.html", "d.html")
    writer = SwapWriter(tmp_path / "spares")
    writer.write(first, "new a")
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        writer.write(second, "new b")
        writer.write(third, "new c")
        os._exit(0)
    assert os.waitpid(child, 0)[1] == 0
    writer.write(fourth, "new d")
    assert [p.read_text() for p in (first, second, third, fourth)] == ["new a", "new b", "new c", "new d"]
    assert len(list((tmp_path / "spares").iterdir())) == 2


def test_spares_on_another_file_system_fall_back_to_renaming(tmp_path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs a second file system")
    first, second = _files(tmp_path, "a.html", "b.html")
    spares = shm / f"swap-writer-test-{os.getpid()}"
    writer = SwapWriter(spares)
    try:
        writer.write(first, "new a")
        writer.write(second, "new b")
    finally:
        writer.sweep()
        spares.rmdir()
    assert (first.read_text(), second.read_text()) == ("new a", "new b")


_NAMES = ("a", "b", "c")
_STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.sampled_from(_NAMES), st.binary(max_size=40)),
        st.tuples(st.just("link"), st.sampled_from(_NAMES), st.none()),
        st.tuples(st.just("open"), st.sampled_from(_NAMES), st.none()),
        st.tuples(st.just("close"), st.sampled_from(_NAMES), st.none()),
    ),
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(steps=_STEPS)
def test_every_name_and_reader_sees_what_a_rename_would_have_shown(tmp_path_factory, steps) -> None:
    """Random writes, new hard links and readers opened and closed: each path holds its last write,
    each other name what the path held when it was linked, each reader what it opened."""
    root = tmp_path_factory.mktemp("swap")
    paths = {name: root / "site" / f"{name}.html" for name in _NAMES}
    paths["a"].parent.mkdir()
    writer = SwapWriter(root / "spares")
    now: dict[str, bytes] = {}
    links: list[tuple[Path, bytes]] = []
    readers: dict[str, list[tuple[int, bytes]]] = {name: [] for name in _NAMES}
    try:
        for action, name, data in steps:
            path = paths[name]
            if action == "write":
                writer.write(path, data)
                now[name] = data
            elif name in now and action == "link":
                alias = root / f"link{len(links)}"
                os.link(path, alias)
                links.append((alias, now[name]))
            elif name in now and action == "open":
                readers[name].append((os.open(path, os.O_RDONLY), now[name]))
            elif readers[name] and action == "close":
                fd, expected = readers[name].pop(0)
                assert os.pread(fd, 100, 0) == expected
                os.close(fd)
        assert {name: paths[name].read_bytes() for name in now} == now
        assert [alias.read_bytes() for alias, _ in links] == [expected for _, expected in links]
        for held in readers.values():
            assert [os.pread(fd, 100, 0) for fd, _ in held] == [expected for _, expected in held]
    finally:
        for held in readers.values():
            for fd, _ in held:
                os.close(fd)
        writer.sweep()
