"""The parent's half of a grading child's result stream: framing, limits, validation.

A grading child (`grader.guard` is its plugin) writes newline-delimited JSON objects:

    {"type": "collected", "tests": [...], "device": ..., "collection_errors": [...]}
    {"type": "start", "nodeid": ...}                      once per test, before it runs
    {"type": "test", "nodeid": ..., "outcome": ..., "message": ..., "duration": ..., "audit": [...]}
    {"type": "done", "exit_code": ..., "device": ..., "audit": [...]}

The child runs student code, so every byte of this is untrusted. `ResultStream` checks
each line against the chapter's manifest (the tests the grader collected itself) and
writes what it accepts into the chapter's `ChapterResult`. Anything else (bytes that are
not JSON objects, overlong lines, a stream far larger than results, messages out of
order, results for unknown, skipped or already reported tests, an outcome that is not
one of the four) is a violation, recorded on the chapter, which is then scored 0 as
"tampered". A "collected" list that differs from the manifest means the tests could
not be collected in the sandbox: the grader's problem, never a score.

Pure: `feed` returns what the caller must do (`Action`) and makes no OS calls, so this
logic, the security-critical part of the parent, is unit-tested without root or forks.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from grader.redact import printable
from grader.results import ChapterResult, Outcome, Status, judge_skip

STREAM_LIMIT = 4 << 20          # bytes of result stream accepted from one child
LINE_LIMIT = 256 << 10          # longest single result line
MESSAGE_LIMIT = 1000            # characters of a test message kept
MAX_FINDINGS = 20               # tamper findings kept per chapter


@dataclass(frozen=True)
class Action:
    """What the caller must do (or may want to know) after a `feed`."""
    kind: str
    nodeid: str = ""


ACK = Action("ack")     # collection matched: delete the test files, then let the child go on
STOP = Action("stop")   # stop reading this child and kill it


def started(nodeid: str) -> Action:
    """A test began (time it from here)."""
    return Action("started", nodeid)


def finished(nodeid: str) -> Action:
    """A test's result was accepted (its time ends here)."""
    return Action("finished", nodeid)


class ResultStream:
    """One child's stream, for one chapter (`skip`: tests graded by an earlier run)."""

    def __init__(self, chapter: ChapterResult, skip: frozenset[str] = frozenset()) -> None:
        self.cr = chapter
        self.skip = skip
        self.buffer = bytearray()
        self.received = 0
        self.collected: set[str] | None = None   # node ids, once "collected" was accepted
        self.device = "cpu"
        self.current: str | None = None          # the test in flight ("start" without "test")
        self.done: dict | None = None
        self.stopped = False

    # -- framing
    def feed(self, chunk: bytes) -> list[Action]:
        if self.stopped:
            return []
        self.received += len(chunk)
        if self.received > STREAM_LIMIT:
            self._violation("the results channel carried far more data than results")
            return self._stop()
        actions: list[Action] = []
        self.buffer += chunk
        while b"\n" in self.buffer and not self.stopped:
            line, _, rest = bytes(self.buffer).partition(b"\n")
            self.buffer = bytearray(rest)
            try:
                msg = json.loads(line)
                if not isinstance(msg, dict):
                    raise ValueError("not an object")
            except ValueError:
                self._violation("the results channel carried data that is not a result")
                continue
            actions += self._on_message(msg)
        if len(self.buffer) > LINE_LIMIT:
            self._violation("the results channel carried an overlong line")
            self.buffer.clear()
        return actions

    def _stop(self) -> list[Action]:
        self.stopped = True
        self.buffer.clear()
        return [STOP]

    # -- the state machine: collected, then (start, test)*, then done
    def _on_message(self, msg: dict) -> list[Action]:
        kind = msg.get("type")
        if kind == "collected" and self.collected is None:
            return self._on_collected(msg)
        if kind == "start" and self.collected is not None and self.done is None:
            return self._on_start(msg)
        elif kind == "test" and self.collected is not None and self.done is None:
            return self._on_test(msg)
        elif kind == "done" and self.collected is not None and self.done is None:
            self.done = msg
            self.cr.device = printable(str(msg.get("device", "")))[:20]
            self._audit(msg.get("audit"), "at the end of the session")
        else:
            self._violation(f"an unexpected message ({printable(str(kind))[:40]})")
        return []

    def _on_collected(self, msg: dict) -> list[Action]:
        expected = {n for n in self.cr.tests if n not in self.skip}
        tests = msg.get("tests")
        got = {t.get("nodeid") for t in tests if isinstance(t, dict)} if isinstance(tests, list) else set()
        errors = msg.get("collection_errors")
        errors = [printable(str(e)) for e in errors] if isinstance(errors, list) else []
        self.collected = {n for n in got if isinstance(n, str)}
        self.device = printable(str(msg.get("device", "cpu")))[:20]
        if errors or got != expected:
            detail = errors[0] if errors else f"{len(got ^ expected)} tests differ from the instructor's collection"
            self.cr.status = Status.ERROR
            self.cr.reason = f"the tests could not be collected in the sandbox: {detail}"
            return self._stop()
        return [ACK]

    def _on_start(self, msg: dict) -> list[Action]:
        nodeid = msg.get("nodeid")
        if self.current is not None or nodeid not in self.collected or self.cr.tests[nodeid].reported:
            self._violation(f"a result for an unexpected test ({printable(str(nodeid))[:80]})")
            return []
        self.current = nodeid
        return [started(nodeid)]

    def _on_test(self, msg: dict) -> list[Action]:
        nodeid = msg.get("nodeid")
        record = self.cr.tests.get(nodeid) if isinstance(nodeid, str) and nodeid in self.collected else None
        try:
            outcome = Outcome(msg.get("outcome"))
        except ValueError:
            outcome = None
        if record is None or record.reported or nodeid != self.current or outcome is None:
            self._violation(f"an unexpected or repeated result ({printable(str(nodeid))[:80]})")
            return []
        record.reported = True
        record.outcome = outcome
        record.message = "" if outcome == Outcome.PASSED else \
            printable(str(msg.get("message", "")))[:MESSAGE_LIMIT]
        if outcome == Outcome.SKIPPED:  # neutral only for a test that does not count here
            record.outcome, record.message = judge_skip(record.counted, record.message)
        elif not record.counted:  # a GPU test without a GPU cannot have run
            self._violation(f"a result for a test that cannot run here ({printable(nodeid)[:80]})")
            record.outcome = Outcome.SKIPPED
        self.current = None
        self._audit(msg.get("audit"), f"after {record.name}")
        return [finished(nodeid)]

    # -- findings
    def _audit(self, findings, when: str) -> None:
        if not findings:
            return
        if not isinstance(findings, list):
            findings = ["the tamper audit's report"]
        for f in findings[:MAX_FINDINGS]:
            what = printable(str(f))[:120]
            if not any(t.startswith(what + " ") for t in self.cr.tampered):
                self.cr.tampered.append(f"{what} was replaced ({when})")

    def _violation(self, what: str) -> None:
        if len(self.cr.tampered) < MAX_FINDINGS:
            self.cr.tampered.append(f"results channel: {what}")
