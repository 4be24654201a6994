"""The results model: one test, one pytest session, one chapter, one submission.

Every output (the `grader check` table, results.json, feedback.md, grades.csv, report.html)
is a view of these objects, and every counting rule lives here once:

* which chapter statuses score 0 (`Status.voids_score`);
* a GPU test skipped for want of a GPU neither earns nor costs points (`TestResult.possible`);
* a skip raised from inside the code under test is a failure (`judge_skip`);
* the per-task rows (`task_rows`).

Plain data only: nothing here imports pytest, torch or the process machinery, so the
reporting modules depend on this and on nothing of the runtime.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from typing import TYPE_CHECKING, Any, Iterable

from grader.syllabus import CHAPTERS

if TYPE_CHECKING:  # pragma: no cover
    from grader.submissions import Submission


class _Text(str, Enum):
    """An enumeration whose members are their text (in JSON, f-strings and comparisons)."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class Outcome(_Text):
    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"        # failed in setup or teardown (an import error shows here)
    SKIPPED = "skipped"    # only a GPU test where there is no GPU: see `judge_skip`


class Status(_Text):
    """What happened to one chapter of one submission."""
    GRADED = "graded"
    MISSING = "missing"
    IMPORT_ERROR = "import-error"
    TAMPERED = "tampered"
    TIMEOUT = "timeout"
    CRASHED = "crashed"
    ERROR = "error"            # the grader's own failure: graded again on the next run, never a score
    UNREADABLE = "unreadable"

    @property
    def voids_score(self) -> bool:
        """The chapter scores 0 whatever its tests reported."""
        return self in SCORES_ZERO

    @property
    def text(self) -> str:
        return STATUS_TEXT[self]


SCORES_ZERO = frozenset({Status.TAMPERED, Status.ERROR, Status.UNREADABLE, Status.MISSING})
STATUS_TEXT = {
    Status.GRADED: "graded",
    Status.MISSING: "file missing",
    Status.IMPORT_ERROR: "does not import",
    Status.TAMPERED: "TAMPERED",
    Status.TIMEOUT: "time limit",
    Status.CRASHED: "crashed",
    Status.ERROR: "error: regrade",
    Status.UNREADABLE: "unreadable submission",
}


def status_text(status: str) -> str:
    try:
        return Status(status).text
    except ValueError:
        return str(status)


NO_GPU = "needs a CUDA GPU; none on this machine"


def counts(gpu: bool, device: str) -> bool:
    """The one rule for GPU tests: a test marked `gpu` counts only where the grading machine
    has CUDA. Without CUDA it is skipped for everyone and counts for no one: it neither
    earns nor costs, whatever happened to the submission (even a missing file), so every
    student of a chapter has the same points possible on the same machine."""
    return not gpu or device == "cuda"


def judge_skip(counted: bool, reason: str) -> tuple[Outcome, str]:
    """The one rule for skipped tests: only a test that does not count here (see `counts`)
    may be skipped. Any other skip (or xfail) was raised by the code under test, and would
    otherwise dodge the test's points: it is a failure."""
    if not counted:
        return Outcome.SKIPPED, reason or NO_GPU
    reason = str(reason).removeprefix("Skipped: ").strip() or "no reason given"
    return Outcome.FAILED, (f"the test was skipped from inside the code under test ({reason}), "
                            "which counts as a failure")


# --------------------------------------------------------------------------- one test

@dataclass
class TestSpec:
    """What a test is, as collected: the manifest's entry and the head of every result."""
    __test__ = False  # not a pytest test class

    nodeid: str
    name: str
    task: str
    points: float
    hidden: bool = False
    gpu: bool = False

    def spec_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(TestSpec)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TestSpec":
        return cls(str(d["nodeid"]), str(d["name"]), str(d.get("task", "")), float(d["points"]),
                   bool(d.get("hidden")), bool(d.get("gpu")))


@dataclass
class TestResult(TestSpec):
    """A test and what happened to it."""
    __test__ = False

    outcome: Outcome = Outcome.FAILED
    message: str = "not run"   # one instructive line (or a few) for students
    details: str = ""          # the full pytest report, for -v and instructors
    duration: float = 0.0      # wall seconds
    cpu: float = 0.0           # CPU seconds of the submission's processes (cohort grading)
    counted: bool = True       # see `counts`: False for a GPU test where there is no GPU
    reported: bool = False     # the grader received this test's result from its run

    @classmethod
    def of(cls, spec: TestSpec, **kw: Any) -> "TestResult":
        return cls(**spec.spec_dict(), **kw)

    @property
    def score(self) -> float:
        return self.points if self.outcome == Outcome.PASSED and self.counted else 0.0

    @property
    def possible(self) -> float:
        """Points this test can earn here: none for a test that does not count (see `counts`)."""
        return self.points if self.counted else 0.0

    @property
    def failed(self) -> bool:
        return self.outcome in (Outcome.FAILED, Outcome.ERROR)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["outcome"] = str(self.outcome)
        d["score"] = self.score      # derived: for readers of --results-json
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TestResult":
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        kw["outcome"] = Outcome(kw.get("outcome", "failed"))
        return cls(**kw)


@dataclass(frozen=True)
class TaskRow:
    task: str
    earned: float
    possible: float
    failed: int      # tests that failed or errored
    skipped: int     # GPU tests skipped for want of a GPU
    total: int


def task_rows(chapter: str, tests: Iterable[TestResult], void: bool = False) -> list[TaskRow]:
    """One row per task of the chapter that has tests, in syllabus order. `void`: the
    chapter scores 0 (see `Status.voids_score`), so nothing is earned."""
    tests = list(tests)
    rows = []
    for task in CHAPTERS[chapter].task_ids():
        mine = [t for t in tests if t.task == task]
        if mine:
            rows.append(TaskRow(task, 0.0 if void else sum(t.score for t in mine),
                                sum(t.possible for t in mine), sum(t.failed for t in mine),
                                sum(t.outcome == Outcome.SKIPPED for t in mine), len(mine)))
    return rows


# --------------------------------------------------------------------------- one session

@dataclass
class RunResults:
    """One pytest session's results, as the grading plugin records them."""
    impl: str = ""
    device: str = "cpu"
    tests: list[TestResult] = field(default_factory=list)
    collection_errors: list[str] = field(default_factory=list)
    exitstatus: int | None = None

    @property
    def score(self) -> float:
        return sum(t.score for t in self.tests)

    @property
    def max_score(self) -> float:
        return sum(t.possible for t in self.tests)

    def to_dict(self) -> dict[str, Any]:
        return {"impl": self.impl, "device": self.device, "tests": [t.to_dict() for t in self.tests],
                "collection_errors": list(self.collection_errors), "exitstatus": self.exitstatus}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunResults":
        return cls(impl=d.get("impl", ""), device=d.get("device", "cpu"),
                   tests=[TestResult.from_dict(t) for t in d.get("tests", [])],
                   collection_errors=list(d.get("collection_errors", [])),
                   exitstatus=d.get("exitstatus"))


# --------------------------------------------------------------------------- one chapter

@dataclass
class ChapterResult:
    chapter: str
    tests: dict[str, TestResult]
    status: Status | None = None
    reason: str = ""
    tampered: list[str] = field(default_factory=list)
    device: str = ""
    wall: float = 0.0
    runs: int = 0
    crashes: int = 0
    first_test_crashes: int = 0     # consecutive runs that died in their first test
    file_sha256: str = ""
    tests_sha256: str = ""
    cpu: float = 0.0                # CPU seconds of all its runs
    limit_load: float | None = None  # the load average when a time limit was hit

    @classmethod
    def from_specs(cls, chapter: str, specs: Iterable[TestSpec], tests_sha256: str, device: str,
                   message: str = "not run") -> "ChapterResult":
        """Every test of the manifest, failed until reported; points possible fixed now from
        the manifest and the grading machine's device, the same for every student."""
        tests = {}
        for s in specs:
            counted = counts(s.gpu, device)
            tests[s.nodeid] = TestResult.of(s, message=message if counted else NO_GPU,
                                            outcome=Outcome.FAILED if counted else Outcome.SKIPPED,
                                            counted=counted)
        return cls(chapter, tests, tests_sha256=tests_sha256)

    @property
    def void(self) -> bool:
        return self.status is not None and Status(self.status).voids_score

    @property
    def score(self) -> float:
        return 0.0 if self.void else sum(t.score for t in self.tests.values())

    @property
    def max_score(self) -> float:
        return sum(t.possible for t in self.tests.values())

    def task_rows(self) -> list[TaskRow]:
        return task_rows(self.chapter, self.tests.values(), self.void)

    def fail_all(self, message: str, only_unreported: bool = False) -> None:
        for t in self.tests.values():
            if (only_unreported and t.reported) or not t.counted:
                continue
            t.outcome, t.message = Outcome.FAILED, message

    def settle(self) -> None:
        """Name what happened when nothing more specific did."""
        if self.status is not None:
            if self.status == Status.TAMPERED:
                self.reason = "tampered: " + "; ".join(self.tampered[:5])
            return
        failed = [t for t in self.tests.values() if t.failed]
        messages = {t.message for t in failed}
        counted = [t for t in self.tests.values() if t.counted]
        if len(messages) == 1 and len(failed) == len(counted) and is_import_error(next(iter(messages))):
            self.status, self.reason = Status.IMPORT_ERROR, next(iter(messages))
        else:
            self.status = Status.GRADED


def is_import_error(message: str) -> bool:
    """The plugin's messages for a chapter module that cannot be imported."""
    return (message.startswith("importing ") or " has a syntax error at line " in message
            or " not found in " in message)


# --------------------------------------------------------------------------- one submission

@dataclass
class SubmissionResult:
    submission: "Submission"
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

    @property
    def regrade(self) -> list[str]:
        """Chapters the grader itself failed on: no score, graded again on the next run."""
        return sorted(c for c, cr in self.chapters.items() if cr.status == Status.ERROR)
