"""pytest plugin for cohort grading: streams results to the grader and audits for tampering.

Registered (as a `Guard` object) in every child that `grader grade` forks. It does
three jobs, each in one or two small hooks:

* **Result stream.** After collection it sends the list of collected tests (before any
  student code has run, so the grader can trust it as the manifest of tests, tasks and
  points); then, per test, a "start" line and, after teardown, the test's outcome and
  message. Lines are JSON over a pipe that only the grader reads. Because results
  arrive test by test, a crash or a hang loses only the test in flight.
* **Hidden sources.** Once collected, the test files are no longer needed (pytest has
  compiled them). The guard asks the grader to delete its copy of them and waits for
  the answer before the first test (and so the first line of student code) runs, then
  empties `linecache`. Student code therefore cannot read the hidden tests' text.
* **Tamper audit.** Identities of the functions the tests rely on (`torch.allclose`,
  `torch.testing.assert_close`, numpy's comparisons and `numpy.testing`, pytest's
  outcome and reporting machinery, the grading plugin's hooks, every builtin) are taken
  when this module is imported, in the grader's warm parent, long before any student
  code exists. After each test's setup (where the student's module is imported) and
  after its teardown they are compared again; anything replaced is reported with the
  test's result, and the grader scores that chapter 0 as "tampered".

In a judged chapter (one with a probes.py, see `grader.remote`) the guard runs in the
judge, which never runs student code: the student's code is in another process and cannot
reach the stream, the audit or the tests. In a chapter without probes the tests and the
student's code share a process, and code written against the guard (walking `gc` to find
and patch it, writing forged lines, patching and restoring within one call) can get past
it; the grader validates every line against the trusted manifest and takes points only
from it.
"""
from __future__ import annotations

import builtins
import json
import linecache
import os
import select
import sys
from typing import Any, Callable

import numpy
import numpy.testing
import pytest
import torch
import torch.testing
import _pytest.main
import _pytest.outcomes
import _pytest.python
import _pytest.reports
import _pytest.runner
import pluggy._callers
import pluggy._hooks

import grader.plugin
import grader.testing
from grader.results import TestSpec

MESSAGE_LIMIT = 2000          # characters of one test's message sent to the grader
ACK_TIMEOUT = 30.0            # seconds to wait for the grader to remove the test files

# Hooks whose registered implementations decide or record outcomes: a plugin added
# (or an implementation swapped) at run time is tampering.
AUDITED_HOOKS = (
    "pytest_runtest_protocol", "pytest_runtest_setup", "pytest_runtest_call",
    "pytest_runtest_teardown", "pytest_runtest_makereport", "pytest_runtest_logreport",
    "pytest_pyfunc_call", "pytest_report_teststatus", "pytest_sessionfinish",
    "pytest_runtestloop", "pytest_collection_modifyitems",
)


def _attr(owner: Any, name: str) -> Callable[[], Any]:
    return lambda: getattr(owner, name)


def _class_attr(cls: type, name: str) -> Callable[[], Any]:
    return lambda: vars(cls).get(name)


def _watched() -> dict[str, Callable[[], Any]]:
    """label -> how to look the object up now. Owners are bound here, at import time."""
    w: dict[str, Callable[[], Any]] = {}
    for name in ("allclose", "isclose", "equal", "eq", "all", "any", "abs", "max", "tensor"):
        w[f"torch.{name}"] = _attr(torch, name)
    w["torch.testing.assert_close"] = _attr(torch.testing, "assert_close")
    for name in ("allclose", "isclose", "eq", "equal", "__eq__", "all", "any", "item", "tolist"):
        w[f"torch.Tensor.{name}"] = _class_attr(torch.Tensor, name) if name in vars(torch.Tensor) \
            else _attr(torch.Tensor, name)
    for name in ("allclose", "isclose", "array_equal", "array_equiv", "all", "any", "abs"):
        w[f"numpy.{name}"] = _attr(numpy, name)
    for name, value in sorted(vars(numpy.testing).items()):
        if callable(value) and not name.startswith("_"):
            w[f"numpy.testing.{name}"] = _attr(numpy.testing, name)
    for name in ("runtestprotocol", "call_and_report", "check_interactive_exception",
                 "pytest_runtest_makereport", "pytest_runtest_call", "pytest_runtest_protocol",
                 "pytest_report_teststatus"):
        w[f"_pytest.runner.{name}"] = _attr(_pytest.runner, name)
    w["_pytest.runner.CallInfo.from_call"] = _class_attr(_pytest.runner.CallInfo, "from_call")
    for name in ("__init__", "from_item_and_call"):
        w[f"TestReport.{name}"] = _class_attr(_pytest.reports.TestReport, name)
    for name in ("passed", "failed", "skipped", "outcome"):
        w[f"BaseReport.{name}"] = _class_attr(_pytest.reports.BaseReport, name)
    w["_pytest.python.Function.runtest"] = _class_attr(_pytest.python.Function, "runtest")
    w["_pytest.python.pytest_pyfunc_call"] = _attr(_pytest.python, "pytest_pyfunc_call")
    w["_pytest.main.pytest_runtestloop"] = _attr(_pytest.main, "pytest_runtestloop")
    for name in ("fail", "skip", "xfail", "exit", "raises", "approx"):
        w[f"pytest.{name}"] = _attr(pytest, name)
        if hasattr(_pytest.outcomes, name):
            w[f"_pytest.outcomes.{name}"] = _attr(_pytest.outcomes, name)
    w["pluggy._callers._multicall"] = _attr(pluggy._callers, "_multicall")
    w["pluggy.HookCaller.__call__"] = _class_attr(pluggy._hooks.HookCaller, "__call__")
    for module in (grader.plugin, grader.testing):
        for name, value in sorted(vars(module).items()):
            if callable(value) and getattr(value, "__module__", None) == module.__name__:
                w[f"{module.__name__}.{name}"] = _attr(module, name)
    for name in ("torch", "numpy", "numpy.testing", "pytest", "_pytest.runner", "_pytest.reports",
                 "grader.plugin", "grader.testing", "builtins"):
        w[f"sys.modules[{name!r}]"] = (lambda n: lambda: sys.modules.get(n))(name)
    w["sys.gettrace()"] = sys.gettrace
    return w


_WATCHED = _watched()
_ORIGINAL = {label: get() for label, get in _WATCHED.items()}
_BUILTINS = dict(vars(builtins))
_BUILTINS_DICT = vars(builtins)


def audit(hookimpls: dict[str, list] | None = None, config: pytest.Config | None = None) -> list[str]:
    """Names of watched objects that are no longer the originals (empty when all is well)."""
    changed = []
    for label, get in _WATCHED.items():
        try:
            now = get()
        except Exception:  # noqa: BLE001 - deleting an attribute is tampering too
            now = _MISSING
        if now is not _ORIGINAL[label]:
            changed.append(label)
    current = vars(builtins)
    if current is not _BUILTINS_DICT:
        changed.append("builtins (module dict replaced)")
    for name, value in _BUILTINS.items():
        if current.get(name, _MISSING) is not value:
            changed.append(f"builtins.{name}")
    if hookimpls is not None and config is not None:
        for hook, before in hookimpls.items():
            if _hookimpl_ids(config, hook) != before:
                changed.append(f"pytest hook {hook} (implementations changed)")
    return changed


_MISSING = object()


def _hookimpl_ids(config: pytest.Config, hook: str) -> list:
    caller = getattr(config.hook, hook, None)
    if caller is None:
        return []
    return [(impl.plugin_name, impl.function, impl.hookwrapper, impl.wrapper)
            for impl in caller.get_hookimpls()]


class Channel:
    """Newline-delimited JSON to the grader; silent in forked copies of the test process."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.owner = os.getpid()
        self.sent_done = False
        self.held = ""   # lines that go with the next message sent
        self._write = os.write  # bound now: replacing os.write later does not reach here
        self._dumps = json.dumps

    def send(self, message: dict, hold: bool = False) -> None:
        """`hold`: the message goes with the next one, in the same write. A test's result
        is held until the next test's start (or the session's end): pytest runs nothing of
        the tests or of the student's code in between, and the grader, woken once per test
        instead of twice, reads both as before (a ch05 submission: 17 wakeups fewer)."""
        if os.getpid() != self.owner or self.fd < 0:
            return  # a fork of the test process stays quiet; a judge server has no grader yet
        line = self._dumps(message, ensure_ascii=True) + "\n"
        if hold:
            self.held += line
            return
        data = memoryview((self.held + line).encode("ascii"))
        self.held = ""
        while data:
            n = self._write(self.fd, data)
            data = data[n:]


class Guard:
    """The plugin object. Without `ack_fd` (the grader's trusted collect-only run) it only
    reports what was collected."""

    def __init__(self, result_fd: int, ack_fd: int | None = None, skip: frozenset[str] = frozenset()) -> None:
        self.channel = Channel(result_fd)
        self.ack_fd = ack_fd
        self.skip = skip          # node ids already graded by an earlier run (after a crash)
        self.config: pytest.Config | None = None
        self.hookimpls: dict[str, list] = {}
        self.setup_findings: dict[str, list[str]] = {}
        self.specs: dict[str, dict] = {}   # node id -> what `announce` sends of it

    # -- collection: the trusted manifest, then the test files go away
    @pytest.hookimpl(tryfirst=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        self.config = config

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        if self.skip:
            done = [i for i in items if i.nodeid in self.skip]
            if done:
                config.hook.pytest_deselected(items=done)
                items[:] = [i for i in items if i.nodeid not in self.skip]

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        for item in session.items:
            item.location  # noqa: B018 - computed now, while the source files still exist
        self.hookimpls = {hook: _hookimpl_ids(session.config, hook) for hook in AUDITED_HOOKS}
        if self.channel.fd >= 0:
            self.announce(session)
        linecache.clearcache()
        sys.dont_write_bytecode = True

    def serve(self, session: pytest.Session, result_fd: int, ack_fd: int,
              skip: frozenset[str]) -> None:
        """In a judge forked by a judge server (`grader.judgeserver`) after collection: this
        judge's grader, its tests (without `skip`), then what a collecting judge sends."""
        self.channel = Channel(result_fd)
        self.ack_fd, self.skip = ack_fd, skip
        self.pytest_collection_modifyitems(session.config, session.items)
        self.announce(session)

    def announce(self, session: pytest.Session) -> None:
        """The list of tests to the grader, then (with an ack descriptor, where the student's
        code runs in this process) wait until it has removed the test files."""
        tests = []
        for item in session.items:
            spec = self.specs.get(item.nodeid)
            if spec is None:   # (a judge worker's next runs announce the same items)
                spec = self.specs[item.nodeid] = TestSpec(
                    item.nodeid, item.name, grader.plugin.task_of(item) or "", grader.plugin.points_of(item),
                    item.get_closest_marker("hidden") is not None,
                    item.get_closest_marker("gpu") is not None).spec_dict()
            tests.append(spec)
        results = grader.plugin.results_of(session.config)
        self.channel.send({"type": "collected", "tests": tests, "device": str(results.device),
                           "collection_errors": list(results.collection_errors)[:20]})
        if self.ack_fd is not None:
            if self._student_code_here():
                self._wait_for_ack()
            else:
                # A judge: its student's folder never held the tests (only probes.py), so
                # there is nothing to wait for, and its tests start at once; a collection
                # the grader refuses still stops the run before any of its results count.
                os.close(self.ack_fd)
                self.ack_fd = None

    def _wait_for_ack(self) -> None:
        ready, _, _ = select.select([self.ack_fd], [], [], ACK_TIMEOUT)
        if not ready or not os.read(self.ack_fd, 1):
            raise pytest.UsageError("the grader did not confirm the test files were removed")
        os.close(self.ack_fd)
        self.ack_fd = None

    def _fork_returned(self) -> None:
        """A copy of the test process made by student code's fork() that came back into
        pytest (a fork bomb's children do) must not run the rest of the session."""
        if os.getpid() != self.channel.owner:
            os._exit(0)

    # -- per test
    def pytest_runtest_logstart(self, nodeid: str) -> None:
        self._fork_returned()
        self.channel.send({"type": "start", "nodeid": nodeid})

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_makereport(self, item: pytest.Item) -> None:
        self._fork_returned()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._fork_returned()
        if report.when == "setup":
            if self._student_code_here():
                self.setup_findings[report.nodeid] = audit(self.hookimpls, self.config)
            return
        if report.when != "teardown":
            return
        findings = self.setup_findings.pop(report.nodeid, [])
        if self._student_code_here():
            findings += [f for f in audit(self.hookimpls, self.config) if f not in findings]
        entry = self._entry(report.nodeid)
        message = {"type": "test", "nodeid": report.nodeid, "audit": findings[:50]}
        if entry is not None:
            message.update(outcome=entry.outcome, message=str(entry.message)[:MESSAGE_LIMIT],
                           duration=float(entry.duration))
        self.channel.send(message, hold=True)   # sent with the next test's start, or `done`

    def _student_code_here(self) -> bool:
        """Whether the student's code runs in this process, so each test is audited. A
        judge's student is another process (`--student-fd`): nothing of it can reach the
        objects audited here, and the judge is audited once, as its session ends (34 audits
        of about 28 us each saved per ch05 submission, about 1 ms)."""
        return self.config is None or self.config.getoption("student_fd") < 0

    def _entry(self, nodeid: str):
        results = grader.plugin.results_of(self.config)
        for entry in reversed(results.tests):
            if entry.nodeid == nodeid:
                return entry
        return None

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        self._fork_returned()
        self._send_done(session, exitstatus)

    def _send_done(self, session: pytest.Session, exitstatus: int) -> None:
        results = grader.plugin.results_of(session.config)
        self.channel.send({"type": "done", "exit_code": int(exitstatus),
                           "device": str(results.device),
                           "collection_errors": list(results.collection_errors)[:20],
                           "audit": audit(self.hookimpls or None, self.config)[:50]})
        self.channel.sent_done = True
