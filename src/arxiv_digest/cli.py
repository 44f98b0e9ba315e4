"""Command line: parse arguments, load config, call one pipeline function, print its outcome.

Errors are ``DigestError``s (click exceptions): click prints them as one line and exits with their
code (see ``errors.ExitCode``). ``run`` and ``generate`` also leave a JSON report (``outcome``).

Each command imports the stages it runs when it runs: ``site`` never loads the HTTP client, the
LLM's code, feedparser or tqdm (0.23 s, a quarter of adding a post to a site of 3,000 posts).
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from .config import load_config, site_options
from .errors import ConfigError, DigestError, UsageError, as_digest_error
from .outcome import (
    PROGRESS_LOGGER,
    RunOutcome,
    closing_line,
    display,
    exit_code,
    failure_of,
    reports_dir,
    run_report,
    write_report,
)
from .runlock import run_lock

if TYPE_CHECKING:
    from .pipeline import Digest
    from .site import SiteOptions

log = logging.getLogger("arxiv_digest")

NOW_ENV = "ARXIV_DIGEST_NOW"  # replay/testing: pretend the current time is this ISO instant

F = TypeVar("F", bound=Callable[..., Any])


def _now() -> datetime:
    from .window import utc_now

    value = os.environ.get(NOW_ENV)
    if not value:
        return utc_now()
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{NOW_ENV}={value!r} is not an ISO date-time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# -- options accepted before or after the subcommand ---------------------------------------------------


@dataclass
class Settings:
    """``-c``, ``-v`` and ``-q``, wherever they were given (``ctx.obj``, one per invocation)."""

    config: Path | None = None
    verbose: int = 0
    quiet: bool = False


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    settings = ctx.ensure_object(Settings)
    if param.name == "verbose":
        settings.verbose += value
    elif param.name == "quiet":
        settings.quiet |= value
    elif value is not None:
        settings.config = value  # given after the subcommand, it wins


def settings_options(func: F) -> F:
    """``-c/--config``, ``-v`` and ``-q``, for the group and for every subcommand."""
    remembered: dict[str, Any] = {"expose_value": False, "callback": _remember}
    options = [
        click.option(
            "-c",
            "--config",
            type=click.Path(path_type=Path),
            help="Config file (default: ./config.yaml if present). Relative paths in it are resolved against "
            "its folder.",
            **remembered,
        ),
        click.option("-v", "--verbose", count=True, help="More detail on stderr (-vv for debug).", **remembered),
        click.option("-q", "--quiet", is_flag=True, help="Only errors; no closing line.", **remembered),
    ]
    for option in reversed(options):  # click lists options in the order their decorators are written
        func = option(func)
    return func


def _settings(ctx: click.Context) -> Settings:
    """The merged settings, with logging set up from them (once the subcommand's options are read).

    The logging set-up is undone when the command ends, so ``main`` can run again in one process.
    """
    settings = ctx.ensure_object(Settings)
    verbose, quiet = settings.verbose, settings.quiet
    root, progress, noisy = logging.getLogger(), logging.getLogger(PROGRESS_LOGGER), logging.getLogger("httpx")
    handlers, levels = root.handlers[:], [(logger, logger.level) for logger in (root, progress, noisy)]

    def restore() -> None:
        root.handlers[:] = handlers
        for logger, level in levels:
            logger.setLevel(level)

    ctx.call_on_close(restore)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(levelname)s: %(message)s" if verbose < 2 else "%(name)s %(levelname)s: %(message)s")
    )
    root.handlers[:] = [handler]
    root.setLevel(logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)])
    noisy.setLevel(logging.WARNING if verbose < 2 else logging.DEBUG)
    under_cron = not quiet and not sys.stderr.isatty()  # plain progress lines instead of a bar
    progress.setLevel(logging.INFO if under_cron else logging.NOTSET)
    return settings


# -- run and generate ------------------------------------------------------------------------------


COMMIT_OPTION = click.option(
    "--commit",
    is_flag=True,
    help="git-commit every file this run wrote (posts, paper pages); the posts folder must be in a repo.",
)


def command(func: Callable[..., RunOutcome]) -> Callable[..., None]:
    """Load config, lock the store, run, print the closing line and leave a JSON report.

    Any failure is recorded in the report, then raised again for click to show.
    """

    @click.pass_context
    @wraps(func)
    def wrapper(ctx: click.Context, /, *args: Any, commit: bool = False, **kwargs: Any) -> None:
        from .doctor import preflight
        from .pipeline import Digest
        from .publish import commit_run

        settings = _settings(ctx)
        config = load_config(settings.config)  # an invalid config has no report: the config says where reports go
        started = datetime.now(UTC)
        outcome: RunOutcome | None = None
        failure: DigestError | None = None
        try:
            preflight(config)  # templates and folders, before any request or LLM token is spent
            with run_lock(config.store.path), Digest(config, now=_now) as digest:
                outcome = func(digest, *args, **kwargs)
            failure = failure_of(outcome)
            if commit:
                click.echo(commit_run(outcome))
        except (Exception, KeyboardInterrupt) as exc:  # every failure is reported, then shown by click
            failure = as_digest_error(exc)
        if outcome is not None and not settings.quiet:
            click.echo(closing_line(outcome))
        if outcome is not None and outcome.verdict and failure is None:
            click.echo(outcome.verdict, err=True)  # the model was judged unfit: the run's last word
        try:
            write_report(reports_dir(config), run_report(ctx.info_name or "run", outcome, failure, started), started)
        except OSError as exc:
            log.warning("could not write the run report: %s", exc)
        if failure is not None:
            raise failure
        ctx.exit(exit_code(outcome, failure))

    return wrapper


class DigestGroup(click.Group):
    """Every exception of every command leaves as a ``DigestError``: one line, the right code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            raise as_digest_error(exc) from exc


@click.group(cls=DigestGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@settings_options
@click.version_option(package_name="arxiv-digest")
def main() -> None:
    """Daily arXiv digest: fetch new papers, translate and explain them, write Jekyll posts.

    -c, -v and -q may also follow the subcommand (arxiv-digest run -c FILE).

    \b
    Examples:
      arxiv-digest run                                  # the latest window
      arxiv-digest generate --date 2026-01-15
      arxiv-digest generate --from 2026-01-01 --to 2026-01-31
      arxiv-digest -c ~/digest/config.yaml -v run

    \b
    Exit codes: 0 done, 1 failure, 2 usage or config error, 3 finished with
    papers still pending or given up, 4 another run is in progress.
    """
    click.get_current_context().call_on_close(_no_final_collection)


def _no_final_collection() -> None:
    """The process ends next: its objects go back to the system with it, so the interpreter's last
    garbage collection is skipped (60 ms after building a site of 3,000 posts). Every file has
    been closed by then."""
    gc.freeze()


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
@settings_options
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
      arxiv-digest generate --date 2026-01-15 -c ~/digest/config.yaml
      arxiv-digest generate --date 2026-01-15 --retry-pending
    """
    return digest.generate(_days(day, first, last), refetch=refetch, force=force, retry_pending=retry_pending)


def _days(day: str | None, first: str | None, last: str | None) -> list[date]:
    from .window import parse_day

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
@settings_options
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


# -- the site ----------------------------------------------------------------------------------------


@main.command("site")
@click.option("--full", is_flag=True, help="Rebuild every page instead of only what changed.")
@settings_options
@click.pass_context
def build(ctx: click.Context, full: bool) -> None:
    """Build the HTML site (index, posts, categories, archive, feeds, search) into site.site_dir.

    Only pages that depend on changed posts or templates are rebuilt; never calls arXiv or the LLM.

    \b
    Examples:
      arxiv-digest site
      arxiv-digest site --full
    """
    from .site import build_site

    settings = _settings(ctx)
    config = load_config(settings.config)
    report = build_site(site_options(config, incremental=not full))
    if not settings.quiet:
        click.echo(f"site: {report.summary()} -> {display(config.site.site_dir)}")


@main.command()
@click.option("--host", default=None, help="Address to listen on (default: serve.host, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default: serve.port, 8000; 0 = any free port).")
@settings_options
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Preview the site locally: build into a temporary folder, serve it, rebuild and reload the
    browser when posts, templates or the config change. Never calls arXiv or the LLM. Ctrl-C or
    SIGTERM stops it and removes the temporary folder.

    \b
    Examples:
      arxiv-digest serve
      arxiv-digest serve --port 4000
      arxiv-digest serve --host 0.0.0.0   # other machines can see it too (it warns)
    """
    from .serve import interrupt_on_sigterm
    from .serve import serve as start_server

    config = load_config(_settings(ctx).config)
    source = config.source

    def reload_options() -> SiteOptions:
        return site_options(load_config(source))

    interrupt_on_sigterm()
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
@settings_options
@click.pass_context
def doctor(ctx: click.Context) -> None:
    """Check config, templates, store, posts folder, arXiv and the LLM endpoint (one cheap call).

    Exits 0 when nothing failed, 1 otherwise (2 if the config itself is invalid).

    \b
    Examples:
      arxiv-digest doctor
      arxiv-digest -c /srv/digest/config.yaml doctor
    """
    from .doctor import run_checks

    try:
        config = load_config(_settings(ctx).config)
    except ConfigError as exc:
        click.echo(f"config     FAIL     {exc}")
        ctx.exit(exc.exit_code)
    click.echo(f"config     ok       {config.source or 'defaults (no config file)'}")
    failed = False
    for check in run_checks(config):
        failed |= check.ok is False
        click.echo(f"{check.name:<10} {check.verdict:<8} {check.detail}")
    ctx.exit(1 if failed else 0)
