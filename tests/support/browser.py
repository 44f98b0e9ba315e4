"""Headless Chromium kept running for a test process and driven over the DevTools pipe.

Each page is opened in a browser context of its own (cookies, storage and cache as fresh as a
throwaway profile's), its scripts are given 3 s of virtual time that only runs while no request
is pending (what ``--virtual-time-budget=3000`` gives), and its DOM is read back as HTML (what
``--dump-dom`` prints). Launching Chromium for each page cost ~1 CPU-s a page, a tenth of the
suite's CPU.

The DevTools protocol over ``--remote-debugging-pipe``: JSON messages ending in a NUL byte,
commands on the browser's fd 3 and replies and events on its fd 4. Everything is read in this
thread, with a deadline: no thread is left running beside the tests.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import lxml.html

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package
TIMEOUT = 60.0  # seconds for any one reply or event
BUDGET_MS = 3000  # virtual time a page's scripts get
_DOM = "document.documentElement.outerHTML"


class BrowserError(RuntimeError):
    """Chromium answered with an error, went away, or took too long."""


class Browser:
    """One headless Chromium; ``dom(url)`` opens a page in a fresh context and returns its DOM."""

    def __init__(self, chromium: Path) -> None:
        self._profile = tempfile.TemporaryDirectory(prefix="chromium-profile-")
        to_browser, self._commands = os.pipe()
        self._replies, from_browser = os.pipe()
        # the browser's ends moved above fd 9, so that putting them on fds 3 and 4 clobbers neither
        to_browser, from_browser = (_above_nine(fd) for fd in (to_browser, from_browser))
        flags = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run")
        quiet = ("--disable-background-networking", "--disable-component-update", "--disable-sync")
        # bash (dash takes one-digit fds only) puts the pipes where the protocol wants them (fd 3 in,
        # fd 4 out), then becomes Chromium
        self.process = subprocess.Popen(
            [
                "bash",
                "-c",
                f'exec "$0" "$@" 3<&{to_browser} 4>&{from_browser}',
                str(chromium),
                *flags,
                *quiet,
                f"--user-data-dir={self._profile.name}",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            pass_fds=(to_browser, from_browser),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser)
        os.close(from_browser)
        self._buffer = b""
        self._pending: list[dict[str, Any]] = []  # events read while waiting for something else
        self._next_id = 0

    def dom(self, url: str) -> lxml.html.HtmlElement:
        """The DOM of ``url`` once its scripts have had their virtual time."""
        context = self.call("Target.createBrowserContext")["browserContextId"]
        try:
            target = self.call("Target.createTarget", url="about:blank", browserContextId=context)["targetId"]
            session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            self.call("Page.enable", session=session)
            self.call("Emulation.setVirtualTimePolicy", session=session, policy="pause")
            self.call("Page.navigate", session=session, url=url)
            self.call(
                "Emulation.setVirtualTimePolicy",
                session=session,
                policy="pauseIfNetworkFetchesPending",
                budget=BUDGET_MS,
            )
            self._event("Emulation.virtualTimeBudgetExpired", session)
            found = self.call("Runtime.evaluate", session=session, expression=_DOM, returnByValue=True)
            return lxml.html.fromstring(found["result"]["value"])
        finally:
            self.call("Target.disposeBrowserContext", browserContextId=context)
            self._pending.clear()  # the page's other events

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Send a command and wait for its reply (events that arrive meanwhile are kept)."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._commands, data) :]
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            if "method" in reply:
                self._pending.append(reply)

    def _event(self, method: str, session: str) -> dict[str, Any]:
        for event in self._pending:
            if event["method"] == method and event.get("sessionId") == session:
                self._pending.remove(event)
                return event
        while True:
            event = self._read()
            if event.get("method") == method and event.get("sessionId") == session:
                return event
            if "method" in event:
                self._pending.append(event)

    def _read(self) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._replies], [], [], left)[0]:
                raise BrowserError(f"no message from Chromium in {TIMEOUT:.0f} s")
            chunk = os.read(self._replies, 1 << 16)
            if not chunk:
                raise BrowserError(f"Chromium closed the pipe (exit code {self.process.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        found: dict[str, Any] = json.loads(message)
        return found

    def close(self) -> None:
        os.close(self._commands)  # Chromium exits when its command pipe closes
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._replies)
        self._profile.cleanup()


def _above_nine(fd: int) -> int:
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved
