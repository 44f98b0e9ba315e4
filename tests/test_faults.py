"""Hostile input and a broken environment, as the user meets them: crafted arXiv ids, folders that
are files or read-only, a full disk, a damaged or locked store, impossible dates, bad config values,
broken templates, retries that must say why the run waits, and the mode of written files."""

from __future__ import annotations

import functools
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arxiv_digest.arxiv import submitted_range_query
from arxiv_digest.window import FIRST_DAY, LAST_DAY, parse_day, window_for

from .conftest import DAY, KEY, LLMWorkspace, Workspace
from .support.arxiv_server import Fault, make_paper
from .support.llm_server import Fault as LLMFault

START = datetime(2026, 1, 14, 1, 0, tzinfo=UTC)


def add(ws, *ids: str) -> None:
    for n, arxiv_id in enumerate(ids):
        ws.arxiv.papers.append(make_paper(arxiv_id, START + timedelta(minutes=n), title=f"Audio paper {n}"))


# -- item 5: ids -------------------------------------------------------------------------------------


CRAFTED_IDS = ["/../../x", "2601.00002/../../../y", "2601.123456", "hep-th/99010011", "2601.00003 x", "<b>2601.0001"]


def test_a_crafted_id_is_skipped_with_a_warning_and_the_window_is_still_written(llm_ws: LLMWorkspace) -> None:
    ws = llm_ws.ws
    ws.configure(pages={"enabled": True})
    add(ws, "2601.00001", *CRAFTED_IDS, "2601.00009")
    result = llm_ws.generate()
    assert result.returncode == 0, result.stderr
    outside = [p for p in ws.root.rglob("*.md") if not p.resolve().is_relative_to(ws.root / "posts")]
    assert outside == []
    assert sorted(p.name for p in (ws.root / "posts").iterdir()) == [
        ".2026-01-14-2601.00001.md.json",  # each file's record beside it
        ".2026-01-14-2601.00009.md.json",
        ".2026-01-15-arxiv.md.json",
        "2026-01-14-2601.00001.md",
        "2026-01-14-2601.00009.md",
        "2026-01-15-arxiv.md",
    ]
    for crafted in CRAFTED_IDS:
        assert f"skipped an entry without a valid arXiv id or a date: 'http://arxiv.org/abs/{crafted}v1'" in (
            result.stderr
        )
    assert "fetched 2, shown 2, wrote posts/2026-01-15-arxiv.md" in result.stdout
    assert "2601.00002" not in llm_ws.text()


def test_old_style_ids_get_pages_named_with_an_underscore(llm_ws: LLMWorkspace) -> None:
    """``hep-th/9901001``: arXiv's own link keeps the slash; the page file and permalink use
    ``hep-th_9901001`` (one flat folder of pages; no other id contains ``_``)."""
    ws = llm_ws.ws
    ws.configure(pages={"enabled": True}, arxiv={"categories": ["cs.SD", "hep-th", "math.GT"]})
    ws.arxiv.papers.append(make_paper("hep-th/9901001", START, title="Old strings", categories=["hep-th"]))
    ws.arxiv.papers.append(make_paper("math.GT/0309136", START, title="Old knots", categories=["math.GT"]))
    result = llm_ws.generate()
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (ws.root / "posts").iterdir() if not p.name.startswith(".")) == [
        "2026-01-14-hep-th_9901001.md",
        "2026-01-14-math.GT_0309136.md",
        "2026-01-15-arxiv.md",
    ]
    page = (ws.root / "posts" / "2026-01-14-hep-th_9901001.md").read_text(encoding="utf-8")
    assert 'permalink: "/papers/hep-th_9901001/"' in page and 'arxiv_id: "hep-th/9901001"' in page
    assert "[Arxiv](https://arxiv.org/abs/hep-th/9901001)" in page
    daily = llm_ws.text()
    assert "](/papers/hep-th_9901001/)" in daily and "https://arxiv.org/abs/hep-th/9901001v1" in daily


@pytest.mark.parametrize(
    "value, valid",
    [
        ("2501.12345", True),
        ("0704.0001", True),
        ("2501.12345v12", True),
        ("hep-th/9901001", True),
        ("math.GT/0309136v2", True),
        ("cond-mat/0412498", True),
        ("2501.123", False),
        ("2501.123456", False),
        ("../2501.12345", False),
        ("hep-th/990100", False),
        ("hep-th/9901001/..", False),
        ("HEP-TH/9901001", False),
        ("2501.12345v0", False),
        ("2501.12345\n", False),
    ],
)
def test_arxiv_id_grammar(value: str, valid: bool) -> None:
    from arxiv_digest.arxiv import id_slug, is_arxiv_id

    assert is_arxiv_id(value) is valid
    if valid:
        assert "/" not in id_slug(value)
    else:
        with pytest.raises(ValueError):
            id_slug(value)


# -- item 8: waits are explained ---------------------------------------------------------------------


def retry_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "retrying in" in line]


def test_each_arxiv_retry_says_why_and_how_long_it_waits(workspace: Workspace) -> None:
    """Under cron (no terminal) at default verbosity: one line per wait, nothing else."""
    workspace.configure(arxiv={"backoff": 0.1})
    add(workspace, "2601.00001")
    workspace.arxiv.inject(Fault("server_error", status=503), Fault("stall", seconds=3), Fault("rate_limit"))
    result = workspace.cli("generate", "--date", DAY)
    assert result.returncode == 0, result.stderr
    assert retry_lines(result.stderr) == [
        "WARNING: arXiv: HTTP 503, retrying in 0.1 s (1/3)",
        "WARNING: arXiv: no answer in 1 s, retrying in 0.2 s (2/3)",
        "WARNING: arXiv: HTTP 429, retrying in 1 s (3/3)",  # the server's Retry-After: 1
    ]
    quiet = workspace.cli("-q", "generate", "--date", DAY, "--refetch")
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_a_dead_network_is_not_silent(workspace: Workspace) -> None:
    workspace.configure(arxiv={"api_url": "http://127.0.0.1:9/api/query", "backoff": 0.1, "retries": 2})
    result = workspace.cli("generate", "--date", DAY)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert [line.split(" (")[0] for line in lines[:2]] == ["WARNING: arXiv: cannot connect"] * 2
    assert lines[0].endswith(", retrying in 0.1 s (1/2)") and lines[1].endswith(", retrying in 0.2 s (2/2)")
    assert len(lines) == 3 and lines[2].startswith("error: arXiv: cannot connect") and "after 3 attempts" in lines[2]


def test_each_llm_retry_says_why_and_never_quotes_the_server(llm_ws: LLMWorkspace) -> None:
    add(llm_ws.ws, "2601.00001")
    llm_ws.ws.configure(llm={"concurrency": 1, "timeout": 1})
    llm_ws.llm.inject(LLMFault("server_error", status=502), LLMFault("stall", seconds=3))
    result = llm_ws.generate()
    assert result.returncode == 0, result.stderr
    assert retry_lines(result.stderr) == [
        "WARNING: LLM: HTTP 502, retrying in 0 s (1/2)",
        "WARNING: LLM: no answer in 1 s, retrying in 0 s (2/2)",
    ]
    assert "Sorry about that" not in result.stderr and KEY not in result.stderr


def test_a_servers_error_text_stays_out_of_the_retry_line_but_reaches_the_final_error(caplog) -> None:
    from arxiv_digest.polite import RetriesExhausted, Retryable, RetryPolicy

    secret = "Incorrect API key provided: sk-live-0123456789abcdef"

    def once() -> None:
        raise Retryable("HTTP 500", detail=secret)

    with caplog.at_level("WARNING"), pytest.raises(RetriesExhausted) as caught:
        RetryPolicy(retries=1, backoff=2, max_retry_after=0).call(once, lambda _: None, "LLM")
    assert caplog.messages == ["LLM: HTTP 500, retrying in 2 s (1/1)"]
    assert str(caught.value) == f"HTTP 500: {secret}" and caught.value.attempts == 2


# -- item 7: every environment fault is one clear line ------------------------------------------------


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
    return [line for line in result.stderr.splitlines() if not line.startswith(("INFO: ", "WARNING: arXiv: "))]


@functools.cache
def can_mount() -> bool:
    """Private mount namespaces (root, or unprivileged user namespaces) let a test mount a tiny or
    read-only file system that disappears with the process, so nothing stays mounted if it fails."""
    probe = "mount -t tmpfs -o size=4k tmpfs /mnt && mount -o remount,ro /mnt"
    try:
        done = subprocess.run(["unshare", "--mount", "--map-root-user", "sh", "-c", probe], capture_output=True)
    except FileNotFoundError:
        return False
    return done.returncode == 0


def cli_env(ws: Workspace) -> dict[str, str]:
    """The environment ``ws.cli`` gives the command."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")} | ws.env
    return env | {"ARXIV_DIGEST_NOW": "2026-11-21T00:00:00Z"}


def cli_command(ws: Workspace, *args: str) -> list[str]:
    return [sys.executable, "-m", "arxiv_digest", "-c", str(ws.config), *args]


def mounted_cli(ws: Workspace, mounts: str, *args: str, after: str = "") -> subprocess.CompletedProcess:
    """``ws.cli(*args)`` in a private mount namespace, after ``mounts`` (shell, run in ``ws.root``);
    ``after`` runs there too, while the mounts still exist, and prints to stdout."""
    if not can_mount():
        pytest.skip("needs mount namespaces (root or unprivileged user namespaces) for a tiny or read-only disk")
    script = f'{mounts} || exit 99; "$@"; code=$?; {after or ":"}; exit $code'
    return subprocess.run(
        ["unshare", "--mount", "--map-root-user", "sh", "-c", script, "sh", *cli_command(ws, *args)],
        cwd=ws.root,
        env=cli_env(ws),
        capture_output=True,
        text=True,
        timeout=120,
    )


def add_many(ws: Workspace, count: int) -> None:
    long = " ".join(["We study neural audio coding at low bitrates."] * 12)
    for n in range(count):
        published = START + timedelta(minutes=n)
        ws.arxiv.papers.append(make_paper(f"2601.{n + 1:05d}", published, title=f"Codec {n}", abstract=long))


def posts_recorded(ws: Workspace) -> int:
    with sqlite3.connect(ws.root / "state" / "digest.sqlite3") as db:
        return db.execute("SELECT count(*) FROM posts").fetchone()[0]


@pytest.mark.parametrize(
    "make, problem",
    [
        (lambda root: (root / "posts").write_text("x"), "site.posts_dir: {root}/posts is a file, not a folder"),
        (lambda root: (root / "state").write_text("x"), "store.path: {root}/state is a file, not a folder"),
        (
            lambda root: (root / "templates").mkdir() or (root / "templates" / "post.md.j2").write_text("{{ x }"),
            "templates/post.md.j2, line 1: unexpected '}'",
        ),
        (
            lambda root: (
                (root / "templates" / "prompts").mkdir(parents=True)
                or (root / "templates" / "prompts" / "explain.j2").write_text("{% block system %}s{% endblock %}")
            ),
            "templates/prompts/explain.j2: a prompt needs a {% block user %}; it has none",
        ),
    ],
    ids=["posts-is-a-file", "store-folder-is-a-file", "template-syntax", "prompt-without-user"],
)
def test_setup_faults_stop_the_run_before_any_request(workspace: Workspace, make, problem: str) -> None:
    make(workspace.root)
    add(workspace, "2601.00001")
    result = workspace.cli("generate", "--date", DAY)
    assert result.returncode == 2
    *before, last = error_lines(result)
    assert last == "error: cannot start: " + problem.replace("{root}", str(workspace.root))
    assert all(line.startswith("WARNING: could not write the run report") for line in before)  # state/ a file
    assert workspace.arxiv.requests == [] and result.stdout == ""


def test_a_read_only_posts_folder_stops_the_run_before_any_request(workspace: Workspace) -> None:
    (workspace.root / "posts").mkdir()
    result = mounted_cli(
        workspace, "mount --bind posts posts && mount -o remount,bind,ro posts", "generate", "--date", DAY
    )
    assert result.returncode == 2
    assert error_lines(result) == [
        f"error: cannot start: site.posts_dir: cannot write in {workspace.root}/posts (Read-only file system)"
    ]
    assert workspace.arxiv.requests == []


def test_a_full_disk_under_the_posts_is_one_line_and_leaves_nothing_half_written(workspace: Workspace) -> None:
    add_many(workspace, 12)
    (workspace.root / "posts").mkdir()
    result = mounted_cli(
        workspace, "mount -t tmpfs -o size=4k tmpfs posts", "generate", "--date", DAY, after="ls -A posts"
    )
    assert result.returncode == 1
    post = workspace.post(DAY)
    record = post.with_name(f".{post.name}.json")  # written first: the disk is full by then
    assert error_lines(result) == [f"error: cannot write {record}: No space left on device"]
    assert result.stdout == ""  # no closing line, and `ls -A posts` found no post and no temp file
    assert posts_recorded(workspace) == 0
    again = workspace.cli("generate", "--date", DAY)  # space again: written from the store, no request
    assert again.returncode == 0 and "arXiv request" not in again.stdout and post.exists()


def test_a_full_disk_under_the_store_is_one_line_and_writes_no_post(workspace: Workspace) -> None:
    add_many(workspace, 40)
    (workspace.root / "state").mkdir()
    result = mounted_cli(workspace, "mount -t tmpfs -o size=64k tmpfs state", "generate", "--date", DAY)
    assert result.returncode == 1
    store = workspace.root / "state" / "digest.sqlite3"
    *before, last = error_lines(result)
    assert last == f"error: store {store}: the disk is full; free some space and run again"
    assert all(line.startswith("WARNING: could not write the run report") for line in before)
    assert workspace.posts() == []


def test_a_store_that_is_not_a_database_is_one_line(workspace: Workspace) -> None:
    store = workspace.root / "state" / "digest.sqlite3"
    store.parent.mkdir()
    store.write_bytes(b"these are not the papers you are looking for\n" * 100)
    result = workspace.cli("generate", "--date", DAY)
    assert result.returncode == 1
    assert error_lines(result) == [
        f"error: store {store} is damaged (file is not a database): restore it from a backup, or move it away "
        "to start a new one (posts already written stay; papers are fetched and texts generated again)"
    ]
    assert workspace.arxiv.requests == []


def test_a_store_with_damaged_pages_is_one_line(workspace: Workspace) -> None:
    add_many(workspace, 5)
    assert workspace.cli("generate", "--date", DAY).returncode == 0
    store = workspace.root / "state" / "digest.sqlite3"
    data = bytearray(store.read_bytes())
    data[4096:] = b"\xa5" * (len(data) - 4096)  # every page but the first
    store.write_bytes(bytes(data))
    result = workspace.cli("generate", "--date", DAY)
    assert result.returncode == 1
    assert error_lines(result)[-1].startswith(f"error: store {store} is damaged (database disk image is malformed)")


HOLD_LOCK = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("holding", flush=True)
sys.stdin.readline()
db.execute("COMMIT")
"""


def hold_store(ws: Workspace) -> subprocess.Popen:
    """Another program (a SQLite browser, say) holding the store's write lock until told to let go."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(ws.root / "state" / "digest.sqlite3")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
    return holder


def test_a_store_locked_by_another_program_names_it_waits_and_gives_up(workspace: Workspace) -> None:
    assert workspace.cli("generate", "--date", DAY).returncode == 0  # creates the store (no papers)
    workspace.configure(store={"lock_wait": 0.5})
    requests = len(workspace.arxiv.requests)
    holder = hold_store(workspace)
    try:
        result = workspace.cli("generate", "--date", DAY, "--refetch")
    finally:
        holder.kill()
        holder.wait()
    store = workspace.root / "state" / "digest.sqlite3"
    who = f"another program (pid {holder.pid}, python"
    warning, error = error_lines(result)
    assert warning.startswith(f"WARNING: store {store} is locked by {who}")
    assert warning.endswith("; waiting up to 0.5 s for it to finish")
    assert error.startswith(f"error: store {store} is locked by {who}")
    assert error.endswith(", still after 0.5 s; close that program or wait for it, then run again")
    assert result.returncode == 1 and len(workspace.arxiv.requests) == requests  # stopped before fetching


def test_a_store_locked_for_a_moment_is_waited_for_with_a_line_saying_so(workspace: Workspace) -> None:
    add(workspace, "2601.00001")
    assert workspace.cli("generate", "--date", "2026-01-14").returncode == 0  # creates the store
    holder = hold_store(workspace)
    run = subprocess.Popen(
        cli_command(workspace, "generate", "--date", DAY),
        cwd=workspace.root,
        env=cli_env(workspace),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert run.stderr is not None and holder.stdin is not None
    waiting = run.stderr.readline()
    holder.stdin.write("let go\n")
    holder.stdin.flush()
    stdout, stderr = run.communicate(timeout=60)
    holder.wait()
    assert waiting.startswith(f"WARNING: store {workspace.root}/state/digest.sqlite3 is locked by another program")
    assert f"(pid {holder.pid}, python" in waiting and waiting.endswith("; waiting up to 10 s for it to finish\n")
    assert run.returncode == 0, stderr
    assert "wrote posts/2026-01-15-arxiv.md" in stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (("--date", "0001-01-01"), "0001-01-01 is before arXiv began (August 1991); give a date from 1991-08-01 on"),
        (("--date", "9999-12-31"), "9999-12-31 is in the future; nothing to generate yet"),
        (("--from", "0001-01-01", "--to", "2026-01-01"), "0001-01-01 is before arXiv began"),
        (("--date", "9999-12-29"), "the window of 9999-12-29 ends at 9999-12-29 08:50 CST, which is in the future"),
    ],
)
def test_impossible_dates_are_one_line(workspace: Workspace, args: tuple[str, ...], message: str) -> None:
    result = workspace.cli("generate", *args)
    assert result.returncode == 2
    [line] = error_lines(result)
    assert line.startswith(f"error: {message}")


@given(
    day=st.dates(min_value=FIRST_DAY, max_value=LAST_DAY),
    zone=st.sampled_from(["Pacific/Kiritimati", "Pacific/Pago_Pago", "Asia/Shanghai", "UTC"]),
    anchor=st.sampled_from(["00:00", "08:50", "23:59"]),
)
def test_every_day_parse_day_accepts_has_a_window_and_a_query(day: date, zone: str, anchor: str) -> None:
    window = window_for(parse_day(day.isoformat()), zone, anchor)
    assert window.start < window.end
    assert "submittedDate:[" in submitted_range_query(["cs.SD"], window.start, window.end)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"arxiv": {"timeout": float("nan")}}, "arxiv.timeout: expected a number >= 0.1 and <= 3600, got .nan"),
        ({"llm": {"backoff": float("inf")}}, "llm.backoff: expected a number >= 0 and <= 600, got .inf"),
        ({"window": {"anchor": 530}}, "window.anchor: expected a time"),
        ({"llm": {"api_key_env": KEY}}, "llm.api_key_env: expected the name of an environment variable, got what"),
    ],
    ids=["nan", "inf", "unquoted-anchor", "pasted-key"],
)
def test_config_faults_are_one_line_and_never_show_the_key(workspace: Workspace, settings: dict, message: str) -> None:
    workspace.configure(**settings)
    result = workspace.cli("generate", "--date", DAY)
    assert result.returncode == 2
    [line] = error_lines(result)
    assert line.startswith(f"error: {workspace.config}: {message}")
    assert KEY not in result.stderr + result.stdout and not (workspace.root / "state").exists()


def test_doctor_checks_every_template_the_site_uses_too(workspace: Workspace) -> None:
    site = workspace.root / "templates" / "site"
    site.mkdir(parents=True)
    (site / "post.html").write_text("{% extends 'base.html' %}\n{% block main %}{{ post.title }{% endblock %}")
    result = workspace.cli("doctor")
    assert result.returncode == 1
    line = next(line for line in result.stdout.splitlines() if line.startswith("templates"))
    assert line.split(None, 2) == ["templates", "FAIL", "templates/site/post.html, line 2: unexpected '}'"]


# -- item 9: file modes -----------------------------------------------------------------------------


def test_posts_and_pages_get_the_umasks_mode_and_a_rewrite_keeps_the_mode_given(llm_ws: LLMWorkspace) -> None:
    """A web server running as another user must be able to read what a run writes (mkstemp gave 0600)."""
    ws = llm_ws.ws
    ws.configure(pages={"enabled": True})
    add(ws, "2601.00001")
    post, first_page = ws.post(DAY), ws.root / "posts" / "2026-01-14-2601.00001.md"
    umask = os.umask(0o022)  # the child inherits it
    try:
        assert llm_ws.generate().returncode == 0
        assert oct(post.stat().st_mode & 0o777) == oct(first_page.stat().st_mode & 0o777) == "0o644"
        post.chmod(0o640)
        ws.arxiv.papers.append(make_paper("2601.00002", START + timedelta(hours=1), title="A late one"))
        os.umask(0o027)
        again = llm_ws.generate(DAY, "--refetch")
    finally:
        os.umask(umask)
    assert again.returncode == 0, again.stderr
    assert "A late one" in post.read_text(encoding="utf-8")  # rewritten, with the mode it was given
    assert oct(post.stat().st_mode & 0o777) == "0o640"
    assert oct((ws.root / "posts" / "2026-01-14-2601.00002.md").stat().st_mode & 0o777) == "0o640"
