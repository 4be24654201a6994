"""The project's own suite runs chapter tests in children forked from this process.

Every test process (each pytest-xdist worker, or a plain pytest run) reserves a range of
sandbox uids of its own before anything imports `grader.sandbox`, which reads
PRACTICE_GRADER_UID_BASE once: the cohort-grader tests check that no process of their uids
outlives a run, and another grader on the machine (the other worker's, another
developer's test run) must never count as a leftover.
"""
from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path

import pytest

UID_RANGE_START, UID_RANGE_SIZE, UID_RANGE_COUNT = 63000, 200, 40
UID_RANGE_LOCKS = Path(tempfile.gettempdir()) / "pytorch-practice-test-uid-ranges"
_held_range: list[int] = []  # the lock's descriptor, kept open for the life of this process


def _worker_index() -> int:
    """0 for gw0 (or without xdist), 1 for gw1, ...: where this process starts looking."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(name[2:]) if name[2:].isdigit() else 0


def reserve_uid_range() -> int:
    """The first uid of a range no other test process on this machine holds.

    Ranges are tried from 63000 + 200 * worker index on; a range is held with a lock file
    (released by the kernel when this process ends, however it ends), so two test runs at
    once, or two workers of one, never share uids."""
    UID_RANGE_LOCKS.mkdir(mode=0o700, exist_ok=True)
    for k in range(UID_RANGE_COUNT):
        base = UID_RANGE_START + UID_RANGE_SIZE * ((_worker_index() + k) % UID_RANGE_COUNT)
        fd = os.open(UID_RANGE_LOCKS / f"{base}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        _held_range.append(fd)
        return base
    raise RuntimeError(f"all {UID_RANGE_COUNT} test uid ranges are in use (locks in {UID_RANGE_LOCKS})")


os.environ["PRACTICE_GRADER_UID_BASE"] = str(reserve_uid_range())

from chapter_runs import CATALOGUE, CHAPTERS_WITH_TESTS, VARIANTS  # noqa: E402 - after the uid range is set


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "chapter" in metafunc.fixturenames:
        metafunc.parametrize("chapter", CHAPTERS_WITH_TESTS, ids=[f"ch{c}" for c in CHAPTERS_WITH_TESTS])
    if "mistake" in metafunc.fixturenames:
        entries = [(c, m) for c, ms in CATALOGUE.items() for m in ms]
        metafunc.parametrize("mistake", entries,
                             ids=[f"ch{c}-{m.name.replace(' ', '_')}" for c, m in entries])
    if "variant" in metafunc.fixturenames:
        entries = [(c, v) for c, vs in VARIANTS.items() for v in vs]
        metafunc.parametrize("variant", entries,
                             ids=[f"ch{c}-{v.name.replace(' ', '_')}" for c, v in entries])


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    _order(items)
    for item in items:
        # A project test may grade a whole chapter or cohort: the per-test limit of chapter
        # tests (pyproject's `timeout`) is too short for that.
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(900))


# Module fixtures built once per run for every worker (`hostile.harness.shared_by_workers`):
# a worker that needs one while another builds it waits for the lock, idle.
SHARED_BUILDS = {"test_grade_hostile.py": "cohort", "test_grade.py": "demo", "test_nbgrader.py": "course"}


def _order(items: list[pytest.Item]) -> None:
    """Order only, never what a test sees, so that pytest-xdist's workers end together:
    - the first test of each shared build runs first and the others that read it last, so
      one worker builds while the others run the rest of the suite, instead of every
      worker reaching the build at once and waiting;
    - then the tests marked `slow` (6 s or more), so that none of them is left running
      on one worker at the end while the others, done, wait for it. pytest-xdist hands out
      the first quarter of the tests in blocks and the rest as workers free up, so the slow
      ones start early and the end is many short tests. (Only tests without module fixtures
      are marked: the others of their module would build the fixture again elsewhere.)"""
    first, last = [], []
    for module, fixture in SHARED_BUILDS.items():
        readers = [i for i in items if i.path.name == module and fixture in getattr(i, "fixturenames", ())]
        first += readers[:1]
        last += readers[1:]
    moved = {id(i) for i in first + last}
    first += [i for i in items if id(i) not in moved and i.get_closest_marker("slow") is not None]
    moved = {id(i) for i in first + last}
    items[:] = first + [i for i in items if id(i) not in moved] + last


def printable(text: str) -> str:
    """`text` with what UTF-8 cannot encode (lone surrogates) spelled as escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport:
    """Reports that UTF-8 can encode: a failure about a student id or output with a lone
    surrogate would otherwise stop pytest-xdist's worker with an internal error, and with it
    every test it had still to run."""
    report = yield
    if report.failed and report.longrepr is not None:
        text = str(report.longrepr)
        if printable(text) != text:
            report.longrepr = printable(text)
    report.sections = [(title, printable(content)) for title, content in report.sections]
    return report
