"""Preview server: build the site into a temporary folder, serve it on loopback, rebuild when posts,
templates or the config change, and reload the pages open in a browser.

Like ``mkdocs serve``, it reuses the real build (``build_site``) and keeps serving the last good
build when a rebuild fails. Two build folders take turns: a rebuild goes into the one not being
served and is swapped in only when it succeeded, and each folder's own manifest keeps its rebuilds
incremental. Changes are watched with ``watchfiles`` (inotify through Rust's ``notify``) rather than
by polling mtimes: polling a thousand posts every 300 ms costs CPU all day and misses nothing only by
luck, while inotify reports atomic renames (how editors and the pipeline write) as they happen; its
``step`` waits until changes settle (300 ms) before a rebuild. The watches are in place before the
first build starts, so a change made while it runs, or right after ``serve`` returns, is never
missed. Pages get one injected script that
polls ``/__livereload`` (server-sent events, reconnecting every second) and reloads, or shows
why a rebuild failed.

It answers only requests whose ``Host`` is an IP address, ``localhost`` or the name it serves on, so
a web page whose domain an attacker points at 127.0.0.1 (DNS rebinding) cannot read the preview, and
error texts sent to the browser carry no absolute file-system paths.
"""

from __future__ import annotations

import errno
import html
import ipaddress
import json
import logging
import mimetypes
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import watchfiles

from . import templating
from .site import SiteError, SiteOptions, build_site, copy_last_build, state_folder, template_dirs

log = logging.getLogger(__name__)

SETTLE_MS = 300
SHUTDOWN_POLL_SECONDS = 0.05  # how soon the server notices Ctrl-C or SIGTERM (the default waits 0.5 s)
WATCH_TICK_MS = 100  # the watcher reports in this often, the first time once its watches are set up
WATCH_READY_SECONDS = 10
LISTEN_BACKLOG = 1024  # pending connections the kernel holds (socketserver's default of 5 drops a burst)
ABSOLUTE_PATH = re.compile(r"(?<![\w.~:/-])/[^\s'\"<>()]+")
LIVERELOAD_JS = b"""(() => {
  "use strict";
  const gen = new URL(document.currentScript.src).searchParams.get("gen");
  const events = new EventSource(`/__livereload?gen=${gen}`);
  events.onmessage = () => location.reload();
  events.addEventListener("failure", (event) => {
    let box = document.getElementById("__livereload-error");
    if (!box) {
      box = document.createElement("pre");
      box.id = "__livereload-error";
      box.style.cssText = "position:fixed;left:0;right:0;bottom:0;margin:0;padding:1em;max-height:40vh;" +
        "overflow:auto;white-space:pre-wrap;background:#b3261e;color:#fff;font:13px/1.5 monospace;z-index:9999";
      document.body.append(box);
    }
    box.textContent = "Rebuild failed; still showing the last good build.\\n\\n" + JSON.parse(event.data);
  });
})();
"""


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_allowed(header: str | None, served_host: str) -> bool:
    """Whether a request's ``Host`` names this preview: an IP address, ``localhost`` (or a name under
    it, which browsers resolve to loopback themselves), or the host it was started on. A rebinding
    attack needs a domain name of its own, so it never passes."""
    if header is None:  # an HTTP/1.0 client that sends none: not a browser, so not a rebinding page
        return True
    try:
        name = urlsplit("//" + header.strip()).hostname or ""  # lower case, without port or brackets
    except ValueError:
        return False
    if name == "localhost" or name.endswith(".localhost") or name == served_host.lower():
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def without_paths(text: str, roots: Sequence[Path]) -> str:
    """Error text fit for a browser: paths under ``roots`` relative to them, any other absolute path
    cut to its file name (the preview may be reachable from other machines)."""
    for root in sorted({str(r) for r in roots}, key=len, reverse=True):
        text = text.replace(root.rstrip(os.sep) + os.sep, "")
    return ABSOLUTE_PATH.sub(lambda match: match[0].rsplit("/", 1)[-1], text)


def interrupt_on_sigterm() -> None:
    """Make SIGTERM (``kill``, systemd, ``docker stop``) stop the preview the way Ctrl-C does, so its
    temporary build folder is removed instead of left behind."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def safe_path(url_path: str) -> str | None:
    """The site-relative file a request path names, or None when it tries to leave the site (``..``,
    also percent-encoded as ``..%2f``, backslashes, NUL). Decoded once: ``%252e`` stays a file name."""
    decoded = unquote(url_path)
    if "\x00" in decoded or "\\" in decoded:
        return None
    parts = decoded.split("/")
    if any(part in (".", "..") for part in parts):
        return None
    return "/".join(part for part in parts if part)


class ServeHandle:
    """A running preview: ``url``, ``build_count`` (successful builds), ``last_error`` (of the latest
    build, None once one succeeds again); ``stop()`` ends it, ``wait()`` blocks until Ctrl-C."""

    def __init__(
        self,
        options: SiteOptions,
        host: str,
        port: int,
        watch_paths: Sequence[Path],
        reload_options: Callable[[], SiteOptions] | None,
    ) -> None:
        self.options = options
        self.host = host
        self.build_count = 0
        self.last_error: str | None = None
        self._reload_options = reload_options
        self._watch_paths = [Path(p) for p in watch_paths]
        self.live: Path | None = None
        self.generation = 0
        self._dirty = threading.Event()
        self._stopped = threading.Event()
        self._server = _listen(host, port, self)
        if not _is_loopback(host):
            log.warning(
                "serving on %s: anyone who can reach this machine on port %d can see the preview",
                "every network interface" if host in ("0.0.0.0", "::") else host,
                self._server.server_address[1],
            )
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self._server.server_address[1]}"
        self._tmp = tempfile.TemporaryDirectory(prefix="arxiv-digest-serve-")
        self._folders = (Path(self._tmp.name) / "a", Path(self._tmp.name) / "b")
        self._threads: list[threading.Thread] = []
        self._serving = False
        self._start_from_site = True  # the first build starts where the published site's last ended

    # -- building ---------------------------------------------------------------------------------

    def build(self) -> None:
        """One build into the folder not being served; swapped in only if it succeeded."""
        target = self._other(self.live)
        try:
            options = self._reload_options() if self._reload_options else self.options
            self.options = options
            if self._start_from_site:  # (tried once: a failed first build leaves its folder as it is)
                self._start_from_site = False
                if copy_last_build(options, target, self._state(target)):
                    log.info("starting from the last build of %s", options.site_dir)
            # each build folder has its own state beside it, in the temporary folder
            build_site(replace(options, site_dir=target, state_dir=None, base_url=self.url, incremental=True))
        except Exception as exc:  # a broken post, template or config must not stop the preview
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.error("rebuild failed, still serving the last good build: %s", self.last_error)
            return
        self.live = target
        self.generation += 1
        self.build_count += 1
        self.last_error = None

    def _copy_first_build(self, live: Path) -> None:
        """The folder not served starts as a copy of the first good build, with its state, so that its
        first rebuild is incremental too. The rebuild thread copies it before its first rebuild, not
        before serving: a site of 3,000 posts took 12 s to copy. A copy that fails (or is stopped) is
        removed again, and the first rebuild there is a full one."""
        other = self._other(live)
        try:
            for source, target in ((live, other), (self._state(live), self._state(other))):
                shutil.copytree(source, target, copy_function=self._copy_file, dirs_exist_ok=True)
        except (OSError, _Stopping) as exc:  # (shutil.Error is an OSError)
            for folder in (other, self._state(other)):
                shutil.rmtree(folder, ignore_errors=True)
            if not isinstance(exc, _Stopping):
                log.warning("could not copy the first build, so the first rebuild is a full one: %s", exc)

    def _other(self, folder: Path | None) -> Path:
        """The build folder that is not ``folder`` (the first, before any build)."""
        return self._folders[1] if folder == self._folders[0] else self._folders[0]

    def _copy_file(self, source: str, target: str) -> object:
        if self._stopped.is_set():
            raise _Stopping
        return shutil.copy2(source, target)

    def _state(self, folder: Path) -> Path:
        """A build folder's state: beside it, in the temporary folder too."""
        return state_folder(replace(self.options, site_dir=folder, state_dir=None))

    def _watch_roots(self) -> tuple[list[Path], list[Path]]:
        """Folders watched recursively (posts, templates) and folders of single files (the config)."""
        folders = [self.options.posts_dir, *template_dirs(self.options.templates_dirs)]
        folders += [p for p in self._watch_paths if p.is_dir()]
        parents = sorted({p.resolve().parent for p in self._watch_paths if not p.is_dir()})
        return [f.resolve() for f in folders if f.is_dir()], parents

    def _watch(self, roots: list[Path], recursive: bool, ready: threading.Event) -> None:
        """Watch ``roots``; ``ready`` is set once the watches exist (watchfiles sets them up when the
        generator starts and says so only by yielding: on a change, or an empty set on a tick)."""
        files = {p.resolve() for p in self._watch_paths if not p.is_dir()}

        def wanted(change: watchfiles.Change, path: str) -> bool:
            return watchfiles.DefaultFilter()(change, path) and (recursive or Path(path) in files)

        try:
            for changes in watchfiles.watch(
                *roots,
                watch_filter=wanted,
                step=SETTLE_MS,
                stop_event=self._stopped,
                recursive=recursive,
                raise_interrupt=False,
                yield_on_timeout=True,
                rust_timeout=WATCH_TICK_MS,
            ):
                ready.set()
                if changes:
                    self._dirty.set()
        finally:
            ready.set()

    def _rebuild_loop(self) -> None:
        copied = False  # the other folder, from the first good build
        while not self._stopped.is_set():
            if not copied and self.live is not None:
                copied = True
                self._copy_first_build(self.live)
            if self._dirty.wait(0.2):
                self._dirty.clear()
                self.build()

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        """Watch, then build, then serve: a change during the first build triggers a rebuild."""
        folders, parents = self._watch_roots()
        ready = []
        for roots, recursive in ((folders, True), (parents, False)):
            if roots:
                ready.append(threading.Event())
                self._thread(partial(self._watch, roots, recursive, ready[-1]))
        for event in ready:
            event.wait(WATCH_READY_SECONDS)
        self.build()
        self._serving = True
        self._thread(partial(self._server.serve_forever, poll_interval=SHUTDOWN_POLL_SECONDS))
        self._thread(self._rebuild_loop)

    def _thread(self, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, daemon=True, name="arxiv-digest-serve")
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self._serving:  # shutdown() would wait forever for a loop that never started
            self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._tmp.cleanup()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    @property
    def public_error(self) -> str:
        """``last_error`` as the browser may see it: no absolute paths."""
        roots = [self.options.posts_dir.parent, Path(self._tmp.name), templating.packaged_dir(), Path.cwd()]
        roots += [d.parent for d in self.options.templates_dirs]
        return without_paths(self.last_error or "", [r.resolve() for r in roots] + roots)

    def wait(self) -> None:
        try:
            while not self._stopped.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            # stopping: a second Ctrl-C or SIGTERM would cut short removing the build folders (1.4 GB
            # beside 3,000 posts), which takes a second or two
            if threading.current_thread() is threading.main_thread():
                for signum in (signal.SIGINT, signal.SIGTERM):
                    signal.signal(signum, signal.SIG_IGN)
            self.stop()


class _Stopping(Exception):
    """The preview is stopping: a copy in progress gives up."""


def _listen(host: str, port: int, preview: ServeHandle) -> _Server:
    """The listening server, or one clear ``SiteError`` (port in use, unknown or foreign address)."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        return _Server((host, port), _Handler, preview, family)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            why = "the port is in use (another preview?); choose another with --port, or --port 0 for any free one"
        elif exc.errno == errno.EADDRNOTAVAIL:
            why = "this machine has no such address"
        else:
            why = exc.strerror or str(exc)
        raise SiteError(f"cannot listen on {host}:{port}: {why}") from None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG

    def handle_error(self, request: object, client_address: object) -> None:
        """A browser that closes a connection early (a reload, a closed tab) is not worth a traceback."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], preview: ServeHandle, family: int
    ) -> None:
        self.address_family = family
        self.preview = preview
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._respond(head=False)

    def do_HEAD(self) -> None:
        self._respond(head=True)

    def _respond(self, head: bool) -> None:
        preview = self.server.preview
        if not host_allowed(self.headers.get("Host"), preview.host):
            self._send(403, "text/plain; charset=utf-8", b"This preview answers only to its own address.\n", head)
            return
        url = urlsplit(self.path)
        if url.path == "/__livereload":
            self._events(parse_qs(url.query).get("gen", [""])[0])
            return
        if url.path == "/__livereload.js":
            self._send(200, "text/javascript; charset=utf-8", LIVERELOAD_JS, head)
            return
        rel = safe_path(url.path)
        if rel is None:
            self._send(400, "text/plain; charset=utf-8", b"Bad path\n", head)
            return
        live = preview.live
        if live is None:
            message = f"<h1>The site could not be built</h1><pre>{html.escape(preview.public_error)}</pre>"
            self._send(503, "text/html; charset=utf-8", self._page(message), head)
            return
        try:
            target = live / rel
            if target.is_dir():
                if rel and not url.path.endswith("/"):
                    self._redirect(url.path + "/")
                    return
                target = target / "index.html"
            hidden = any(part.startswith(".") for part in rel.split("/"))
            found = not hidden and target.is_file() and target.resolve().is_relative_to(live.resolve())
            data = target.read_bytes() if found else b""
        except OSError:  # a name too long for the file system, and the like: no such page
            found = False
        if not found:
            self._send(404, "text/html; charset=utf-8", self._page("<h1>Not found</h1>"), head)
            return
        kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if kind == "text/html":
            data = self._inject(data)
        if kind.startswith("text/") or kind in ("application/json", "application/xml", "text/javascript"):
            kind += "; charset=utf-8"
        self._send(200, kind, data, head)

    def _script(self) -> bytes:
        return f'<script src="/__livereload.js?gen={self.server.preview.generation}"></script>'.encode()

    def _inject(self, page: bytes) -> bytes:
        at = page.rfind(b"</body>")
        return page[:at] + self._script() + page[at:] if at >= 0 else page + self._script()

    def _page(self, body: str) -> bytes:
        return b"<!doctype html><meta charset=utf-8><body>" + body.encode() + self._script() + b"</body>"

    def _send(self, status: int, kind: str, data: bytes, head: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if not head:
            self.wfile.write(data)

    def _redirect(self, location: str) -> None:
        self.send_response(301)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _events(self, seen: str) -> None:
        """One server-sent-events answer, at once: a message when a newer build is live, a ``failure``
        event while the latest build failed, else nothing; ``retry`` brings the page back in a second.
        A stream held open would keep a server thread per tab, and keeps headless Chromium's virtual
        clock (``--virtual-time-budget``, and any "network idle" wait) from ever running out."""
        preview = self.server.preview
        body = b"retry: 1000\n\n"
        if str(preview.generation) != seen:
            body += f"data: {preview.generation}\n\n".encode()
        elif preview.last_error:
            body += f"event: failure\ndata: {json.dumps(preview.public_error)}\n\n".encode()
        self._send(200, "text/event-stream", body, head=False)


def serve(
    options: SiteOptions,
    host: str = "127.0.0.1",
    port: int = 8000,
    watch_paths: Sequence[Path] = (),
    on_ready: Callable[[ServeHandle], None] | None = None,
    reload_options: Callable[[], SiteOptions] | None = None,
) -> ServeHandle:
    """Build, start serving on ``host:port`` (0 = any free port) and watching, and return at once.
    ``watch_paths`` adds files or folders to watch (the config file); ``reload_options`` is called
    before every build so a changed config takes effect. The first build may fail: the server then
    shows the error until a change fixes it."""
    handle = ServeHandle(options, host, port, watch_paths, reload_options)
    handle.start()
    if on_ready:
        on_ready(handle)
    return handle
