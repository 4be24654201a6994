"""The zygote: a clean, warm process that forks every process that will run student code.

`grader grade` forks the zygote first, before it reads a single submission or hidden test.
The zygote then imports torch, numpy, pytest and the grading plugins once, straight away,
while the grader reads the submissions (the expensive part; the calibration runs meanwhile
in a child of its own, `grader.calibration.Beside`), and afterwards only forks: a grading
child per (submission, chapter) run (for a judged chapter, the student's process; its
judge comes from the chapter's judge server, `grader.judgeserver`, which the zygote forks
once), and the collect-only child that makes the manifests. So a student's process
descends from a parent that never held another submission's files, the gradebook or the
hidden tests' text: walking frames or the heap from student code finds none of them.

Two Unix sockets (SOCK_SEQPACKET, one message each) join the grader and the zygote:

    control   grader -> zygote   {"op": "warm"|"collect"|"grade"|"cuda-probe"|"quit", ...}, descriptors
                                  passed alongside (SCM_RIGHTS); one reply per request
    events    zygote -> grader   {"pid": ..., "status": ..., "cpu": ...} when a child ends
                                  (a judge server's judges: sent by their server)

The zygote reaps its children (it is their parent, and a subreaper for their orphans) and
reports each exit with the child's CPU time; it kills every child and exits when the grader
goes away. Linux only, like the rest of the cohort grader.
"""
from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from grader import accounting, sandbox
from grader.judgeserver import Servers
from grader.process import (exit_event, fork_child, forget_test_modules, huge_static_data, kill_group,
                            one_blas_thread, reaped)

MESSAGE = 1 << 16


class Zygote:
    """The grader's handle on its zygote."""

    def __init__(self, tests_root: Path, calibrate: bool) -> None:
        """The zygote starts importing (and `calibrate`s) as soon as it is forked; `warm_up`
        collects the outcome."""
        self.control, zygote_control = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.events, zygote_events = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        keep = {zygote_control.fileno(), zygote_events.fileno()}
        self.pid = fork_child(lambda: _serve(zygote_control, zygote_events, tests_root, calibrate),
                              keep=keep, output=sys.stderr.fileno())
        zygote_control.close()
        zygote_events.close()
        self.events.setblocking(False)
        self.warming = True   # busy importing: it answers nothing until that is done

    def request(self, message: dict[str, Any], fds: list[int] = ()) -> dict[str, Any]:
        socket.send_fds(self.control, [json.dumps(message).encode()], list(fds))
        return self._reply(str(message.get("op")))

    def warm_up(self, vision: bool, meanwhile: Callable[[], None] | None = None) -> dict[str, Any]:
        """Wait for the zygote's imports (and torchvision's, with `vision`) and calibration;
        `meanwhile()` runs here as it does (time in which this process would only wait)."""
        socket.send_fds(self.control, [json.dumps({"op": "warm", "vision": vision}).encode()], [])
        if meanwhile is not None:
            meanwhile()
        try:
            return self._reply("warm")
        finally:
            self.warming = False

    def _reply(self, op: str) -> dict[str, Any]:
        data = self.control.recv(MESSAGE)
        if not data:
            raise OSError("the grader's zygote process ended unexpectedly")
        reply = json.loads(data)
        if "error" in reply:
            raise OSError(f"the zygote could not {op}: {reply['error']}")
        return reply

    def fork(self, op: str, payload: dict[str, Any], fds: list[int]) -> int:
        return int(self.request({"op": op, **payload}, fds)["pid"])

    def fork_pair(self, payload: dict[str, Any], fds: list[int]) -> tuple[int, int, bool]:
        """A judged chapter's judge and student processes: (judge pid, student pid, whether
        the judge is a judge server's worker, which lives on after the run)."""
        reply = self.request({"op": "grade", "judged": True, **payload}, fds)
        return int(reply["pid"]), int(reply["student"]), bool(reply.get("worker"))

    def exits(self) -> list[tuple[int, int, float]]:
        """(pid, wait status, CPU seconds) of children that ended since the last call."""
        ended = []
        while True:
            try:
                data = self.events.recv(MESSAGE)
            except BlockingIOError:
                return ended
            if not data:
                return ended
            event = json.loads(data)
            ended.append((int(event["pid"]), int(event["status"]), float(event["cpu"])))

    def close(self) -> None:
        """Ask the zygote to end its children and itself; one still importing (a run that
        ended before it needed it) is killed instead of waited for."""
        if not self.warming:
            try:
                self.request({"op": "quit"})
            except (OSError, ValueError):
                pass
        self.control.close()
        self.events.close()
        kill_group(self.pid)
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


# --------------------------------------------------------------------------- the zygote's side

def _serve(control: socket.socket, events: socket.socket, tests_root: Path, calibrate: bool) -> int:
    one_blas_thread()   # before torch (and so numpy) loads
    sandbox.set_thread_name("zygote")
    sandbox.become_subreaper()
    sandbox.die_with_parent()
    forget_test_modules(tests_root)
    warmed = _warm(calibrate)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    children: set[int] = set()
    servers = Servers(events)
    try:
        while True:
            ready, _, _ = select.select([control, wake_r], [], [])
            if wake_r in ready:
                os.read(wake_r, 4096)
                _reap(children, servers, events)
            if control in ready:
                data, fds, _, _ = socket.recv_fds(control, MESSAGE, 8)
                if not data:
                    return 0  # the grader is gone
                message = json.loads(data)
                if message["op"] == "quit":
                    control.send(b"{}")
                    return 0
                try:
                    reply = _vision(message, warmed) if message["op"] == "warm" else \
                        _handle(message, fds, children, servers)
                except Exception as exc:  # noqa: BLE001 - reported to the grader, which decides
                    reply = {"error": f"{type(exc).__name__}: {exc}"}
                finally:
                    for fd in fds:
                        os.close(fd)
                if message["op"] == "warm" and "error" not in reply:
                    # beside the rest of the start (the tests' collection, the first forks),
                    # on a thread of its own: madvise waits with the interpreter's lock released
                    named = threading.Event()
                    threading.Thread(target=_huge_pages, args=(named,), name=HUGE_PAGES_THREAD,
                                     daemon=True).start()
                    named.wait(1.0)
                control.send(json.dumps(reply).encode())
    finally:
        accounting.kill_orphans(children | servers.pids | servers.judges, scan=True)
        servers.close()
        for pid in children:
            kill_group(pid)


HUGE_PAGES_THREAD = "huge-pages"


def _huge_pages(named: threading.Event) -> None:
    """The zygote's thread that moves its static data to huge pages (`huge_static_data`),
    named so in /proc (`comm`) before the zygote goes on, and then ended."""
    sandbox.set_thread_name(HUGE_PAGES_THREAD)
    named.set()
    huge_static_data()


def _warm(calibrate: bool) -> dict[str, Any]:
    """What every child needs, imported once; the calibration's outcome (or what failed),
    for the grader's `warm` request."""
    try:
        from grader.process import paused_gc, warm_up
        beside = None
        with paused_gc():
            if calibrate:
                import torch  # noqa: F401 - all the calibration needs: it runs beside the rest
                from grader.calibration import Beside
                beside = Beside()
            import grader.guard  # noqa: F401 - the tamper audit's reference identities, taken here
            warm_up(vision=False)
        return {"calibration": asdict(beside.result())} if beside is not None else {}
    except Exception as exc:  # noqa: BLE001 - reported to the grader, which decides
        return {"error": f"{type(exc).__name__}: {exc}"}


def _vision(message: dict[str, Any], warmed: dict[str, Any]) -> dict[str, Any]:
    """The `warm` request: torchvision too if the graded chapters use it, then `warmed`."""
    if message.get("vision") and "error" not in warmed:
        import gc

        from grader.process import paused_gc
        with paused_gc():
            import torchvision  # noqa: F401
        gc.freeze()
    return warmed


def _handle(message: dict[str, Any], fds: list[int], children: set[int],
            servers: Servers) -> dict[str, Any]:
    op = message["op"]
    if op == "collect":
        from grader.manifest import collect_in_child
        (write_fd,) = fds
        pid = fork_child(lambda: collect_in_child(message["args"], write_fd), keep={write_fd})
    elif op == "grade":
        from grader import child
        result_fd, ack_fd, log_fd = fds
        plan = child.plan_from_dict(message["plan"], result_fd, ack_fd, os.getpid())
        if plan.isolation.mount_namespace:
            sandbox.private_folders(plan.workspace, plan.datasets)   # once: inherited from here on
        if message.get("judged"):
            # Two processes joined by a socket: the student's (sandboxed) first, then the
            # judge; the student's is this clean process's child, the judge its own or
            # (forked after collection) its chapter's judge server's, neither the other's.
            judge_end, student_end = socket.socketpair()
            try:
                student = fork_child(lambda: child.serve_student(plan, student_end.fileno()),
                                     keep={student_end.fileno()}, output=log_fd)
                children.add(student)
                student_end.close()
                pid = servers.judge(plan, plan.args, [result_fd, ack_fd, log_fd, judge_end.fileno()]) \
                    if message.get("judge_server", True) else None
                worker = pid is not None
                if pid is None:
                    pid = fork_child(lambda: child.run_judge(plan, judge_end.fileno()),
                                     keep={result_fd, ack_fd, judge_end.fileno()}, output=log_fd)
                    children.add(pid)
            finally:
                judge_end.close()
                student_end.close()
            return {"pid": pid, "student": student, "worker": worker}
        pid = fork_child(lambda: child.run(plan), keep={result_fd, ack_fd}, output=log_fd)
    elif op == "cuda-probe":  # --require-gpu: CUDA in a child made like the grading ones
        from grader import gpu
        (write_fd,) = fds
        me = os.getpid()
        pid = fork_child(lambda: gpu.probe_in_child(message, write_fd, me), keep={write_fd})
    else:
        raise ValueError(f"unknown request {op!r}")
    children.add(pid)
    return {"pid": pid}


def _reap(children: set[int], servers: Servers, events: socket.socket) -> None:
    for pid, status, cpu in reaped():
        if pid in children or pid in servers.judges:
            # (a server's judge reaches here only if its server died first)
            children.discard(pid)
            servers.judges.discard(pid)
            events.send(exit_event(pid, status, cpu))
        # a judge server is not the grader's business; anything else was an orphan of
        # student code re-parented here: reaped, gone
        servers.ended(pid)
    # judges orphaned by a dead server are re-parented here too: they finish their runs
    servers.prune()
    accounting.kill_orphans(children | servers.pids | servers.judges)
