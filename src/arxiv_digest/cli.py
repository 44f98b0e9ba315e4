"""Command line: parse arguments, load config, call one pipeline function, map errors to exit codes.

Exit codes: 0 success, 1 runtime failure (arXiv, store, templates, LLM key or quota), 2 usage or
config error, 3 finished but some papers are still pending or were given up (the LLM failed, the
model was judged unfit, or the budget ran out), 4 another run is in progress.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from functools import wraps
from pathlib import Path
from typing import Any

import click

from .config import Config, load_config
from .doctor import run_checks
from .errors import DigestError, UsageError
from .pipeline import PROGRESS_LOGGER, Digest, RunOutcome
from .publish import commit_posts
from .report import run_report, write_report
from .runlock import run_lock
from .serve import serve as start_server
from .site import SiteOptions, build_site
from .window import parse_day, utc_now

log = logging.getLogger("arxiv_digest")

NOW_ENV = "ARXIV_DIGEST_NOW"  # replay/testing: pretend the current time is this ISO instant


def _now() -> datetime:
    value = os.environ.get(NOW_ENV)
    if not value:
        return utc_now()
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{NOW_ENV}={value!r} is not an ISO date-time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(levelname)s: %(message)s" if verbose < 2 else "%(name)s %(levelname)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("httpx").setLevel(logging.WARNING if verbose < 2 else logging.DEBUG)
    if not quiet and not sys.stderr.isatty():  # under cron: plain progress lines instead of a bar
        logging.getLogger(PROGRESS_LOGGER).setLevel(logging.INFO)


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def closing_line(outcome: RunOutcome) -> str:
    """One line per run: what was fetched and shown, what was written, how long it took."""
    written = [d for d in outcome.days if d.path is not None]
    if len(outcome.days) == 1:
        day = outcome.days[0]
        if day.path is None:
            what = day.note or "wrote nothing"
        else:
            what = f"{_display(day.path)} unchanged" if day.note == "unchanged" else f"wrote {_display(day.path)}"
        head = f"{day.day}: fetched {day.fetched}, shown {day.shown}, {what}"
    else:
        first, last = outcome.days[0].day, outcome.days[-1].day
        head = (
            f"{first}..{last}: {len(outcome.days)} windows, fetched {outcome.fetched}, "
            f"shown {outcome.shown}, wrote {len(written)} post{'s' if len(written) != 1 else ''}"
        )
    extra = f", {outcome.requests} arXiv request{'s' if outcome.requests != 1 else ''}" if outcome.requests else ""
    return f"{head}{extra}{llm_summary(outcome)} in {outcome.seconds:.1f}s"


def llm_summary(outcome: RunOutcome) -> str:
    usage = outcome.usage
    if usage is None:
        return f", {outcome.pending} pending (no LLM configured)" if outcome.pending else ""
    parts = [f"LLM {usage.calls} call{'s' if usage.calls != 1 else ''}", f"{usage.cache_hits} cached"]
    if usage.calls:
        parts.append(f"tokens {usage.tokens_in} in / {usage.tokens_out} out")
    if usage.failures:
        parts.append(f"{usage.failures} failed")
    if usage.early_stops:
        parts.append(f"{usage.early_stops} stopped early (up to {usage.tokens_saved} tokens saved)")
    if usage.ungrounded:
        numbers = sum(len(items) for items in usage.ungrounded.values())
        parts.append(f"{numbers} unsupported numbers/names kept in {len(usage.ungrounded)} explainers (see the report)")
    if usage.skipped_by_budget:
        parts.append(f"{usage.skipped_by_budget} over budget")
    if outcome.cost is not None:
        parts.append(f"cost {outcome.cost:.4f} {outcome.currency}")
    if outcome.pending:
        parts.append(f"{outcome.pending} pending")
    if outcome.given_up:
        days = ", ".join(sorted({day.isoformat() for _, day in outcome.given_up}))
        parts.append(f"{len(outcome.given_up)} given up (retry: generate --date {days} --retry-pending)")
    return ", " + ", ".join(parts)


def exit_code(outcome: RunOutcome) -> int:
    """0 done; 1 the LLM failed in a way retrying cannot fix; 3 finished, but papers stay pending,
    were given up by this run, or the model was judged unfit.

    (2 is a usage/config error and 4 another run holding the lock; both come from DigestError.)"""
    if outcome.llm_error:
        return 1
    unfinished = outcome.pending or outcome.given_up or outcome.verdict
    return 3 if outcome.usage is not None and unfinished else 0


COMMIT_OPTION = click.option(
    "--commit",
    is_flag=True,
    help="git-commit the posts this run wrote or updated (the posts folder must be in a repo).",
)


def commit_posts_of(outcome: RunOutcome) -> str:
    """git-commit the posts the run wrote or changed; say what happened."""
    changed = [d for d in outcome.days if d.path and d.note != "unchanged"]
    if not changed:
        return "no post changed; nothing to commit"
    span = f"{changed[0].day}" if len(changed) == 1 else f"{changed[0].day}..{changed[-1].day}"
    papers = sum(d.shown for d in changed)
    message = f"arXiv digest {span}: {papers} papers in {len(changed)} post{'s' if len(changed) != 1 else ''}"
    sha = commit_posts([d.path for d in changed if d.path], message)
    return f"committed {len(changed)} post(s) as {sha}" if sha else "no post changed; nothing to commit"


def command(func: Callable[..., RunOutcome]) -> Callable[..., None]:
    """Lock the store, load config, run, report; every DigestError becomes one message + exit code.

    Each run leaves a JSON report in ``<store folder>/reports/`` and prints one closing line.
    """

    @click.pass_context
    @wraps(func)
    def wrapper(ctx: click.Context, *args: Any, **kwargs: Any) -> None:
        opts = ctx.find_root().params
        started = datetime.now(UTC)
        outcome: RunOutcome | None = None
        error: str | None = None
        code = 0
        config = None
        commit = kwargs.pop("commit", False)
        try:
            config = load_config(opts["config"])
            with run_lock(config.store.path):
                digest = Digest(config, now=_now)
                try:
                    outcome = func(digest, *args, **kwargs)
                finally:
                    digest.close()
            code = exit_code(outcome)
            error = outcome.llm_error
            if commit:
                click.echo(commit_posts_of(outcome))
        except DigestError as exc:
            code, error = exc.exit_code, str(exc)
        except KeyboardInterrupt:
            code, error = 130, "interrupted; posts already written are complete, the next run finishes the rest"
        except Exception as exc:  # a bug: say so in one line; -vv shows the traceback
            log.debug("internal error", exc_info=True)
            code, error = 1, f"internal error: {type(exc).__name__}: {exc} (run with -vv for details)"
        if outcome is not None and not opts["quiet"]:
            click.echo(closing_line(outcome))
        if error:
            click.echo(error if error.startswith("internal error") else f"error: {error}", err=True)
        elif outcome is not None and outcome.verdict:
            click.echo(outcome.verdict, err=True)
        if config is not None and code not in (2, 4):
            try:
                report = run_report(ctx.info_name or "run", outcome, code, error, started)
                write_report(config.store.path.parent / "reports", report, started)
            except OSError as exc:
                log.warning("could not write the run report: %s", exc)
        ctx.exit(code)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "-c",
    "--config",
    type=click.Path(path_type=Path),
    default=None,
    help="Config file (default: ./config.yaml if present). Relative paths in it are resolved against its folder.",
)
@click.option("-v", "--verbose", count=True, help="More detail on stderr (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors; no closing line.")
@click.version_option(package_name="arxiv-digest")
def main(config: Path | None, verbose: int, quiet: bool) -> None:
    """Daily arXiv digest: fetch new papers, translate and explain them, write Jekyll posts.

    \b
    Examples:
      arxiv-digest run                                  # the latest window
      arxiv-digest generate --date 2026-01-15
      arxiv-digest generate --from 2026-01-01 --to 2026-01-31
      arxiv-digest -c ~/digest/config.yaml -v run

    \b
    Exit codes: 0 done, 1 failure, 2 usage or config error,
    3 finished with papers still pending, 4 another run is in progress.
    """
    _setup_logging(verbose, quiet)


@main.command()
@click.option("--date", "day", metavar="YYYY-MM-DD", help="Post date: its window ends at the anchor time that day.")
@click.option("--from", "first", metavar="YYYY-MM-DD", help="First post date of a range (with --to).")
@click.option("--to", "last", metavar="YYYY-MM-DD", help="Last post date of a range (with --from).")
@click.option("--refetch", is_flag=True, help="Query arXiv again even if the window is already in the store.")
@click.option("--force", is_flag=True, help="Overwrite a post even if it has more papers or texts than the new one.")
@click.option(
    "--retry-pending",
    is_flag=True,
    help="Also retry papers whose texts were given up after llm.pending_max_runs failed runs.",
)
@COMMIT_OPTION
@command
def generate(
    digest: Digest,
    day: str | None,
    first: str | None,
    last: str | None,
    refetch: bool,
    force: bool,
    retry_pending: bool,
) -> RunOutcome:
    """Write the post of one date, or of every date in a range.

    A date's window is [date-1 anchor, date anchor) in window.timezone (default 08:50 Asia/Shanghai).
    Windows already in the store are rendered without network; a range is fetched as one paged query.

    \b
    Examples:
      arxiv-digest generate --date 2026-01-15
      arxiv-digest generate --from 2026-01-01 --to 2026-01-31
      arxiv-digest generate --date 2026-01-15 --refetch
      arxiv-digest generate --date 2026-01-15 --retry-pending
    """
    return digest.generate(_days(day, first, last), refetch=refetch, force=force, retry_pending=retry_pending)


def _days(day: str | None, first: str | None, last: str | None) -> list[date]:
    if day and (first or last):
        raise UsageError("give either --date or --from/--to, not both")
    if day:
        return [parse_day(day)]
    if not (first and last):
        raise UsageError("give --date YYYY-MM-DD, or both --from and --to")
    start, end = parse_day(first), parse_day(last)
    if end < start:
        raise UsageError(f"--to {end} is before --from {start}")
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


@main.command()
@COMMIT_OPTION
@command
def run(digest: Digest) -> RunOutcome:
    """Write the post of the latest window that has ended (the nightly job).

    It also re-checks the previous window.refresh_days windows, so papers that arXiv announces
    late are added to the post of the window they belong to.

    \b
    Examples:
      arxiv-digest run
      arxiv-digest -c /srv/digest/config.yaml -q run
    """
    return digest.run_latest()


def site_options(config: Config, incremental: bool = True) -> SiteOptions:
    return SiteOptions(
        posts_dir=config.site.posts_dir,
        site_dir=config.site.site_dir,
        templates_dirs=(config.site.templates_dir / "site",),
        title=config.site.title,
        base_url=config.site.base_url,
        per_page=config.site.per_page,
        incremental=incremental,
    )


def _config_or_exit(ctx: click.Context) -> Config:
    try:
        return load_config(ctx.find_root().params["config"])
    except DigestError as exc:
        click.echo(f"error: {exc}", err=True)
        ctx.exit(exc.exit_code)
        raise  # unreachable: ctx.exit raises


@main.command("site")
@click.option("--full", is_flag=True, help="Rebuild every page instead of only what changed.")
@click.pass_context
def build(ctx: click.Context, full: bool) -> None:
    """Build the HTML site (index, posts, categories, archive, feeds, search) into site.site_dir.

    Only pages that depend on changed posts or templates are rebuilt; never calls arXiv or the LLM.

    \b
    Examples:
      arxiv-digest site
      arxiv-digest site --full
    """
    config = _config_or_exit(ctx)
    try:
        report = build_site(site_options(config, incremental=not full))
    except DigestError as exc:
        click.echo(f"error: {exc}", err=True)
        ctx.exit(exc.exit_code)
    if not ctx.find_root().params["quiet"]:
        click.echo(f"site: {report.summary()} -> {_display(config.site.site_dir)}")


@main.command()
@click.option("--host", default=None, help="Address to listen on (default: serve.host, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default: serve.port, 8000; 0 = any free port).")
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Preview the site locally: build into a temporary folder, serve it, rebuild and reload the
    browser when posts, templates or the config change. Never calls arXiv or the LLM.

    \b
    Examples:
      arxiv-digest serve
      arxiv-digest serve --port 4000
    """
    config = _config_or_exit(ctx)
    source = config.source

    def reload_options() -> SiteOptions:
        return site_options(load_config(source))

    handle = start_server(
        site_options(config),
        host=host or config.serve.host,
        port=config.serve.port if port is None else port,
        watch_paths=[p for p in (source, config.site.templates_dir) if p is not None],
        reload_options=reload_options,
    )
    click.echo(f"serving {config.site.posts_dir} at {handle.url} (Ctrl-C to stop)")
    try:
        handle.wait()
    except KeyboardInterrupt:
        pass
    finally:
        handle.stop()


@main.command()
@click.pass_context
def doctor(ctx: click.Context) -> None:
    """Check config, templates, store, posts folder, arXiv and the LLM endpoint (one cheap call).

    Exits 0 when nothing failed, 1 otherwise (2 if the config itself is invalid).

    \b
    Examples:
      arxiv-digest doctor
      arxiv-digest -c /srv/digest/config.yaml doctor
    """
    try:
        config = load_config(ctx.find_root().params["config"])
    except DigestError as exc:
        click.echo(f"config     FAIL     {exc}")
        ctx.exit(exc.exit_code)
        raise  # unreachable: ctx.exit raises
    click.echo(f"config     ok       {config.source or 'defaults (no config file)'}")
    failed = False
    for check in run_checks(config):
        failed |= check.ok is False
        click.echo(f"{check.name:<10} {check.verdict:<8} {check.detail}")
    ctx.exit(1 if failed else 0)
