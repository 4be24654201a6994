"""Judge servers: one pytest session per judged chapter, collected once, forked into judges.

A judge (`grader.child.run_judge`) spends about 36 ms of CPU time before its first test:
pytest's configuration (its plugins and options), then collecting the chapter's test
files and their fixtures. None of it depends on the submission: the judge reads the
instructor's tests where they are, and the student's code is in another process. So the
zygote forks, per judged chapter, a server that runs a judge's pytest session up to its
test loop and stops there; the chapter's judges are then forked by the server from that
point, and each run gets what is its own (the grader's pipes, the socket to the student's
process, the tests already graded by an earlier run) and runs the rest of the session
(the tests, the session's end) as a judge that collected would.

What a judge sends the grader is unchanged: its list of tests (the trusted manifest's,
without the skipped ones) first, then the tests' results (a judge does not wait for the
grader's ack, which confirms that a student's folder no longer holds the tests: a judged
student's folder never held them). The server holds nothing of any submission, runs with the
grader's identity outside the sandbox like the judges, and reports each judge process's
exit on the zygote's event socket (the zygote's own children are reported by the zygote). If a
server cannot start (a collection error in the tests, say) or dies, the zygote forks
that chapter's judges itself, as before; so it does where the tests see CUDA (the grader
asks for no server there: a session's configuration asks torch about CUDA, and what is
forked after that cannot use it). Linux only, like the rest of `grader grade`.

A server's judges are workers: forked when no other is idle, each runs one judge's tests
and session end after another (up to WORKER_RUNS), starting each run from the session as
the server left it (`_Fresh`: the items, the stashes, the counters, the terminal
reporter's tallies), so the pages a run touches are copied once per worker, not once per
submission, and no judge process starts or ends per submission: 13% off the grading phase
of 100 ch05 submissions on 2 cores. A run's end is the end of its result pipe (after the
session's `done`); a worker that ends a run otherwise (an internal error, the student's
process gone) exits, and its exit is that run's judge's.

    zygote -> server   {"impl": ..., "skip": [...], "cpu": ...}, with the judge's result, ack
                       and log descriptors and its end of the student's socket (SCM_RIGHTS)
    server -> zygote   {"pid": worker pid}
    server -> worker   the same request and descriptors; worker -> server b"idle" after it
"""
from __future__ import annotations

import copy
import gc
import json
import os
import select
import signal
import socket
import sys
import time
from typing import Any, NoReturn

import pytest

from grader.process import (CHILD_FAILED, become_child, exit_event, flush_output, fork_child, fork_only,
                            kill_group, reaped, run_on)

MESSAGE = 1 << 16
START_TIMEOUT = 120.0   # seconds a server may take to collect before the zygote forks judges itself
REPLY_TIMEOUT = 30.0    # ... and to fork a judge
WORKER_RUNS = 50        # runs a judge worker serves before it ends (and a fresh one is forked)
IDLE_WORKERS = 2        # idle workers a server keeps (the rest end: a ch05 worker holds ~33 MB of its own)
IDLE_SECONDS = 10.0     # ... and for how long, once no run has come for them
IDLE = b"idle"


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
        request = json.dumps({"impl": _impl(args), "skip": sorted(plan.skip), "cpu": plan.cpu}).encode()
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


def hold_progress(config: pytest.Config) -> None:
    """A judge's terminal (pytest's progress letters, then its summary) is written to the
    log as its buffer fills and as the run ends (`flush_output`, before the results end),
    not flushed after every test: each flush woke the grader, which reads the log as it
    comes, once per test for one letter. A judge runs no student code that could print."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    writer = getattr(reporter, "_tw", None)
    if writer is not None:
        writer.flush = lambda: None


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
    sandbox.set_thread_name("judge-server")
    guard = Guard(-1)
    server = _Serve(socket.socket(fileno=control_fd), events_fd, guard)
    run_pytest_main(args, [guard, server])
    return 0


class _Serve:
    """The plugin that turns the session into a server at its test loop."""

    def __init__(self, control: socket.socket, events_fd: int, guard: Any) -> None:
        self.control, self.events_fd, self.guard = control, events_fd, guard
        self.judges: set[int] = set()                # workers alive
        self.lines: dict[int, socket.socket] = {}    # worker -> the server's end of its line
        self.idle: dict[int, float] = {}             # workers waiting for a run -> since when
        self.cpu_of: dict[int, int | None] = {}      # worker -> the CPU of its last run
        try:   # where a run with no CPU of its own goes (`process.run_on`)
            self.everywhere: set[int] = os.sched_getaffinity(0)
        except (AttributeError, OSError):
            self.everywhere = set()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> object:
        if session.testsfailed or not session.items:
            os._exit(0)   # no server for a chapter whose tests do not collect cleanly
        hold_progress(session.config)
        self._serve(session)
        for pid in self.judges:
            kill_group(pid)
        os._exit(0)

    def _serve(self, session: pytest.Session) -> None:
        """Hand each request to an idle worker (forked when there is none) until the zygote
        hangs up."""
        fresh = _Fresh(session)
        gc.freeze()   # what collection made: the workers' collections skip it
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.control.send(b"{}")   # ready
        while True:
            self._retire()
            lines = {line.fileno(): pid for pid, line in self.lines.items()}
            timeout = IDLE_SECONDS if self.idle else None
            ready, _, _ = select.select([self.control, wake_r, *lines], [], [], timeout)
            if wake_r in ready:
                os.read(wake_r, 4096)
                self._reap()
            for fd in ready:
                if fd in lines and lines[fd] in self.lines:
                    self._heard(lines[fd])
            if self.control in ready:
                data, fds, _, _ = socket.recv_fds(self.control, MESSAGE, 8)
                if not data:
                    return   # the zygote is gone
                pid = self._assign(session, fresh, data, fds)
                self.control.send(json.dumps({"pid": pid}).encode())

    def _assign(self, session: pytest.Session, fresh: "_Fresh", data: bytes, fds: list[int]) -> int:
        """The worker that takes this request: an idle one (one whose last run was on the
        request's CPU, if any: what it holds is in that core's caches), else a new one."""
        cpu = json.loads(data).get("cpu")
        try:
            while True:
                pid = next((p for p in reversed(self.idle) if self.cpu_of.get(p) == cpu), None)
                if pid is not None:
                    del self.idle[pid]
                else:
                    pid = self.idle.popitem()[0] if self.idle else self._fork(session, fresh)
                try:
                    socket.send_fds(self.lines[pid], [data], fds)
                    self.cpu_of[pid] = cpu
                    return pid
                except OSError:   # it ended since it said it was idle
                    self._forget(pid)
        finally:
            for fd in fds:
                os.close(fd)

    def _fork(self, session: pytest.Session, fresh: "_Fresh") -> int:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = fork_only()
        if pid == 0:
            mine.detach()
            self._work(session, fresh, theirs)
        theirs.close()
        self.lines[pid] = mine
        self.judges.add(pid)
        return pid

    def _heard(self, pid: int) -> None:
        try:
            said = self.lines[pid].recv(16)
        except OSError:
            said = b""
        if said == IDLE:
            self.idle[pid] = time.monotonic()
        else:   # the worker has ended, or ends now
            self._forget(pid)

    def _retire(self) -> None:
        """End the idle workers beyond IDLE_WORKERS, and those idle for IDLE_SECONDS: the
        line closed, a worker waiting for a run ends (none is on its way: runs are only
        sent by this process, to a worker it has just taken off the idle list)."""
        now = time.monotonic()
        for n, (pid, since) in enumerate(sorted(self.idle.items(), key=lambda kv: -kv[1])):
            if n >= IDLE_WORKERS or now - since >= IDLE_SECONDS:
                self._forget(pid)

    def _forget(self, pid: int) -> None:
        line = self.lines.pop(pid, None)
        if line is not None:
            line.close()
        self.idle.pop(pid, None)
        self.cpu_of.pop(pid, None)

    def _reap(self) -> None:
        for pid, status, cpu in reaped():
            self.judges.discard(pid)
            self._forget(pid)
            try:
                os.write(self.events_fd, exit_event(pid, status, cpu))
            except OSError:
                pass

    # ----------------------------------------------------------------------- a worker

    def _work(self, session: pytest.Session, fresh: "_Fresh", line: socket.socket) -> NoReturn:
        """A worker: one run per request from the server, WORKER_RUNS at most."""
        status = CHILD_FAILED
        try:
            for other in self.lines.values():
                other.detach()   # the server's, closed below with the rest
            self.control.detach()
            streams = sys.stdout, sys.stderr   # pytest's terminal writes through these
            faults = _fault_handler_fd(session.config)   # pytest's copy of stderr, for crashes
            become_child(keep={line.fileno(), faults})
            sys.stdout, sys.stderr = streams
            from grader import sandbox
            sandbox.die_with_parent()
            sandbox.set_thread_name("judge")
            self.judges.clear()
            status = 0
            for runs in range(1, WORKER_RUNS + 1):
                data, fds, _, _ = socket.recv_fds(line, MESSAGE, 8)
                if not data:
                    break   # the server is gone
                reusable, complete = self._run(session, fresh, json.loads(data), fds, faults)
                if not reusable:
                    # a run without its `done` ends as a judge that died would: not 0
                    status = 0 if complete else CHILD_FAILED
                    break
                if runs < WORKER_RUNS:
                    line.send(IDLE)   # (after its last run, it says nothing: it ends)
        except BaseException as exc:  # noqa: BLE001 - the worker cannot go on: say so, end
            status = CHILD_FAILED
            try:
                os.write(2, f"grader: the judge failed: {type(exc).__name__}: {exc}\n".encode())
            except OSError:
                pass
        flush_output()
        os._exit(status)

    def _run(self, session: pytest.Session, fresh: "_Fresh", message: dict, fds: list[int],
             faults: int) -> tuple[bool, bool]:
        """One judge's run: what a judge forked at the test loop would do, from the tests to
        the session's end. (Whether this worker may serve another run, whether the session's
        `done` was sent.)"""
        from _pytest.main import pytest_runtestloop as test_loop

        from grader.plugin import CONNECTION_KEY, impl_dir, results_of
        result_fd, ack_fd, log_fd, student_fd = fds
        config = session.config
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        if faults >= 0:
            os.dup2(2, faults)
        run_on(message.get("cpu"), self.everywhere)   # its student's CPU
        fresh.restore(session)
        self.guard.setup_findings.clear()
        config.option.impl = message["impl"]
        config.option.student_fd = student_fd
        results_of(config).impl = str(impl_dir(config))
        _restart_clock(config)
        status, reusable = pytest.ExitCode.OK, True
        try:
            self.guard.serve(session, result_fd, ack_fd, frozenset(message["skip"]))
            test_loop(session)
            if session.testsfailed:
                status = pytest.ExitCode.TESTS_FAILED
        except pytest.UsageError as exc:
            status, reusable = pytest.ExitCode.USAGE_ERROR, False
            sys.stderr.write(f"ERROR: {exc}\n")
        except session.Failed:
            status = pytest.ExitCode.TESTS_FAILED
        except (KeyboardInterrupt, session.Interrupted, pytest.exit.Exception) as exc:
            status, reusable = pytest.ExitCode.INTERRUPTED, False
            code = getattr(exc, "returncode", None)
            if code is not None:
                status = code
        except BaseException:  # noqa: BLE001 - reported as pytest reports an internal error
            status, reusable = pytest.ExitCode.INTERNAL_ERROR, False
            config.notify_exception(pytest.ExceptionInfo.from_current(), config.option)
        finally:
            os.chdir(fresh.cwd)
            try:
                config.hook.pytest_sessionfinish(session=session, exitstatus=status)
            except BaseException:  # noqa: BLE001 - the session's end failed: no reuse
                reusable = False
            sent = self.guard.channel.fd >= 0 and self.guard.channel.sent_done
            connection = config.stash.get(CONNECTION_KEY, None)
            if connection is not None:
                del config.stash[CONNECTION_KEY]
                connection.sock.close()
            else:
                os.close(student_fd)
            if self.guard.ack_fd is not None:
                os.close(self.guard.ack_fd)
                self.guard.ack_fd = None
            # the log first: it is complete when the grader sees the results end
            flush_output()
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (1, 2, faults):
                if fd >= 0:
                    os.dup2(devnull, fd)
            os.close(devnull)
            os.close(result_fd)
            self.guard.channel.fd = -1
        return reusable and sent, sent


class _Fresh:
    """What each run of a worker starts from: the session as its server left it at the
    test loop. A run changes the items' stashes (their results), the config's stash (the
    run's results, the connection to the student), the session's counters and the terminal
    reporter's tallies; each is put back as it was before the next run."""

    def __init__(self, session: pytest.Session) -> None:
        config = session.config
        self.cwd = os.getcwd()
        self.items = list(session.items)
        self.item_stashes = [dict(item.stash._storage) for item in self.items]
        self.config_stash = dict(config.stash._storage)
        self.session_stash = dict(session.stash._storage)
        from grader.plugin import RESULTS_KEY
        self.results = copy.deepcopy(config.stash[RESULTS_KEY])
        self.reporter = config.pluginmanager.get_plugin("terminalreporter")
        self.reporter_state = {k: _copy(v) for k, v in vars(self.reporter).items()} \
            if self.reporter is not None else {}

    def restore(self, session: pytest.Session) -> None:
        from grader.plugin import MODULES_KEY, RESULTS_KEY
        config = session.config
        session.items[:] = self.items
        for item, stash in zip(self.items, self.item_stashes):
            item.stash._storage = dict(stash)
            item._report_sections = []
            item.user_properties = []
        config.stash._storage = dict(self.config_stash)
        config.stash[RESULTS_KEY] = copy.deepcopy(self.results)
        config.stash[MODULES_KEY] = {}
        session.stash._storage = dict(self.session_stash)
        session.testsfailed = 0
        session.shouldstop = session.shouldfail = False
        session.exitstatus = pytest.ExitCode.OK
        for name, value in self.reporter_state.items():
            setattr(self.reporter, name, _copy(value))


def _copy(value: Any) -> Any:
    """A copy of a container one level down (the reporter's tallies: lists in a dict)."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, (list, set)):
        return type(value)(value)
    return value
