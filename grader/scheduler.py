"""Run: grade submissions in sandboxed children, `--jobs` at a time, from one event loop.

The grader process imports torch, torchvision, numpy and pytest once (`warm_up`), then
forks one child per (submission, chapter). Up to `jobs` submissions are in flight, one
per slot (and per unprivileged uid); a single `select` loop reads every child's result
stream and output, notices exits (SIGCHLD wakes it), enforces the wall-clock limit and
cleans up. No threads, so forking stays safe.

Results arrive per test (see `grader.guard`), so a crash loses only the test in flight:
that test fails with the reason and the chapter's remaining tests run in a fresh child,
up to MAX_CRASHES times. Everything a child sends is checked against the chapter's
manifest, collected earlier in a child that never saw student code.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import selectors
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from grader import sandbox
from grader.collect import Submission, printable
from grader.plugin import ROOT
from grader.runner import PLUGINS, chapter_test_args
from grader.syllabus import CHAPTERS

MAX_CRASHES = 4                 # fresh children per chapter after crashes
STREAM_LIMIT = 4 << 20          # bytes of result stream accepted from one child
LINE_LIMIT = 256 << 10          # longest single result line
LOG_HEAD = LOG_TAIL = 16 << 10  # output kept per submission: first and last 16 KB
MESSAGE_LIMIT = 1000            # characters of a test message kept
OUTCOMES = ("passed", "failed", "error", "skipped")


# --------------------------------------------------------------------------- manifests

@dataclass(frozen=True)
class ManifestTest:
    nodeid: str
    name: str
    task: str
    points: float
    hidden: bool
    gpu: bool = False


@dataclass
class Manifest:
    """What a chapter's tests are, from a collect-only run without student code."""
    chapter: str
    tests: list[ManifestTest]
    sha256: str
    hidden_lines: list[str]

    @property
    def max_score(self) -> float:
        return sum(t.points for t in self.tests)


def tests_hash(folder: Path) -> str:
    """Content hash of a chapter's tests and the helpers they import."""
    h = hashlib.sha256()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for path in files + [ROOT / "grader" / "testing.py"]:
        h.update(str(path.relative_to(folder.parent if path.is_relative_to(folder) else ROOT)).encode())
        h.update(b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def source_lines(folder: Path, min_length: int = 20) -> list[str]:
    """Distinctive lines of the hidden test files: text that must never reach feedback.

    A line that also occurs inside one of the file's own string constants (a failure
    message quoting `optimizer.zero_grad()`, say) is left out: messages may say it."""
    lines = set()
    for path in sorted(folder.glob("test_hidden*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        said = "\n".join(_string_constants(text))
        for line in text.splitlines():
            s = line.strip()
            if len(s) >= min_length and s not in said:
                lines.add(s)
    return sorted(lines, key=len, reverse=True)


def _string_constants(source: str) -> list[str]:
    import ast
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)]


def collect_manifests(chapters: list[str], tests_root: Path) -> tuple[dict[str, Manifest], dict[str, str]]:
    """Collect the chapters' tests in a forked child; returns manifests and per-chapter errors."""
    from grader.guard import Guard

    folders = [str(tests_root / f"ch{c}") for c in chapters]
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            os.close(read_fd)
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
            import pytest
            args = []
            for name in PLUGINS:
                args += ["-p", name]
            args += folders + ["--collect-only", "-q", "-p", "no:cacheprovider", "--noconftest",
                               "--import-mode=importlib", "-c", os.devnull,
                               "--rootdir", str(tests_root.parent)]
            pytest.main(args, plugins=[Guard(write_fd)])
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    data = bytearray()
    while chunk := os.read(read_fd, 1 << 16):
        data += chunk
    os.close(read_fd)
    os.waitpid(pid, 0)
    collected = None
    for line in data.decode("utf-8", "replace").splitlines():
        msg = json.loads(line)
        if msg.get("type") == "collected":
            collected = msg
    errors: dict[str, str] = {}
    if collected is None:
        return {}, {c: "collecting the tests failed" for c in chapters}
    for err in collected.get("collection_errors", []):
        for c in chapters:
            if f"ch{c}/" in err:
                errors.setdefault(c, err)
    manifests = {}
    for c in chapters:
        tests = [ManifestTest(t["nodeid"], t["name"], t["task"], float(t["points"]), bool(t["hidden"]),
                              bool(t.get("gpu")))
                 for t in collected["tests"] if t["nodeid"].startswith(f"tests/ch{c}/")]
        if c not in errors and not tests:
            errors[c] = f"tests/ch{c} has no tests"
        if c not in errors:
            folder = tests_root / f"ch{c}"
            manifests[c] = Manifest(c, tests, tests_hash(folder), source_lines(folder))
    return manifests, errors


# --------------------------------------------------------------------------- results

@dataclass
class TestRecord:
    nodeid: str
    name: str
    task: str
    points: float
    hidden: bool
    gpu: bool = False
    outcome: str = "failed"        # passed | failed | error | skipped (only GPU tests without a GPU)
    message: str = "not run"
    duration: float = 0.0
    reported: bool = False

    @property
    def score(self) -> float:
        return self.points if self.outcome == "passed" else 0.0


@dataclass
class ChapterResult:
    chapter: str
    tests: dict[str, TestRecord]
    status: str = ""               # graded | missing | import-error | tampered | timeout | crashed | error | unreadable
    reason: str = ""
    tampered: list[str] = field(default_factory=list)
    device: str = ""
    wall: float = 0.0
    runs: int = 0
    crashes: int = 0
    first_test_crashes: int = 0     # consecutive runs that died in their first test
    file_sha256: str = ""
    tests_sha256: str = ""

    @classmethod
    def from_manifest(cls, manifest: Manifest, message: str = "not run") -> "ChapterResult":
        tests = {t.nodeid: TestRecord(t.nodeid, t.name, t.task, t.points, t.hidden, t.gpu, message=message)
                 for t in manifest.tests}
        return cls(manifest.chapter, tests, tests_sha256=manifest.sha256)

    @property
    def max_score(self) -> float:
        """Points possible here: as in `grader check`, a GPU test skipped for want of a GPU
        neither earns nor costs."""
        return sum(t.points for t in self.tests.values() if t.outcome != "skipped")

    @property
    def score(self) -> float:
        if self.status in ("tampered", "error", "unreadable", "missing"):
            return 0.0
        return sum(t.score for t in self.tests.values())

    def fail_all(self, message: str, only_unreported: bool = False) -> None:
        for t in self.tests.values():
            if only_unreported and t.reported:
                continue
            t.outcome, t.message = "failed", message


@dataclass
class SubmissionResult:
    submission: Submission
    chapters: dict[str, ChapterResult]
    log: str = ""
    wall: float = 0.0
    isolation: str = ""
    stray_files: list[str] = field(default_factory=list)

    @property
    def score(self) -> float:
        return sum(c.score for c in self.chapters.values())

    @property
    def max_score(self) -> float:
        return sum(c.max_score for c in self.chapters.values())


class LogBuffer:
    """Keeps the first and the last bytes of a stream of any length."""

    def __init__(self, head: int = LOG_HEAD, tail: int = LOG_TAIL) -> None:
        self.head_limit, self.tail_limit = head, tail
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        room = self.head_limit - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > 2 * self.tail_limit:
                del self.tail[: len(self.tail) - self.tail_limit]

    def text(self) -> str:
        tail = bytes(self.tail[-self.tail_limit:])
        dropped = self.total - len(self.head) - len(tail)
        middle = f"\n[... {dropped} bytes of output not kept ...]\n".encode() if dropped > 0 else b""
        return (bytes(self.head) + middle + tail).decode("utf-8", "replace")


def death_reason(status: int, limits: sandbox.Limits) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGSEGV:
            return "the test process crashed with a segmentation fault (SIGSEGV)"
        if sig == signal.SIGXFSZ:
            return f"the code wrote a file larger than {limits.fsize_mb} MB"
        if sig == signal.SIGKILL:
            return "the test process was killed (SIGKILL), most likely for using too much memory"
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"the test process died from signal {name}"
    if os.WIFEXITED(status):
        return (f"the test process exited with status {os.WEXITSTATUS(status)} before reporting "
                "results: does the code call sys.exit() or os._exit()?")
    return "the test process ended without reporting results"


# --------------------------------------------------------------------------- the loop

@dataclass
class Settings:
    limits: sandbox.Limits
    isolation: sandbox.Isolation
    work_root: Path
    datasets: Path
    tests_root: Path
    hide: list[Path]
    chapters: list[str]
    manifests: dict[str, Manifest]


class Run:
    """One child: one chapter of one submission (again after a crash)."""

    def __init__(self, job: "Job", chapter: str, skip: frozenset[str]) -> None:
        self.job, self.chapter, self.skip = job, chapter, skip
        self.pid = 0
        self.result_fd = self.log_fd = self.ack_fd = -1
        self.buffer = bytearray()
        self.received = 0
        self.collected: set[str] | None = None
        self.device = "cpu"
        self.current: str | None = None
        self.done: dict | None = None
        self.timed_out = False
        self.exit_status: int | None = None
        self.started = time.monotonic()


class Job:
    """One submission in flight on a slot."""

    def __init__(self, sub: Submission, slot: int, uid: int, ws: sandbox.Workspace,
                 chapters: dict[str, ChapterResult], queue: list[str], deadline: float) -> None:
        self.sub, self.slot, self.uid, self.ws = sub, slot, uid, ws
        self.chapters, self.queue, self.deadline = chapters, queue, deadline
        self.log = LogBuffer()
        self.started = time.monotonic()
        self.run: Run | None = None


class Scheduler:
    def __init__(self, settings: Settings, uids: list[int]) -> None:
        self.s = settings
        self.uids = uids
        self.selector = selectors.DefaultSelector()
        self.exited: dict[int, int] = {}
        self.jobs: dict[int, Job] = {}  # slot -> job
        self.runs_by_pid: dict[int, Run] = {}
        self.counter = 0
        self.wake_r, self.wake_w = os.pipe()
        for fd in (self.wake_r, self.wake_w):
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)

    # -- public
    def grade(self, submissions: Iterable[Submission],
              on_done: Callable[[SubmissionResult], None]) -> None:
        pending: Iterator[Submission] = iter(submissions)
        exhausted = False
        old_handler = signal.signal(signal.SIGCHLD, lambda *_: None)
        old_wakeup = signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        self.selector.register(self.wake_r, selectors.EVENT_READ, None)
        sandbox.become_subreaper()
        try:
            while True:
                for slot in range(len(self.uids)):
                    while slot not in self.jobs and not exhausted:
                        sub = next(pending, None)
                        if sub is None:
                            exhausted = True
                            break
                        finished = self._start_job(sub, slot)
                        if finished is not None:
                            on_done(finished)
                if not self.jobs:
                    break
                self._wait()
                for result in self._advance():
                    on_done(result)
        finally:
            for job in list(self.jobs.values()):
                self._abort(job)
            signal.set_wakeup_fd(old_wakeup)
            signal.signal(signal.SIGCHLD, old_handler)
            self.selector.unregister(self.wake_r)
            os.close(self.wake_r)
            os.close(self.wake_w)

    # -- jobs
    def _start_job(self, sub: Submission, slot: int) -> SubmissionResult | None:
        chapters: dict[str, ChapterResult] = {}
        queue = []
        for c in self.s.chapters:
            manifest = self.s.manifests[c]
            filename = CHAPTERS[c].filename
            if sub.error:
                cr = ChapterResult.from_manifest(manifest, f"not graded: {sub.error}")
                cr.status, cr.reason = "unreadable", sub.error
            elif filename not in sub.files:
                cr = ChapterResult.from_manifest(manifest, f"{filename} missing from the submission")
                cr.status, cr.reason = "missing", f"{filename} missing"
            else:
                cr = ChapterResult.from_manifest(manifest)
                cr.file_sha256 = hashlib.sha256(sub.files[filename]).hexdigest()
                queue.append(c)
            chapters[c] = cr
        self.counter += 1
        uid = self.uids[slot]
        ws = sandbox.Workspace(self.s.work_root / f"{slot}-{self.counter}", uid, uid)
        job = Job(sub, slot, uid, ws, chapters, queue, time.monotonic() + self.s.limits.wall)
        if not queue:
            return self._result(job)
        self.jobs[slot] = job
        try:
            ws.create(sub.files)
        except OSError as exc:
            for c in queue:
                self._infrastructure_error(job.chapters[c], f"could not prepare the working folder: {exc}")
            job.queue.clear()
        return self._launch(job)

    def _launch(self, job: Job, skip: frozenset[str] = frozenset()) -> SubmissionResult | None:
        """Start the job's next run; returns the job's result instead when nothing is left."""
        while job.queue and time.monotonic() < job.deadline:
            chapter = job.queue[0]
            run = Run(job, chapter, skip)
            job.run = run
            job.chapters[chapter].runs += 1
            job.log.add(f"\n==== ch{chapter} (run {job.chapters[chapter].runs}) ====\n".encode())
            try:
                job.ws.install_tests(self.s.tests_root / f"ch{chapter}")
                self._fork(run)
                return None
            except OSError as exc:  # the machine, not the student: say so, go on
                self._close_run(run)
                self._infrastructure_error(job.chapters[chapter], f"could not start the tests: {exc}")
                job.queue.pop(0)
                job.run, skip = None, frozenset()
        for c in job.queue:  # the time limit ran out before these chapters started
            cr = job.chapters[c]
            cr.status = "timeout"
            cr.reason = f"not run: the submission used up its {self.s.limits.wall:g} s time limit"
            cr.fail_all(cr.reason)
        job.queue.clear()
        self.jobs.pop(job.slot, None)
        return self._result(job)

    @staticmethod
    def _infrastructure_error(cr: ChapterResult, reason: str) -> None:
        cr.status, cr.reason = "error", f"the grader {reason}"
        cr.fail_all(f"not graded: {cr.reason}", only_unreported=True)

    def _finish_chapter(self, job: Job) -> SubmissionResult | None:
        job.queue.pop(0)
        job.run = None
        return self._launch(job)

    def _result(self, job: Job) -> SubmissionResult:
        stray = []
        if job.ws.path.exists():
            sandbox.kill_uid(job.uid)
            stray = sandbox.remove_stray_files(job.uid)
            job.ws.destroy()
        for cr in job.chapters.values():
            _settle_status(cr)
        return SubmissionResult(job.sub, job.chapters, job.log.text(), time.monotonic() - job.started,
                                self.s.isolation.summary(), stray)

    def _abort(self, job: Job) -> None:
        if job.run and job.run.pid:
            _kill_group(job.run.pid)
            self._close_run(job.run)
            if job.run.pid not in self.exited:
                try:
                    os.waitpid(job.run.pid, 0)
                except ChildProcessError:
                    pass
        sandbox.kill_uid(job.uid)
        sandbox.remove_stray_files(job.uid)
        job.ws.destroy()
        self.jobs.pop(job.slot, None)

    # -- children
    def _fork(self, run: Run) -> None:
        job = run.job
        res_r, res_w = os.pipe()
        log_r, log_w = os.pipe()
        ack_r, ack_w = os.pipe()
        extra = ["-c", os.devnull, "--noconftest", "-s", "--tb=short",
                 "-W", "ignore::pytest.PytestAssertRewriteWarning",
                 "--timeout", f"{self.s.limits.test_timeout:g}",
                 "--basetemp", str(job.ws.tmp / "pytest"),
                 "--datasets", str(self.s.datasets)]
        args = chapter_test_args(run.chapter, job.ws.student, tests_dir=job.ws.tests, extra=extra)
        for name in reversed(PLUGINS):
            args = ["-p", name] + args
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        try:
            pid = os.fork()
        except OSError:
            for fd in (res_r, res_w, log_r, log_w, ack_r, ack_w):
                os.close(fd)
            raise
        if pid == 0:
            self._child(run, args, res_w, log_w, ack_r, parent)
        os.close(res_w)
        os.close(log_w)
        os.close(ack_r)
        run.pid, run.result_fd, run.log_fd, run.ack_fd = pid, res_r, log_r, ack_w
        for fd in (res_r, log_r):
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
            self.selector.register(fd, selectors.EVENT_READ, (run, "result" if fd == res_r else "log"))
        self.runs_by_pid[pid] = run

    def _child(self, run: Run, args: list[str], res_w: int, log_w: int, ack_r: int, parent: int) -> None:
        status = 70
        try:
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_DFL)
            os.setpgid(0, 0)
            keep = {res_w, log_w, ack_r}
            for name in os.listdir("/proc/self/fd"):
                fd = int(name)
                if fd > 2 and fd not in keep:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.close(devnull)
            os.dup2(log_w, 1)
            os.dup2(log_w, 2)
            os.close(log_w)
            _forget_test_modules(self.s.tests_root)
            ws = run.job.ws
            sandbox.enter(ws, self.s.limits, self.s.isolation, self.s.hide,
                          sandbox.child_env(ws, self.s.datasets), parent)
            import pytest

            from grader.guard import Guard
            pytest.main(args, plugins=[Guard(res_w, ack_r, run.skip)])
            status = 0
        except BaseException:  # noqa: BLE001 - reported through the log
            try:
                os.write(2, ("grader: the sandbox failed: " + traceback.format_exc()).encode())
            except BaseException:  # noqa: BLE001
                pass
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            except BaseException:  # noqa: BLE001
                pass
            os._exit(status)

    # -- events
    def _wait(self) -> None:
        now = time.monotonic()
        deadlines = [j.deadline for j in self.jobs.values() if j.run and not j.run.timed_out]
        timeout = max(0.0, min(deadlines) - now) if deadlines else None
        timeout = 1.0 if timeout is None else min(timeout, 1.0)
        for key, _ in self.selector.select(timeout):
            if key.data is None:
                try:
                    while os.read(self.wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
                continue
            run, kind = key.data
            self._read(run, kind)

    def _read(self, run: Run, kind: str, drain: bool = False) -> None:
        fd = run.result_fd if kind == "result" else run.log_fd
        if fd < 0:
            return
        for _ in range(64 if drain else 4):
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                self._unregister(run, kind)
                return
            if kind == "log":
                run.job.log.add(chunk)
            else:
                self._on_result_bytes(run, chunk)

    def _unregister(self, run: Run, kind: str) -> None:
        fd = run.result_fd if kind == "result" else run.log_fd
        if fd < 0:
            return
        try:
            self.selector.unregister(fd)
        except (KeyError, ValueError):
            pass
        os.close(fd)
        if kind == "result":
            run.result_fd = -1
        else:
            run.log_fd = -1

    def _on_result_bytes(self, run: Run, chunk: bytes) -> None:
        run.received += len(chunk)
        if run.received > STREAM_LIMIT:
            self._violation(run, "the results channel carried far more data than results")
            self._unregister(run, "result")
            _kill_group(run.pid)
            return
        run.buffer += chunk
        while b"\n" in run.buffer:
            line, _, rest = bytes(run.buffer).partition(b"\n")
            run.buffer = bytearray(rest)
            try:
                msg = json.loads(line)
                if not isinstance(msg, dict):
                    raise ValueError("not an object")
            except ValueError:
                self._violation(run, "the results channel carried data that is not a result")
                continue
            self._on_message(run, msg)
        if len(run.buffer) > LINE_LIMIT:
            self._violation(run, "the results channel carried an overlong line")
            run.buffer.clear()

    def _on_message(self, run: Run, msg: dict) -> None:
        cr = run.job.chapters[run.chapter]
        kind = msg.get("type")
        if kind == "collected" and run.collected is None:
            expected = {n for n, t in cr.tests.items() if n not in run.skip}
            got = {t.get("nodeid") for t in msg.get("tests", []) if isinstance(t, dict)}
            errors = [printable(str(e)) for e in msg.get("collection_errors", [])]
            run.collected = got
            run.device = printable(str(msg.get("device", "cpu")))[:20]
            if errors or got != expected:
                detail = errors[0] if errors else (
                    f"{len(got ^ expected)} tests differ from the instructor's collection")
                cr.status = "error"
                cr.reason = f"the tests could not be collected in the sandbox: {detail}"
                _kill_group(run.pid)
                return
            run.job.ws.remove_test_files()
            try:
                os.write(run.ack_fd, b"1")
            except OSError:
                pass
            self._close_ack(run)
        elif kind == "start" and run.collected is not None:
            nodeid = msg.get("nodeid")
            if nodeid not in run.collected or cr.tests[nodeid].reported:
                self._violation(run, f"a result for an unexpected test ({printable(str(nodeid))[:80]})")
            run.current = nodeid
        elif kind == "test" and run.collected is not None:
            nodeid = msg.get("nodeid")
            record = cr.tests.get(nodeid) if nodeid in run.collected else None
            outcome = msg.get("outcome")
            if record is None or record.reported or nodeid != run.current or outcome not in OUTCOMES:
                self._violation(run, f"an unexpected or repeated result ({printable(str(nodeid))[:80]})")
                return
            record.reported = True
            record.outcome = outcome
            record.message = printable(str(msg.get("message", "")))[:MESSAGE_LIMIT]
            if outcome == "passed":
                record.message = ""
            elif outcome == "skipped" and not (record.gpu and run.device != "cuda"):
                # only the plugin's "no GPU here" skip is neutral; a skip (or xfail) raised by
                # the code under test would otherwise dodge the test's points
                record.outcome = "failed"
                record.message = (f"the test was skipped from inside the code under test, which "
                                  f"counts as a failure ({record.message})")
            try:
                record.duration = max(0.0, float(msg.get("duration", 0.0)))
            except (TypeError, ValueError):
                record.duration = 0.0
            run.current = None
            self._audit(run, msg.get("audit"), f"after {record.name}")
        elif kind == "done" and run.collected is not None and run.done is None:
            run.done = msg
            cr.device = printable(str(msg.get("device", "")))[:20]
            self._audit(run, msg.get("audit"), "at the end of the session")
        else:
            self._violation(run, f"an unexpected message ({printable(str(kind))[:40]})")

    def _audit(self, run: Run, findings, when: str) -> None:
        if not findings:
            return
        if not isinstance(findings, list):
            findings = ["the tamper audit's report"]
        cr = run.job.chapters[run.chapter]
        for f in findings[:20]:
            text = f"{printable(str(f))[:120]} was replaced ({when})"
            if not any(t.startswith(printable(str(f))[:120] + " ") for t in cr.tampered):
                cr.tampered.append(text)

    def _violation(self, run: Run, what: str) -> None:
        cr = run.job.chapters[run.chapter]
        if len(cr.tampered) < 20:
            cr.tampered.append(f"results channel: {what}")

    def _close_ack(self, run: Run) -> None:
        if run.ack_fd >= 0:
            os.close(run.ack_fd)
            run.ack_fd = -1

    def _close_run(self, run: Run) -> None:
        self._unregister(run, "result")
        self._unregister(run, "log")
        self._close_ack(run)

    def _advance(self) -> list[SubmissionResult]:
        """Reap children, enforce deadlines, move finished runs on."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid in self.runs_by_pid:
                self.exited[pid] = status
        now = time.monotonic()
        done = []
        for job in list(self.jobs.values()):
            run = job.run
            if run is None:
                continue
            if not run.timed_out and now >= job.deadline and run.pid not in self.exited:
                run.timed_out = True
                _kill_group(run.pid)
                sandbox.kill_uid(job.uid)
            if run.pid in self.exited:
                result = self._end_run(run, self.exited.pop(run.pid))
                if result is not None:
                    done.append(result)
        return done

    def _end_run(self, run: Run, status: int) -> SubmissionResult | None:
        job = run.job
        del self.runs_by_pid[run.pid]
        self._read(run, "result", drain=True)
        self._read(run, "log", drain=True)
        _kill_group(run.pid)
        sandbox.kill_uid(job.uid)
        sandbox.kill_orphans(set(self.runs_by_pid))
        self._close_run(run)
        cr = job.chapters[run.chapter]
        cr.wall += time.monotonic() - run.started
        unreported = [t for n, t in cr.tests.items() if not t.reported and n not in run.skip]
        if cr.tampered:
            cr.status = "tampered"
        elif cr.status == "error":
            cr.fail_all(f"not graded: {cr.reason}", only_unreported=True)
        elif run.timed_out:
            cr.status = "timeout"
            cr.reason = f"stopped after the submission's time limit of {self.s.limits.wall:g} s"
            for t in unreported:
                t.message = (f"stopped: {cr.reason} (during this test)" if t.nodeid == run.current
                             else f"not run: {cr.reason}")
        elif run.done is not None and not unreported:
            pass
        elif run.collected is None:
            cr.status = "error"
            cr.reason = "the tests did not start: " + (_last_line(job.log.text()) or death_reason(status, self.s.limits))
            cr.fail_all(f"not run: {cr.reason}", only_unreported=True)
        else:
            why = death_reason(status, self.s.limits) if run.done is None else _early_end(run, job.log)
            cr.crashes += 1
            if run.current is not None and run.current in cr.tests:
                crashed = cr.tests[run.current]
                crashed.reported = True
                crashed.outcome, crashed.message = "failed", f"{why} (during this test)"
            remaining = [t for t in unreported if t.nodeid != run.current]
            # two runs in a row that died in their first test: it is the import, stop trying
            first_test = not any(cr.tests[n].reported for n in run.collected if n != run.current)
            cr.first_test_crashes = cr.first_test_crashes + 1 if first_test else 0
            hopeless = cr.first_test_crashes >= 2
            if remaining and not hopeless and cr.crashes < MAX_CRASHES and time.monotonic() < job.deadline:
                skip = frozenset(n for n, t in cr.tests.items() if t.reported)
                job.log.add(f"\n[grader: {why}; running the remaining tests in a fresh process]\n".encode())
                return self._launch(job, skip)
            cr.status = "crashed"
            cr.reason = why
            for t in remaining:
                t.message = f"not run: {why} in an earlier test"
        return self._finish_chapter(job)


def _early_end(run: Run, log: LogBuffer) -> str:
    """Why a session that reported `done` left tests unrun (pytest.exit, an internal error)."""
    code = run.done.get("exit_code") if run.done else None
    detail = ""
    for line in reversed(log.text().splitlines()):
        if line.startswith("INTERNALERROR> ") and not line.startswith("INTERNALERROR>  "):
            detail = line[len("INTERNALERROR> "):].strip()
            break
    return f"the test session stopped early (pytest exit code {code})" + (f": {detail}" if detail else "")


def _forget_test_modules(tests_root: Path) -> None:
    """Drop modules imported from the instructor's tests folder (when grading from inside
    the project's own test run): the sandbox imports its own copy under the same names."""
    roots = {str(tests_root.resolve()), str((ROOT / "tests").resolve())}
    for name, module in list(sys.modules.items()):
        try:
            places = [getattr(module, "__file__", None) or ""]
            path = getattr(module, "__path__", None)
            if isinstance(path, list):
                places += path
            if any(isinstance(p, str) and p.startswith(r) for r in roots for p in places):
                del sys.modules[name]
        except Exception:  # noqa: BLE001 - odd module objects are not ours
            continue


def _settle_status(cr: ChapterResult) -> None:
    """Name what happened to a chapter when nothing more specific did."""
    if cr.status:
        if cr.status == "tampered":
            cr.reason = "tampered: " + "; ".join(cr.tampered[:5])
        return
    failed = [t for t in cr.tests.values() if t.outcome in ("failed", "error")]
    messages = {t.message for t in failed}
    import_problem = len(messages) == 1 and len(failed) == len(cr.tests) and _is_import_error(next(iter(messages)))
    if import_problem:
        cr.status, cr.reason = "import-error", next(iter(messages))
    else:
        cr.status = "graded"


def _is_import_error(message: str) -> bool:
    return (message.startswith("importing ") or " has a syntax error at line " in message
            or " not found in " in message)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip() and not ln.startswith("====")]
    return lines[-1][:300] if lines else ""


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
