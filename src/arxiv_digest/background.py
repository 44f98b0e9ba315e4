"""A task run in a process forked now while the caller goes on, its result fetched later: a full site
build writes the search index's segments while it renders its listings and feeds."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from multiprocessing import get_context
from multiprocessing.connection import Connection
from typing import Generic, TypeVar

from .errors import DigestError

T = TypeVar("T")


class BackgroundError(DigestError):
    """The forked process died before it sent its result (killed, or out of memory)."""


class Background(Generic[T]):
    """``task`` (a closure over this process's data; its result must pickle) run in a process forked
    now; ``result()`` waits for it and returns its value or raises its exception. Where forking is
    unsafe (other threads run: ``serve`` builds beside its server) or there is one core, the task
    runs here, at once. The child only writes files: it must not touch the caller's open databases."""

    def __init__(self, task: Callable[[], T], what: str) -> None:
        self.what = what
        self._value: T | None = None
        self._error: BaseException | None = None
        if threading.active_count() > 1 or (os.cpu_count() or 1) < 2:
            self._process = None
            try:
                self._value = task()
            except Exception as exc:  # raised by result(), as from a child
                self._error = exc
            return
        context = get_context("fork")
        self._receive, send = context.Pipe(duplex=False)
        self._process = context.Process(target=_run, args=(task, send), daemon=True)
        self._process.start()
        send.close()

    def result(self) -> T:
        if self._process is not None:
            try:
                done, value = self._receive.recv()
            except EOFError:
                raise BackgroundError(f"{self.what} stopped (exit code {self._exitcode()})") from None
            finally:
                self._receive.close()
            self._process.join()
            self._process = None
            if done:
                self._value = value
            else:
                self._error = value
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]  # set by the task

    def _exitcode(self) -> int | None:
        assert self._process is not None
        self._process.join()
        return self._process.exitcode


def _run(task: Callable[[], object], send: Connection) -> None:
    try:
        value = task()
    except Exception as exc:
        send.send((False, exc))
    else:
        send.send((True, value))
    send.close()
