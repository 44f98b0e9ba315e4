"""A process forked beside the build: it gets ready while the build goes on, then runs one piece of
work and hands back its result (the search index's update on an incremental build, its segments on a
full one)."""

from __future__ import annotations

import contextlib
import fcntl
import gc
import os
import pickle
import signal
import threading
import traceback
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from .options import SiteError

_A = TypeVar("_A")
_R = TypeVar("_R")
PIPE_BYTES = 1 << 20  # what Linux lets any process make a pipe hold (/proc/sys/fs/pipe-max-size)


class Beside(Generic[_A, _R]):
    """A process forked now, beside this one, that gets ready (``ready``, such as loading code and
    opening files) while this one goes on, then runs what ``ready`` returned on the one argument
    ``send`` gives it, and hands back its result or error (``result``; the error with the child's
    traceback as a note). Where forking is unsafe (another thread runs) or there is one core, or
    ``fork`` is false, ``send`` runs it all here. Used as a context manager, so that the child never
    outlives the block: leaving it waits for the child, which ends at once if it was sent nothing
    (``stop`` ends it at once, its work undone)."""

    def __init__(self, what: str, ready: Callable[[], Callable[[_A], _R]], fork: bool = True) -> None:
        self.what = what  # for messages
        self._ready = ready
        self._sent = False
        self._value: Any = None
        self._pid, self._to_child, self._from_child = 0, -1, -1
        if fork and _forkable():
            self._start()

    @staticmethod
    def now(what: str, work: Callable[[], _R]) -> Beside[None, _R]:
        """``work`` started at once in a process forked for it (here, where forking is unsafe), with
        what this process holds now, which a child forked earlier lacks; ``result`` waits for it.
        This process lets ``work`` go: what only it holds can be freed here."""
        beside: Beside[None, _R] = Beside(what, lambda: lambda _: work(), fork=False)
        if not _forkable():
            beside.send(None)
            return beside
        beside._start(given=True)
        beside._ready, beside._sent = _given_already, True
        return beside

    def __enter__(self) -> Beside[_A, _R]:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc_info: object) -> None:
        if self._pid:
            try:
                self._finish()
            except BaseException:
                if kind is None:
                    raise  # (an error already on its way is the one to report)

    def _start(self, given: bool = False) -> None:
        """Fork the child; ``given``: it runs at once on None instead of waiting for ``send``."""
        gc.freeze()  # (see run_here_or_forked)
        to_child, self._to_child = os.pipe()
        self._from_child, from_child = os.pipe()
        self._pid = os.fork()
        if self._pid:
            os.close(to_child)
            os.close(from_child)
            if given:
                os.close(self._to_child)
                self._to_child = -1
            return
        try:  # the child: whatever happens, it ends here, cleaning up nothing it inherited
            os.close(self._to_child)
            os.close(self._from_child)
            self._run_child(to_child, from_child, given)
        finally:
            os._exit(0)

    def _run_child(self, to_child: int, from_child: int, given: bool) -> None:
        try:
            run = self._ready()
            with os.fdopen(to_child, "rb") as pipe:
                sent = None if given else pipe.read()
            if sent is None:
                outcome: tuple[bool, Any] = (True, run(None))  # type: ignore[arg-type]  # (``now``'s work)
            else:
                outcome = (True, run(pickle.loads(sent)) if sent else None)
        except BaseException as exc:
            exc.add_note("in the process forked to run it:\n" + "".join(traceback.format_exception(exc)))
            outcome = (False, exc)
        try:
            data = pickle.dumps(outcome)
        except Exception as exc:  # an unpicklable result or error
            data = pickle.dumps((False, RuntimeError(f"{self.what}: the result cannot be sent back: {exc}")))
        with os.fdopen(from_child, "wb") as pipe:
            pipe.write(data)

    def send(self, argument: _A) -> None:
        if not self._pid:
            self._value = self._ready()(argument)
            self._sent = True
            return
        data = pickle.dumps(argument)
        # room in the pipe for all of it where Linux allows (up to 1 MB unprivileged), so that this
        # process goes on while the child gets ready: adding a post sends 100 KB, which waited 70 ms
        with contextlib.suppress(OSError, AttributeError):
            fcntl.fcntl(self._to_child, fcntl.F_SETPIPE_SZ, min(len(data), PIPE_BYTES))
        pipe, self._to_child = os.fdopen(self._to_child, "wb"), -1  # (closed whatever happens)
        try:
            with pipe:
                pipe.write(data)
        except BrokenPipeError:  # the child has ended: it failed getting ready, as ``result`` says
            pass
        self._sent = True

    def stop(self) -> None:
        """End the child now, its work undone and its outcome dropped: the caller failed before it
        needed the work, and the child must not outlive it."""
        if self._pid:
            pid, self._pid = self._pid, 0
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        for end in (self._to_child, self._from_child):
            if end >= 0:
                os.close(end)
        self._to_child = self._from_child = -1

    def result(self) -> _R:
        if not self._sent:
            raise RuntimeError("nothing was sent")
        if self._pid:
            self._value = self._finish()
        return self._value

    def _finish(self) -> Any:
        """The child's result, once it has ended (closing its input first if it was sent nothing)."""
        if self._to_child >= 0:
            os.close(self._to_child)
            self._to_child = -1
        with os.fdopen(self._from_child, "rb") as pipe:
            data = pipe.read()
        pid, self._pid = self._pid, 0
        _, status = os.waitpid(pid, 0)
        if not data:
            code = os.waitstatus_to_exitcode(status)
            ended = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
            raise SiteError(f"{self.what}: the process forked for it {ended} before it finished")
        done, value = pickle.loads(data)
        if not done:
            raise value
        return value


def _forkable() -> bool:
    """Forking pays (two cores or more) and is safe (no other thread runs)."""
    return (os.cpu_count() or 1) > 1 and threading.active_count() == 1


def _given_already() -> Callable[[Any], Any]:
    raise RuntimeError("the work was given to the process forked for it")
