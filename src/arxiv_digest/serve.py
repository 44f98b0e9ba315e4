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
"""

from __future__ import annotations

import html
import ipaddress
import json
import logging
import mimetypes
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import watchfiles

from .site import SiteError, SiteOptions, build_site, template_dirs

log = logging.getLogger(__name__)

SETTLE_MS = 300
WATCH_TICK_MS = 200  # the watcher reports in this often, the first time once its watches are set up
WATCH_READY_SECONDS = 10
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
        if not _is_loopback(host):
            raise SiteError(f"serve listens on loopback only; {host!r} is not a loopback address")
        self.options = options
        self.build_count = 0
        self.last_error: str | None = None
        self._reload_options = reload_options
        self._watch_paths = [Path(p) for p in watch_paths]
        self._tmp = tempfile.TemporaryDirectory(prefix="arxiv-digest-serve-")
        self._folders = (Path(self._tmp.name) / "a", Path(self._tmp.name) / "b")
        self.live: Path | None = None
        self.generation = 0
        self._dirty = threading.Event()
        self._stopped = threading.Event()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._server = _Server((host, port), _Handler, self, family)
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self._server.server_address[1]}"
        self._threads: list[threading.Thread] = []

    # -- building ---------------------------------------------------------------------------------

    def build(self) -> None:
        """One build into the folder not being served; swapped in only if it succeeded."""
        target = self._folders[1] if self.live == self._folders[0] else self._folders[0]
        try:
            options = self._reload_options() if self._reload_options else self.options
            self.options = options
            build_site(replace(options, site_dir=target, base_url=self.url, incremental=True))
        except Exception as exc:  # a broken post, template or config must not stop the preview
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.error("rebuild failed, still serving the last good build: %s", self.last_error)
            return
        first = self.live is None
        self.live = target
        self.generation += 1
        self.build_count += 1
        self.last_error = None
        if first:  # the other folder starts as a copy, so its first rebuild is incremental too
            shutil.copytree(target, self._folders[1], dirs_exist_ok=True)

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
        while not self._stopped.is_set():
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
        self._thread(self._server.serve_forever)
        self._thread(self._rebuild_loop)

    def _thread(self, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, daemon=True, name="arxiv-digest-serve")
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._tmp.cleanup()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def wait(self) -> None:
        try:
            while not self._stopped.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

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
            message = f"<h1>The site could not be built</h1><pre>{html.escape(preview.last_error or '')}</pre>"
            self._send(503, "text/html; charset=utf-8", self._page(message), head)
            return
        target = live / rel
        if target.is_dir():
            if rel and not url.path.endswith("/"):
                self._redirect(url.path + "/")
                return
            target = target / "index.html"
        hidden = any(part.startswith(".") for part in rel.split("/"))
        if hidden or not target.is_file() or not target.resolve().is_relative_to(live.resolve()):
            self._send(404, "text/html; charset=utf-8", self._page("<h1>Not found</h1>"), head)
            return
        kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        data = target.read_bytes()
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
            body += f"event: failure\ndata: {json.dumps(preview.last_error)}\n\n".encode()
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
