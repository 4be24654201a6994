"""`grader grade`'s runtime: sandboxed children, `--jobs` at a time, from one event loop.

The grader process imports torch, torchvision, numpy and pytest once, then forks one
child per (submission, chapter) (`grader.child` is the child's side). Up to `jobs`
submissions are in flight, one per slot (each with two unprivileged uids); a single `select`
loop reads every child's result stream and output, notices exits (SIGCHLD wakes it),
enforces the wall-clock limit and cleans up. No threads, so forking stays safe.

A slot's next submission starts as soon as its judge has sent its last result (the
results are complete, the student's process is killed then): the last few milliseconds of
the old one (the end of its judge's session, its processes' exit, its folder's removal, its
feedback) overlap the new one, which runs under the slot's other uid, so nothing of one can
meet the other.

Results arrive per test, so a crash loses only the test in flight: that test fails with
the reason and the chapter's remaining tests run in a fresh child, up to MAX_CRASHES
times. What a child sends is validated by `grader.protocol` against the chapter's
manifest (`grader.manifest`); this module only moves bytes and processes.
"""
from __future__ import annotations

import fcntl
import os
import selectors
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from grader import accounting, child, sandbox
from grader.manifest import Manifest
from grader.process import EXIT_NO_STUDENT, EXIT_STUDENT_GONE, LogBuffer, chapter_test_args, death_reason, kill_group
from grader.protocol import ACK, STOP, Action, ResultStream
from grader.redact import printable
from grader.results import ChapterResult, Outcome, Status, SubmissionResult
from grader.submissions import Submission
from grader.syllabus import CHAPTERS
from grader.timelimits import SOLO_FACTOR, Stop, budget, exceeded
from grader.zygote import Zygote

MAX_CRASHES = 4                 # fresh children per chapter after crashes
TICK = 0.25                     # seconds between CPU-time samples of running children, at least
MAX_TICK = 2.0                  # ... and at most (see `sample_interval`)
CORES = os.cpu_count() or 1
# Judges forked by their chapter's judge server, after collection (`grader.judgeserver`),
# rather than by the zygote, each collecting the tests again: off only to compare the two.
JUDGE_SERVERS = True


def sample_interval(cpu_left: float) -> float:
    """Seconds until the next scan of a job's processes, with `cpu_left` CPU seconds of its
    limit left: at most half of them can be used by then even on every core at once, so the
    limit is never passed between two scans by more than one TICK on every core, as with a
    scan every TICK; a job far from its limit is scanned every MAX_TICK instead (a scan
    reads every process's /proc entry: about 3 ms here, 1.5 s of the grader's own CPU time
    per 40 ch05 submissions when every job was scanned every TICK)."""
    return min(MAX_TICK, max(TICK, cpu_left / (2 * CORES)))


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
    zygote: Zygote                   # forks every child that runs student code
    # judges share student-independent reference runs here (grader.testing.reference):
    # only with a separate uid per job, in a folder only the grader's uid can open
    reference_cache: Path | None = None
    # the CPU of each slot's processes (`process.slot_cpus`); () lets the kernel place them
    cpus: tuple[int, ...] = ()


class Run:
    """One child: one chapter of one submission (again after a crash)."""

    def __init__(self, job: "Job", chapter: str, skip: frozenset[str]) -> None:
        self.job, self.chapter = job, chapter
        self.stream = ResultStream(job.chapters[chapter], skip)
        self.pid = 0                        # the child that runs pytest (the judge, if judged)
        self.worker = 0                     # the judge server's worker that runs the judge:
        #                                     `pid` is then a number of this run's own (< 0)
        self.student = 0                    # a judged chapter's student process
        self.student_status: int | None = None
        self.judge_status: int | None = None    # the pytest child's exit, once reaped
        self.judged = judged(job, chapter)
        self.result_fd = self.log_fd = self.ack_fd = -1
        self.started = time.monotonic()
        self.cpu = 0.0                      # CPU seconds of this child's processes so far
        self.test_cpu0 = 0.0                # ... when the test in flight started
        self.test_wall0 = self.started
        self.test_cpu = 0.0                 # ... the test's own CPU time, as last measured
        self.next_test_sample = 0.0         # when the test's CPU time is to be measured next
        self.next_sample = 0.0              # when `cpu` is to be measured next (`_launch`)
        self.stop: Stop | None = None       # why the parent killed it, if it did

    @property
    def measured(self) -> int:
        """The process whose tree runs the student's code: its CPU time is what counts."""
        return self.student or self.pid

    def kill(self) -> None:
        """Kill the run's process groups, never one already reaped: its number may belong to
        a new process by now; nor a worker that has sent this run's `done` (it may be
        serving the next run by now)."""
        if self.pid and self.judge_status is None and not (self.worker and self.stream.done is not None):
            kill_group(self.worker or self.pid)
        if self.student and self.student_status is None:
            kill_group(self.student)

    # -- its pipes
    def unregister(self, selector: selectors.BaseSelector, kind: str) -> None:
        """Stop reading the result or log pipe, and close it."""
        fd = self.result_fd if kind == "result" else self.log_fd
        if fd < 0:
            return
        try:
            selector.unregister(fd)
        except (KeyError, ValueError):
            pass
        os.close(fd)
        if kind == "result":
            self.result_fd = -1
        else:
            self.log_fd = -1

    def close_ack(self) -> None:
        if self.ack_fd >= 0:
            os.close(self.ack_fd)
            self.ack_fd = -1

    def close(self, selector: selectors.BaseSelector) -> None:
        self.unregister(selector, "result")
        self.unregister(selector, "log")
        self.close_ack()


class Job:
    """One submission in flight on a slot."""

    def __init__(self, sub: Submission, slot: int, uid: int, ws: sandbox.Workspace,
                 chapters: dict[str, ChapterResult], queue: list[str], deadline: float,
                 tests_root: Path) -> None:
        self.sub, self.slot, self.uid, self.ws = sub, slot, uid, ws
        self.tests_root = tests_root
        self.chapters, self.queue, self.deadline = chapters, queue, deadline
        self.log = LogBuffer()
        self.started = time.monotonic()
        self.run: Run | None = None
        self.cpu = 0.0                      # CPU seconds of its finished runs
        self.solo = False                   # graded alone, after a wall-clock backstop was hit
        self.runs = 0                       # children started


def judged(job: "Job", chapter: str) -> bool:
    """A chapter whose tests reach the student's code through probes (`grader.remote`)."""
    return (job.tests_root / f"ch{chapter}" / "probes.py").is_file()


def chapter_results(sub: Submission, settings: Settings) -> tuple[dict[str, ChapterResult], list[str]]:
    """A fresh result per chapter from its manifest, and the chapters to run."""
    chapters: dict[str, ChapterResult] = {}
    queue = []
    hashes = sub.file_hashes()
    for c in settings.chapters:
        manifest = settings.manifests[c]
        filename = CHAPTERS[c].filename
        if sub.error:
            cr = ChapterResult.from_specs(c, manifest.tests, manifest.sha256, manifest.device,
                                          f"not graded: {sub.error}")
            cr.status, cr.reason = Status.UNREADABLE, sub.error
        elif filename not in sub.files:
            cr = ChapterResult.from_specs(c, manifest.tests, manifest.sha256, manifest.device,
                                          f"{filename} missing from the submission")
            cr.status, cr.reason = Status.MISSING, f"{filename} missing"
        else:
            cr = ChapterResult.from_specs(c, manifest.tests, manifest.sha256, manifest.device)
            cr.file_sha256 = hashes[filename]
            queue.append(c)
        chapters[c] = cr
    return chapters, queue


class Scheduler:
    def __init__(self, settings: Settings, uids: list[int], slots: int | None = None) -> None:
        """`slots` jobs at a time (len(uids) // 2 by default); slot s runs under uids[s] or
        uids[s + slots], whichever its finishing job does not hold (one uid each without
        `slots` * 2 of them: then a slot waits for its job to end before the next)."""
        self.settings = settings
        self.slots = slots or max(1, len(uids) // 2)
        self.uids = [[u for u in (uids[s], uids[s + self.slots] if s + self.slots < len(uids) else None)
                      if u is not None] for s in range(self.slots)]
        self.selector = selectors.DefaultSelector()
        self.exited: dict[int, int] = {}
        self.jobs: dict[int, Job] = {}  # slot -> job
        self.finishing: list[Job] = []  # judge done, its slot given to the next job (`_release`)
        self.runs_by_pid: dict[int, Run] = {}
        self.worker_runs: dict[int, Run] = {}  # a judge worker's pid -> the run it serves
        self.worker_tokens = 0
        self.remover = accounting.Remover()   # working folders, deleted beside the loop
        self.deferred: list[tuple[Submission, str]] = []  # to grade again alone, and why
        self.counter = 0
        self.wake_r, self.wake_w = os.pipe()
        for fd in (self.wake_r, self.wake_w):
            _nonblocking(fd)

    # -- public
    def grade(self, submissions: Iterable[Submission],
              on_done: Callable[[SubmissionResult], None]) -> None:
        pending: Iterator[Submission] = iter(submissions)
        exhausted = False
        old_handler = signal.signal(signal.SIGCHLD, lambda *_: None)
        old_wakeup = signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        self.selector.register(self.wake_r, selectors.EVENT_READ, None)
        self.selector.register(self.settings.zygote.events, selectors.EVENT_READ, None)
        try:
            while True:
                for slot in range(self.slots):
                    while slot not in self.jobs and not exhausted and self._free_uid(slot) is not None:
                        sub = next(pending, None)
                        if sub is None:
                            exhausted = True
                            break
                        finished = self._start_job(sub, slot)
                        if finished is not None:
                            on_done(finished)
                while exhausted and not self.jobs and not self.finishing and self.deferred:
                    # Alone on the machine now: a wall-clock limit hit here is the code's own.
                    sub, why = self.deferred.pop(0)
                    finished = self._start_job(sub, 0, solo=why)
                    if finished is not None:
                        on_done(finished)
                if not self.jobs and not self.finishing:
                    break
                self._wait()
                for result in self._advance():
                    on_done(result)
        finally:
            for job in [*self.jobs.values(), *self.finishing]:
                self._teardown(job)
            self.remover.close()
            signal.set_wakeup_fd(old_wakeup)
            signal.signal(signal.SIGCHLD, old_handler)
            self.selector.unregister(self.wake_r)
            self.selector.unregister(self.settings.zygote.events)
            os.close(self.wake_r)
            os.close(self.wake_w)

    # -- jobs
    def _start_job(self, sub: Submission, slot: int, solo: str = "") -> SubmissionResult | None:
        """Start grading `sub` on `slot`; `solo`: why it is graded again alone (else "")."""
        chapters, queue = chapter_results(sub, self.settings)
        self.counter += 1
        uid = self._free_uid(slot)
        ws = sandbox.Workspace(self.settings.work_root / f"{slot}-{self.counter}", uid, uid)
        wall = self.settings.limits.wall_backstop * (SOLO_FACTOR if solo else 1.0)
        job = Job(sub, slot, uid, ws, chapters, queue, time.monotonic() + wall, self.settings.tests_root)
        job.solo = bool(solo)
        if solo:
            job.log.add(f"[grader: {solo}; graded again alone]\n".encode())
        if not queue:
            return self._result(job)
        self.jobs[slot] = job
        try:
            ws.create(sub.files)
        except OSError as exc:
            for c in queue:
                _infrastructure_error(job.chapters[c], f"could not prepare the working folder: {exc}")
            job.queue.clear()
        return self._launch(job)

    def _launch(self, job: Job, skip: frozenset[str] = frozenset()) -> SubmissionResult | None:
        """Start the job's next run; returns the job's result instead when nothing is left."""
        while job.queue and time.monotonic() < job.deadline and job.cpu < self.settings.limits.cpu:
            chapter = job.queue[0]
            run = Run(job, chapter, skip)
            # Its CPU time is 0 as it starts: its first scan is due when one after a scan
            # now would be (`sample_interval`); most runs end before (a scan is ~2 ms).
            run.next_sample = run.started + sample_interval(self.settings.limits.cpu - job.cpu)
            job.run = run
            job.chapters[chapter].runs += 1
            job.log.add(f"\n==== ch{chapter} (run {job.chapters[chapter].runs}) ====\n".encode())
            if job.runs:
                accounting.kill_uid(job.uid)  # nothing of the job's earlier runs is left to meet this one
            job.runs += 1
            try:
                job.ws.install_tests(self.settings.tests_root / f"ch{chapter}",
                                     only=["probes.py"] if run.judged else None)
                self._fork(run)
                return None
            except OSError as exc:  # the machine, not the student: say so, go on
                run.close(self.selector)
                _infrastructure_error(job.chapters[chapter], f"could not start the tests: {exc}")
                job.queue.pop(0)
                job.run, skip = None, frozenset()
        for c in job.queue:  # the time limit ran out before these chapters started
            cr = job.chapters[c]
            cr.status = Status.TIMEOUT
            cr.reason = f"not run: the submission used up its time ({budget(self.settings.limits)})"
            cr.fail_all(cr.reason)
        job.queue.clear()
        return self._result(job)

    def _free_uid(self, slot: int) -> int | None:
        held = {j.uid for j in self.finishing if j.slot == slot}
        return next((u for u in self.uids[slot] if u not in held), None)

    def _release(self, job: Job) -> None:
        """The job's judge has sent its last result (or exited) and what it reported ends the
        job: its slot takes the next submission now, while the job's student process is
        killed, its judge ends its session and the job is cleaned up."""
        run = job.run
        if self.jobs.get(job.slot) is not job or run is None or len(job.queue) != 1 or run.stop is not None:
            return
        if len(set(self.uids[job.slot])) < 2 or self.exited.get(run.pid, 0) != 0:
            return
        self._read(run, "result", drain=True)
        if not complete(job.chapters[run.chapter], run.stream):
            return  # a crash, say: the rest of the chapter may run again (`conclude_run`)
        if run.student_status is None:
            kill_group(run.student)   # the judge needs it no more
        del self.jobs[job.slot]
        self.finishing.append(job)

    def _finish_chapter(self, job: Job) -> SubmissionResult | None:
        job.queue.pop(0)
        job.run = None
        return self._launch(job)

    def _result(self, job: Job) -> SubmissionResult:
        stray = self._teardown(job)
        for cr in job.chapters.values():
            cr.settle()
        return SubmissionResult(job.sub, job.chapters, job.log.text(), time.monotonic() - job.started,
                                self.settings.isolation.summary(), stray)

    def _teardown(self, job: Job) -> list[str]:
        """The one way a job ends, finished or aborted: its processes, pipes, files and
        folder are gone afterwards. Returns the stray files removed."""
        run = job.run
        if run is not None and run.pid:
            run.kill()
            run.close(self.selector)
            for pid in (run.pid, run.student):
                if pid in self.runs_by_pid:  # the zygote reaps it and reports the exit
                    del self.runs_by_pid[pid]
                    self.exited.pop(pid, None)
            if run.worker:
                self._forget_worker(run)
                self.exited.pop(run.pid, None)
        stray: list[str] = []
        if job.ws.path.exists():
            accounting.kill_uid(job.uid)
            iso = self.settings.isolation
            private = sandbox.private_folders(job.ws, self.settings.datasets) \
                if iso.root and iso.mount_namespace else []
            stray = accounting.remove_stray_files(job.uid, private)
            job.ws.destroy(self.remover)
        if self.jobs.get(job.slot) is job:
            del self.jobs[job.slot]
        if job in self.finishing:
            self.finishing.remove(job)
        return stray

    # -- children
    def _fork(self, run: Run) -> None:
        job, s = run.job, self.settings
        args = grading_args(run.chapter, job.ws, s, judged=run.judged)
        res_r, res_w = os.pipe()
        log_r, log_w = os.pipe()
        ack_r, ack_w = os.pipe()
        plan = child.plan_to_dict(args, job.ws, s.limits, s.isolation, s.hide, s.datasets, s.tests_root,
                                  run.stream.skip, run_cpu(s.cpus, job))
        try:
            if run.judged:
                # Not where the tests see CUDA: asking for it, as a session's configuration
                # does, would leave the server's forked judges unable to use it.
                served = JUDGE_SERVERS and s.manifests[run.chapter].device == "cpu"
                pid, run.student, worker = s.zygote.fork_pair({"plan": plan, "judge_server": served},
                                                              [res_w, ack_r, log_w])
                self.runs_by_pid[run.student] = run
                if worker:   # it serves other runs after this one: this run gets a number
                    self.worker_tokens += 1
                    run.worker, pid = pid, -self.worker_tokens
                    self.worker_runs[run.worker] = run
            else:
                pid = s.zygote.fork("grade", {"plan": plan}, [res_w, ack_r, log_w])
        except OSError:
            for fd in (res_r, log_r, ack_w):
                os.close(fd)
            raise
        finally:
            for fd in (res_w, log_w, ack_r):
                os.close(fd)
        run.pid, run.result_fd, run.log_fd, run.ack_fd = pid, res_r, log_r, ack_w
        for fd, kind in ((res_r, "result"), (log_r, "log")):
            _nonblocking(fd)
            self.selector.register(fd, selectors.EVENT_READ, (run, kind))
        if not run.worker:
            self.runs_by_pid[pid] = run

    # -- events
    def _wait(self) -> None:
        # CPU time is sampled on this tick, so it bounds how late a limit is noticed.
        timeout = TICK if any(j.run for j in self.jobs.values()) else 1.0
        for key, _ in self.selector.select(timeout):
            if key.data is None:
                if key.fd == self.wake_r:
                    try:
                        while os.read(self.wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                continue  # children's exits are read in _advance
            run, kind = key.data
            self._read(run, kind)
            if kind == "result" and run.stream.done is not None and run.student:
                self._release(run.job)

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
                run.unregister(self.selector, kind)
                if kind == "result" and run.worker and run.stream.done is not None:
                    self._judge_ended(run, 0)   # the worker's run is over; the worker lives on
                return
            if kind == "log":
                run.job.log.add(chunk)
            else:
                self._act(run, run.stream.feed(chunk))
                if run.result_fd < 0:
                    return

    def _act(self, run: Run, actions: list[Action]) -> None:
        cpu = None   # the child's CPU time, read once for what one read brought (a test's
        # result and the next test's start come together)
        for action in actions:
            if action == ACK:
                if not run.judged:   # (a judge's student has no test files to remove)
                    run.job.ws.remove_test_files()
                try:
                    os.write(run.ack_fd, b"1")
                except OSError:
                    pass
                run.close_ack()
            elif action == STOP:
                run.unregister(self.selector, "result")
                run.kill()
                if run.worker and run.stream.done is not None:
                    self._judge_ended(run, 0)   # its worker is done with it: nothing to wait for
            elif action.kind == "started":
                cpu = accounting.process_cpu(run.measured) if cpu is None else cpu
                run.test_cpu0, run.test_wall0 = cpu, time.monotonic()
                run.test_cpu, run.next_test_sample = 0.0, run.test_wall0 + TICK
            elif action.kind == "finished":
                cpu = accounting.process_cpu(run.measured) if cpu is None else cpu
                test = run.job.chapters[run.chapter].tests[action.nodeid]
                test.cpu = round(max(0.0, cpu - run.test_cpu0), 3)
                test.duration = round(time.monotonic() - run.test_wall0, 3)

    # -- time limits, measured from outside the child
    def _sample_cpu(self, run: Run, now: float) -> float:
        """The CPU time of the child's whole tree, measured by a /proc scan every
        `sample_interval`. Counted by the slot's uid where it is the job's own (root), else by
        process group."""
        pid = run.measured
        if pid and pid not in self.exited and run.student_status is None and now >= run.next_sample:
            own = self.settings.isolation.drop_privileges and run.job.uid != os.getuid()
            run.cpu = max(run.cpu, accounting.cpu_seconds(pid, run.job.uid if own else None))
            run.next_sample = now + sample_interval(self.settings.limits.cpu - run.job.cpu - run.cpu)
        return run.cpu

    def _enforce(self, job: Job, now: float) -> None:
        """Stop the job's child when a limit is exceeded; record why and the load."""
        run = job.run
        if run is None or run.stop is not None or run.pid in self.exited:
            return
        testing = run.stream.current is not None
        if testing and now >= run.next_test_sample:   # every TICK, not on every event
            run.test_cpu = accounting.process_cpu(run.measured) - run.test_cpu0
            run.next_test_sample = now + TICK
        stop = exceeded(self.settings.limits, solo=job.solo,
                        submission_cpu=job.cpu + self._sample_cpu(run, now),
                        test_cpu=run.test_cpu if testing else None,
                        test_wall=now - run.test_wall0, past_deadline=now >= job.deadline)
        if stop is None:
            return
        run.stop = Stop(*stop, load=round(os.getloadavg()[0], 2))
        run.kill()
        accounting.kill_uid(job.uid)
        if run.worker and run.stream.done is not None:
            self._judge_ended(run, 0)   # its worker is done with it: nothing to wait for

    def _advance(self) -> list[SubmissionResult]:
        """Reap children, enforce deadlines, move finished runs on."""
        for pid, status, cpu in self.settings.zygote.exits():
            if pid in self.worker_runs:   # a worker ended during a run: that run's judge
                self._judge_ended(self.worker_runs[pid], status)
                continue
            if pid in self.runs_by_pid:
                run = self.runs_by_pid[pid]
                if pid == run.student:
                    run.student_status = status
                    run.cpu = max(run.cpu, cpu)  # the student's process and what it waited for
                    continue
                self.exited[pid] = status
                run.judge_status = status
                if not run.judged:
                    run.cpu = max(run.cpu, cpu)  # the child and every process it waited for
        now = time.monotonic()
        done = []
        for job in [*self.jobs.values(), *self.finishing]:
            run = job.run
            if run is None:
                continue
            self._enforce(job, now)
            if run.pid in self.exited and run.student and run.student_status is None:
                # The judge is done: the student's process goes too, then the run ends (and
                # what else runs under the slot's uid with it, in `_launch` or `_teardown`).
                run.kill()
                self._release(job)
                continue
            if run.pid in self.exited:
                result = self._end_run(run, self.exited.pop(run.pid))
                if result is not None:
                    done.append(result)
        return done

    def _judge_ended(self, run: Run, status: int) -> None:
        """A worker's run has ended: its results ended after the session's `done`, or the
        worker exited (`status`) during it."""
        if run.judge_status is None:
            run.judge_status = status
            self.exited[run.pid] = status
        self._forget_worker(run)

    def _forget_worker(self, run: Run) -> None:
        if self.worker_runs.get(run.worker) is run:
            del self.worker_runs[run.worker]

    def _end_run(self, run: Run, status: int) -> SubmissionResult | None:
        """A child has exited: collect what is left of its output, clean up, conclude."""
        job, stream = run.job, run.stream
        self.runs_by_pid.pop(run.pid, None)
        self.runs_by_pid.pop(run.student, None)
        self._read(run, "result", drain=True)
        self._read(run, "log", drain=True)
        if not run.judged:
            kill_group(run.pid)  # what is left of its group (the leader was reaped just now)
        run.kill()  # and the rest under the slot's uid, before its next run or as the job ends
        if run.judged:
            if os.WIFEXITED(status) and os.WEXITSTATUS(status) == EXIT_NO_STUDENT:
                _infrastructure_error(job.chapters[run.chapter], "could not start the student's process: "
                                      + (_last_line(job.log.text()) or "no reason given"))
            elif os.WIFEXITED(status) and os.WEXITSTATUS(status) == EXIT_STUDENT_GONE \
                    and run.student_status is not None:
                status = run.student_status  # why the student's process ended is the reason
            elif stream.done is None and run.stop is None and status != 0:
                # The judge runs no student code: its failure is the grader's, to regrade.
                _infrastructure_error(job.chapters[run.chapter],
                                      f"judge process ended early ({death_reason(status, 0)})")
        run.close(self.selector)
        if run.stop is not None and run.stop.backstop and not job.solo:
            # A wall-clock limit on a shared machine may be the machine's doing, not the
            # code's: grade this submission again, alone, before any time limit counts.
            self._teardown(job)
            self.deferred.append((job.sub, f"{run.stop.reason} at load {run.stop.load} beside other work"))
            return None
        cr = job.chapters[run.chapter]
        cr.wall += time.monotonic() - run.started
        cr.cpu += run.cpu
        job.cpu += run.cpu
        if run.stop is not None:
            cr.limit_load = run.stop.load
        skip = conclude_run(cr, stream, status, stop=run.stop, limits=self.settings.limits,
                            log=job.log, time_left=time.monotonic() < job.deadline and job.cpu < self.settings.limits.cpu)
        if skip is not None:
            return self._launch(job, skip)
        return self._finish_chapter(job)


def run_cpu(cpus: tuple[int, ...], job: "Job") -> int | None:
    """The CPU a job's processes run on: its slot's (`Settings.cpus`), except for a job
    graded again alone after a wall-clock backstop, which the kernel places, so that it can
    move away from a core that other work keeps busy (None)."""
    return None if job.solo or not cpus else cpus[job.slot]


def grading_args(chapter: str, ws: sandbox.Workspace, s: Settings, judged: bool = False) -> list[str]:
    """pytest's arguments in a grading child (`judged`: in the judge, which reads the
    instructor's tests where they are and keeps its temporary files to itself)."""
    if judged:
        extra = ["-c", os.devnull, "--noconftest", "-s", "--tb=short", f"--confcutdir={s.tests_root}",
                 "-W", "ignore::pytest.PytestAssertRewriteWarning", "--timeout", "0",
                 "--cpu-timeout", f"{s.limits.test_cpu:g}", "--datasets", str(s.datasets)]
        if s.reference_cache is not None:
            extra.append(f"--reference-cache={s.reference_cache}")
        return chapter_test_args(chapter, ws.student, tests_dir=s.tests_root, extra=extra)
    # --confcutdir: collection never looks above the working folder (a link elsewhere on the
    # machine that the student's uid cannot follow would fail it).
    extra = ["-c", os.devnull, "--noconftest", "-s", "--tb=short", f"--confcutdir={ws.path}",
             "-W", "ignore::pytest.PytestAssertRewriteWarning",
             "--timeout", "0",  # no wall-clock limit in the child: the CPU alarm instead
             "--cpu-timeout", f"{s.limits.test_cpu:g}",
             "--basetemp", str(ws.tmp / "pytest"),
             "--datasets", str(s.datasets)]
    return chapter_test_args(chapter, ws.student, tests_dir=ws.tests, extra=extra)


def conclude_run(cr: ChapterResult, stream: ResultStream, status: int, *, stop: Stop | None,
                 limits: sandbox.Limits, log: LogBuffer, time_left: bool) -> frozenset[str] | None:
    """A child has exited: decide what the chapter's unreported tests become, and whether
    the rest of the chapter runs again in a fresh child (the restart policy). Returns the
    tests to skip in that fresh child, or None when the chapter is finished."""
    unreported = _unreported(cr, stream)
    if cr.tampered:
        cr.status = Status.TAMPERED
    elif cr.status == Status.ERROR:
        cr.fail_all(f"not graded: {cr.reason}", only_unreported=True)
    elif stop is not None and stop.kind in ("cpu", "wall"):
        cr.status = Status.TIMEOUT
        cr.reason = f"{stop.reason} ({budget(limits)})"
        for t in unreported:
            t.message = (f"stopped: {cr.reason} (during this test)" if t.nodeid == stream.current
                         else f"not run: {cr.reason}")
    elif complete(cr, stream):
        pass
    elif stream.collected is None:
        cr.status = Status.ERROR
        cr.reason = "the tests did not start: " + (_last_line(log.text()) or death_reason(status, limits.fsize_mb))
        cr.fail_all(f"not run: {cr.reason}", only_unreported=True)
    else:
        if stop is not None:
            why = stop.reason
        elif stream.done is None:
            why = death_reason(status, limits.fsize_mb)
        else:
            why = _early_end(stream.done, log)
        cr.crashes += 1
        if stream.current is not None and stream.current in cr.tests:
            crashed = cr.tests[stream.current]
            crashed.reported = True
            crashed.outcome, crashed.message = Outcome.FAILED, f"{why} (during this test)"
        remaining = [t for t in unreported if t.nodeid != stream.current]
        # two runs in a row that died in their first test: it is the import, stop trying
        first_test = not any(cr.tests[n].reported for n in stream.collected if n != stream.current)
        cr.first_test_crashes = cr.first_test_crashes + 1 if first_test else 0
        hopeless = cr.first_test_crashes >= 2
        if remaining and not hopeless and cr.crashes < MAX_CRASHES and time_left:
            log.add(f"\n[grader: {why}; running the remaining tests in a fresh process]\n".encode())
            return frozenset(n for n, t in cr.tests.items() if t.reported)
        cr.status = Status.CRASHED
        cr.reason = why
        for t in remaining:
            t.message = f"not run: {why} in an earlier test"
    return None


def _unreported(cr: ChapterResult, stream: ResultStream) -> list:
    return [t for n, t in cr.tests.items() if not t.reported and n not in stream.skip]


def complete(cr: ChapterResult, stream: ResultStream) -> bool:
    """The session ended and reported every test it ran: `conclude_run` runs nothing again."""
    return stream.done is not None and not _unreported(cr, stream)


def _infrastructure_error(cr: ChapterResult, reason: str) -> None:
    cr.status, cr.reason = Status.ERROR, f"the grader {reason}"
    cr.fail_all(f"not graded: {cr.reason}", only_unreported=True)


def _early_end(done: dict, log: LogBuffer) -> str:
    """Why a session that reported `done` left tests unrun (pytest.exit, an internal error)."""
    code = printable(str(done.get("exit_code")))[:20]
    detail = ""
    for line in reversed(log.text().splitlines()):
        if line.startswith("INTERNALERROR> ") and not line.startswith("INTERNALERROR>  "):
            detail = line[len("INTERNALERROR> "):].strip()
            break
    return f"the test session stopped early (pytest exit code {code})" + (f": {detail}" if detail else "")


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip() and not ln.startswith("====")]
    return lines[-1][:300] if lines else ""


def _nonblocking(fd: int) -> None:
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
