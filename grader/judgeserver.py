"""Judge servers: one pytest session per judged chapter, collected once, forked per judge.

A judge (`grader.child.run_judge`) spends about 36 ms of CPU time before its first test:
pytest's configuration (its plugins and options), then collecting the chapter's test
files and their fixtures. None of it depends on the submission: the judge reads the
instructor's tests where they are, and the student's code is in another process. So the
zygote forks, per judged chapter, a server that runs a judge's pytest session up to its
test loop and stops there; each judge of that chapter is then forked by the server from
that point, with what is its own (the grader's pipes, the socket to the student's
process, the tests already graded by an earlier run) set in the copy, and runs the rest
of the session (the tests, the session's end) as a judge that collected would.

What a judge sends the grader is unchanged: its list of tests (the trusted manifest's,
without the skipped ones) first, then nothing until the grader has confirmed (the ack),
then the tests' results. The server holds nothing of any submission, runs with the
grader's identity outside the sandbox like the judges, and reports each judge's exit on
the zygote's event socket (the zygote's own children are reported by the zygote). If a
server cannot start (a collection error in the tests, say) or dies, the zygote forks
that chapter's judges itself, as before; so it does where the tests see CUDA (the grader
asks for no server there: a session's configuration asks torch about CUDA, and what is
forked after that cannot use it). Linux only, like the rest of `grader grade`.

    zygote -> server   {"impl": ..., "skip": [...]}, with the judge's result, ack and log
                       descriptors and its end of the student's socket (SCM_RIGHTS)
    server -> zygote   {"pid": judge pid}
"""
from __future__ import annotations

import gc
import json
import os
import select
import signal
import socket
import sys
from typing import Any

import pytest

from grader.process import CHILD_FAILED, become_child, exit_event, fork_child, fork_only, kill_group, reaped

MESSAGE = 1 << 16
START_TIMEOUT = 120.0   # seconds a server may take to collect before the zygote forks judges itself
REPLY_TIMEOUT = 30.0    # ... and to fork a judge


class Servers:
    """The zygote's judge servers, one per judged chapter (by the judge's arguments)."""

    def __init__(self, events: socket.socket) -> None:
        self.events = events
        self.by_args: dict[tuple[str, ...], tuple[int, socket.socket] | None] = {}
        self.pids: set[int] = set()   # servers alive, for the zygote's reaper
        self.judges: set[int] = set()  # judges forked by a server (reported if orphaned)

    def judge(self, plan: Any, args: list[str], fds: list[int]) -> int | None:
        """A judge forked by this chapter's server (started now if it is the first); None
        when there is none to ask (the caller forks the judge itself). Raises OSError when
        a server took the request and died before answering: a judge may exist then."""
        key = tuple(a for a in args if not a.startswith("--impl="))
        if key not in self.by_args:
            self.by_args[key] = self._start(plan, args)
        server = self.by_args[key]
        if server is None:
            return None
        pid, control = server
        request = json.dumps({"impl": _impl(args), "skip": sorted(plan.skip)}).encode()
        try:
            socket.send_fds(control, [request], fds)
        except OSError:
            self._drop(key)
            return None
        try:
            data = control.recv(MESSAGE)
        except OSError:
            data = b""
        if not data:
            self._drop(key)
            raise OSError("the chapter's judge server ended while starting a judge")
        judge = int(json.loads(data)["pid"])
        self.judges.add(judge)
        return judge

    def _start(self, plan: Any, args: list[str]) -> tuple[int, socket.socket] | None:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        events = self.events.fileno()
        try:
            pid = fork_child(lambda: serve(args, theirs.fileno(), events),
                             keep={theirs.fileno(), events})
        finally:
            theirs.close()
        mine.settimeout(START_TIMEOUT)
        try:
            ready = mine.recv(MESSAGE)  # b"" when the server could not collect
        except OSError:  # (the timeout among them)
            ready = b""
        if not ready:
            mine.close()
            kill_group(pid)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            return None
        mine.settimeout(REPLY_TIMEOUT)
        self.pids.add(pid)
        return pid, mine

    def _drop(self, key: tuple[str, ...]) -> None:
        server = self.by_args.get(key)
        self.by_args[key] = None   # this chapter's judges are forked by the zygote from now on
        if server is not None:
            pid, control = server
            control.close()
            kill_group(pid)

    def prune(self) -> None:
        """Forget the judges that are gone (reaped by their server, which reported them): a
        judge still counts while its parent is its server or, orphaned by a dead server, the
        zygote; any other process with its number is someone else by now."""
        me = os.getpid()
        for pid in list(self.judges):
            try:
                with open(f"/proc/{pid}/stat", "rb") as f:
                    parent = int(f.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                parent = None
            if parent != me and parent not in self.pids:
                self.judges.discard(pid)

    def ended(self, pid: int) -> bool:
        """The zygote reaped `pid`: True if it was a server (whose chapter's judges the
        zygote forks itself from now on)."""
        if pid not in self.pids:
            return False
        self.pids.discard(pid)
        for key, server in self.by_args.items():
            if server is not None and server[0] == pid:
                server[1].close()
                self.by_args[key] = None
        return True

    def close(self) -> None:
        for server in self.by_args.values():
            if server is not None:
                server[1].close()
                kill_group(server[0])
                try:
                    os.waitpid(server[0], 0)
                except ChildProcessError:
                    pass


def _restart_clock(config: pytest.Config) -> None:
    """The "N passed in X s" of a judge's log counts from its fork, not the server's start."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and hasattr(reporter, "_session_start"):
        from _pytest import timing
        reporter._session_start = timing.Instant()


def _fault_handler_fd(config: pytest.Config) -> int:
    try:
        from _pytest.faulthandler import fault_handler_stderr_fd_key
        return int(config.stash.get(fault_handler_stderr_fd_key, -1))
    except (ImportError, TypeError, ValueError):
        return -1


def _impl(args: list[str]) -> str:
    return next((a.split("=", 1)[1] for a in args if a.startswith("--impl=")), "")


# --------------------------------------------------------------------------- the server's side

def serve(args: list[str], control_fd: int, events_fd: int) -> int:
    """The server process: a judge's pytest session that serves at its test loop."""
    from grader import sandbox
    from grader.guard import Guard
    from grader.process import run_pytest_main
    sandbox.die_with_parent()
    guard = Guard(-1)
    server = _Serve(socket.socket(fileno=control_fd), events_fd, guard)
    run_pytest_main(args, [guard, server])
    return 0


class _Serve:
    """The plugin that turns the session into a server at its test loop."""

    def __init__(self, control: socket.socket, events_fd: int, guard: Any) -> None:
        self.control, self.events_fd, self.guard = control, events_fd, guard
        self.judges: set[int] = set()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> object:
        if session.testsfailed or not session.items:
            os._exit(0)   # no server for a chapter whose tests do not collect cleanly
        if self._serve(session):
            return None   # a judge, forked: on to pytest's own test loop
        for pid in self.judges:
            kill_group(pid)
        os._exit(0)

    def _serve(self, session: pytest.Session) -> bool:
        """Fork a judge per request until the zygote hangs up; True in a judge."""
        gc.freeze()   # what collection made: the judges' collections skip it
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.control.send(b"{}")   # ready
        while True:
            ready, _, _ = select.select([self.control, wake_r], [], [])
            if wake_r in ready:
                os.read(wake_r, 4096)
                self._reap()
            if self.control in ready:
                data, fds, _, _ = socket.recv_fds(self.control, MESSAGE, 8)
                if not data:
                    return False   # the zygote is gone
                pid = self._fork(session, json.loads(data), fds, wake_r, wake_w)
                if pid == 0:
                    return True
                self.control.send(json.dumps({"pid": pid}).encode())

    def _fork(self, session: pytest.Session, message: dict, fds: list[int],
              wake_r: int, wake_w: int) -> int:
        result_fd, ack_fd, log_fd, student_fd = fds
        pid = fork_only()
        if pid:
            for fd in fds:
                os.close(fd)
            self.judges.add(pid)
            return pid
        # the judge
        try:
            self.control.detach()   # closed with the rest below; never again by its object
            os.close(wake_r)
            os.close(wake_w)
            config = session.config
            faults = _fault_handler_fd(config)   # pytest's copy of stderr, for tracebacks of crashes
            streams = sys.stdout, sys.stderr   # pytest's terminal writes through these
            become_child(keep={result_fd, ack_fd, student_fd, faults}, output=log_fd)
            sys.stdout, sys.stderr = streams
            if faults >= 0:
                os.dup2(2, faults)
            from grader import sandbox
            sandbox.die_with_parent()
            config.option.impl = message["impl"]
            config.option.student_fd = student_fd
            from grader.plugin import impl_dir, results_of
            results_of(config).impl = str(impl_dir(config))
            self.judges.clear()
            _restart_clock(config)
            self.guard.serve(session, result_fd, ack_fd, frozenset(message["skip"]))
        except BaseException as exc:  # noqa: BLE001 - the judge could not start: say so, end
            try:
                os.write(2, f"grader: the judge failed to start: {type(exc).__name__}: {exc}\n".encode())
            finally:
                os._exit(CHILD_FAILED)
        return 0

    def _reap(self) -> None:
        for pid, status, cpu in reaped():
            self.judges.discard(pid)
            try:
                os.write(self.events_fd, exit_event(pid, status, cpu))
            except OSError:
                pass
