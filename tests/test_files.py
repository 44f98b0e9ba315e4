from __future__ import annotations

import os
import stat

import pytest

from arxiv_digest.files import remove_stale_temp_files, write_atomic


def test_write_atomic_leaves_no_temp_files(tmp_path) -> None:
    target = tmp_path / "posts" / "2026-01-15-arxiv.md"
    write_atomic(target, "one")
    write_atomic(target, b"two", durable=False)
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == [target.name]


def test_a_new_file_gets_the_umask_mode_and_a_rewrite_keeps_its_mode(tmp_path) -> None:
    old = os.umask(0o022)
    try:
        target = tmp_path / "post.md"
        write_atomic(target, "one")
        assert stat.S_IMODE(target.stat().st_mode) == 0o644
        target.chmod(0o640)
        write_atomic(target, "two")
        assert stat.S_IMODE(target.stat().st_mode) == 0o640
    finally:
        os.umask(old)


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path) -> None:
    target = tmp_path / "post.md"
    write_atomic(target, "good")

    class Boom(str):
        def encode(self, *args: object) -> bytes:
            raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        write_atomic(target, Boom("bad"))
    assert target.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["post.md"]


def test_stale_temp_files_of_a_killed_run_are_removed(tmp_path) -> None:
    (tmp_path / ".2026-01-15-arxiv.md.1a2b3c4d.tmp").write_text("half")
    (tmp_path / "2026-01-15-arxiv.md").write_text("whole")
    remove_stale_temp_files(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["2026-01-15-arxiv.md"]
