"""The plumbing every loopback fake shares: a threaded HTTP/1.1 server on 127.0.0.1, its lifecycle,
the request log with an in-flight count, a queue of injected faults and a stall that notices when
the client gives up.

Why: the arXiv and LLM fakes speak different protocols but must behave alike as servers (random
port, serving from ``__init__``, keep-alive, a clean shutdown that wakes stalled handlers, a bug in
the fake failing the test rather than only printing a traceback). Each fake subclasses
:class:`LoopbackServer` and supplies a handler class whose ``do_*`` methods call into it.
"""

from __future__ import annotations

import contextlib
import select
import socket
import sys
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Generic, Literal, Self, TypeVar

RecordT = TypeVar("RecordT")
FaultT = TypeVar("FaultT")


class LoopbackHandler(BaseHTTPRequestHandler):
    """Keep-alive handler that knows its fake (``self.owner``) and stays quiet; subclasses add ``do_*``."""

    protocol_version = "HTTP/1.1"  # keep-alive, like the real services (exercises client pooling)
    timeout = 15  # idle keep-alive connections go away eventually

    @property
    def owner(self) -> LoopbackServer[Any, Any]:
        return self.server.owner  # type: ignore[attr-defined,no-any-return]

    def setup(self) -> None:
        super().setup()
        # Headers and body may go out in separate writes; without NODELAY, Nagle + delayed ACK
        # would add ~40 ms to every keep-alive request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.owner._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.owner._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging; tests read the fake's ``requests`` instead."""


class _HTTPServer(ThreadingHTTPServer):
    """Threaded, so a stalled request never blocks another."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, owner: LoopbackServer[Any, Any], handler: type[LoopbackHandler]) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that time out and hang up are part of the tests; anything else is a bug in the fake,
        kept in ``errors`` so that leaving the ``with`` block fails the test."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            return
        if error is not None:
            self.owner.record_error(error)
        super().handle_error(request, client_address)


class LoopbackServer(Generic[RecordT, FaultT]):
    """A fake service on ``127.0.0.1:<random port>``; serving starts in ``__init__``.

    Use it as a context manager or call ``close()``. Subclasses set ``handler`` and ``fault_type`` and
    call ``_begin``/``_end`` around each request they log.
    """

    handler: ClassVar[type[LoopbackHandler]]
    fault_type: ClassVar[type[Any]]  # built from a bare kind: fault_type("stall")
    thread_name: ClassVar[str] = "loopback-server"

    def __init__(self) -> None:
        self.requests: list[RecordT] = []
        self.errors: list[BaseException] = []  # bugs in the fake (or a test's responder): fail on exit
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.RLock()
        self._ended = threading.Condition(self._lock)
        self._stalled: dict[int, socket.socket] = {}  # handler thread -> its connection, while it stalls
        self._faults: deque[FaultT] = deque()
        self._closing = threading.Event()
        self._connections: set[socket.socket] = set()
        self._httpd = _HTTPServer(self, self.handler)
        self.port: int = self._httpd.server_address[1]
        self.root_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, name=self.thread_name, daemon=True
        )
        self._thread.start()

    # -- lifecycle

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
        if exc_type is None and self.errors:
            count = len(self.errors)
            raise AssertionError(f"{type(self).__name__}: the fake or a test's responder raised {count} time(s)") from (
                self.errors[0]
            )

    def close(self) -> None:
        """Stop serving, wake stalled handlers and drop kept-alive connections."""
        if self._closing.is_set():
            return
        self._closing.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)

    @property
    def closing(self) -> bool:
        return self._closing.is_set()

    def record_error(self, error: BaseException) -> None:
        with self._lock:
            self.errors.append(error)

    # -- faults

    def inject(self, *faults: str | FaultT) -> None:
        """Queue faults; each is consumed, in order, by the next request that reaches a fault point."""
        parsed = [self.fault_type(f) if isinstance(f, str) else f for f in faults]
        with self._lock:
            self._faults.extend(parsed)

    @property
    def pending_faults(self) -> int:
        """How many injected faults no request has consumed yet."""
        with self._lock:
            return len(self._faults)

    def _next_fault(self) -> FaultT | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    # -- request log

    def _begin(self, record: RecordT) -> None:
        """Log a request that has arrived and count it in flight. A stalled request whose client
        has hung up is over for that client, which may retry at once: it is let end first (its
        thread polls for the hang-up), so the retry is not counted as a second request in flight."""
        with self._lock:
            deadline = time.monotonic() + 1.0
            while any(map(_hung_up, self._stalled.values())) and time.monotonic() < deadline:
                self._ended.wait(0.005)
            self.requests.append(record)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _end(self) -> None:
        with self._lock:
            self._stalled.pop(threading.get_ident(), None)
            self.in_flight -= 1
            self._ended.notify_all()

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    # -- stalls

    def _stall(self, handler: BaseHTTPRequestHandler, seconds: float) -> bool:
        """Sleep ``seconds``; return False early if the client hangs up or the server closes."""
        deadline = time.monotonic() + seconds
        sock = handler.connection
        with self._lock:
            self._stalled[threading.get_ident()] = sock  # until the request ends (``_end``)
        while (remaining := deadline - time.monotonic()) > 0:
            if self._closing.is_set():
                return False
            client = _client(sock, min(remaining, 0.01))
            if client == "gone":
                return False  # EOF: the client timed out and closed the connection
            if client == "sent":
                return not self._closing.wait(max(deadline - time.monotonic(), 0))
        return not self._closing.is_set()


def _client(sock: socket.socket, timeout: float) -> Literal["quiet", "sent", "gone"]:
    """What the client of ``sock`` did within ``timeout``: nothing, sent more, or hung up (its
    end-of-file is waiting to be read, or the socket failed)."""
    try:
        readable, _, _ = select.select([sock], [], [], timeout)
        if not readable:
            return "quiet"
        return "sent" if sock.recv(1, socket.MSG_PEEK) else "gone"
    except (OSError, ValueError):
        return "gone"


def _hung_up(sock: socket.socket) -> bool:
    return _client(sock, 0) == "gone"
