"""The parent's validation of a grading child's result stream (grader.protocol).

Pure: no fork, no root, no pytest child. Each test feeds bytes as a hostile child could
write them and checks what is recorded and what the parent is told to do.
"""
from __future__ import annotations

import json

import pytest

from grader.protocol import ACK, LINE_LIMIT, STOP, STREAM_LIMIT, ResultStream, finished, started
from grader.results import ChapterResult, Outcome, Status, TestSpec

A, B, GPU = "tests/ch05/test_public.py::test_a", "tests/ch05/test_hidden.py::test_b", "tests/ch05/test_hidden.py::test_gpu"


def chapter(device: str = "cpu") -> ChapterResult:
    specs = [TestSpec(A, "test_a", "ch05.forward", 2), TestSpec(B, "test_b", "ch05.train", 3, hidden=True),
             TestSpec(GPU, "test_gpu", "ch05.train", 1, hidden=True, gpu=True)]
    return ChapterResult.from_specs("05", specs, "hash", device)


def line(**msg) -> bytes:
    return (json.dumps(msg) + "\n").encode()


def collected(*nodeids: str, **extra) -> bytes:
    return line(type="collected", tests=[{"nodeid": n} for n in nodeids], device="cpu", **extra)


def result(nodeid: str, outcome: str = "passed", **extra) -> bytes:
    return line(type="start", nodeid=nodeid) + line(type="test", nodeid=nodeid, outcome=outcome,
                                                     message=extra.pop("message", ""), duration=0.1, **extra)


def honest(cr: ChapterResult) -> ResultStream:
    stream = ResultStream(cr)
    assert stream.feed(collected(A, B, GPU)) == [ACK]
    return stream


def test_an_honest_stream_is_recorded_test_by_test():
    cr = chapter()
    stream = honest(cr)
    assert stream.feed(result(A) + result(B, "failed", message="gradient is 2x too small")) == [
        started(A), finished(A), started(B), finished(B)]
    assert stream.feed(result(GPU, "skipped", message="needs a CUDA GPU")
                       + line(type="done", exit_code=1, device="cpu")) == [started(GPU), finished(GPU)]
    assert not cr.tampered and stream.done is not None and stream.current is None
    assert [t.outcome for t in cr.tests.values()] == [Outcome.PASSED, Outcome.FAILED, Outcome.SKIPPED]
    assert cr.tests[B].message == "gradient is 2x too small"
    assert cr.score == 2 and cr.max_score == 5  # the GPU test without a GPU neither earns nor costs


def test_a_message_split_across_reads_is_reassembled():
    cr = chapter()
    stream = honest(cr)
    data = result(A)
    actions = []
    for i in range(len(data)):
        actions += stream.feed(data[i:i + 1])
    assert actions == [started(A), finished(A)]
    assert cr.tests[A].outcome == Outcome.PASSED and not cr.tampered


@pytest.mark.parametrize("forged", [
    b"not json at all\n",
    b"[1, 2, 3]\n",
    line(type="test", nodeid="tests/ch05/test_public.py::test_made_up", outcome="passed"),
    line(type="start", nodeid="tests/ch05/test_public.py::test_made_up"),
    line(type="surprise"),
    line(type="collected", tests=[]),                       # a second collection
    line(type="test", nodeid=A, outcome="passed"),           # a result without its start
], ids=["not-json", "not-an-object", "unknown-test", "unknown-start", "unknown-type", "recollect", "no-start"])
def test_forged_lines_are_violations_and_earn_nothing(forged):
    cr = chapter()
    stream = honest(cr)
    stream.feed(forged)
    assert cr.tampered, "a forged line must be recorded"
    assert all(not t.reported for t in cr.tests.values())
    assert cr.score == 0 and all(t.outcome != Outcome.PASSED for t in cr.tests.values())


def test_a_repeated_result_is_a_violation_and_keeps_the_first():
    cr = chapter()
    stream = honest(cr)
    stream.feed(result(B, "failed", message="wrong"))
    stream.feed(result(B, "passed"))
    assert cr.tests[B].outcome == Outcome.FAILED and cr.tests[B].message == "wrong"
    assert any("unexpected" in t for t in cr.tampered)


def test_results_out_of_order_are_violations():
    cr = chapter()
    stream = honest(cr)
    stream.feed(line(type="start", nodeid=A) + line(type="test", nodeid=B, outcome="passed"))
    assert not cr.tests[B].reported and cr.tampered
    stream2 = ResultStream(chapter())
    stream2.feed(result(A))  # before "collected"
    assert stream2.cr.tampered and not stream2.cr.tests[A].reported


def test_an_unknown_outcome_is_a_violation():
    cr = chapter()
    stream = honest(cr)
    stream.feed(result(A, "xpassed"))
    assert not cr.tests[A].reported and cr.tampered


def test_done_before_the_tests_leaves_them_unreported_and_later_results_are_refused():
    cr = chapter()
    stream = honest(cr)
    stream.feed(line(type="done", exit_code=0, device="cpu"))
    assert stream.done is not None and not any(t.reported for t in cr.tests.values())
    stream.feed(result(A))
    assert not cr.tests[A].reported and cr.tampered


def test_a_collection_that_differs_from_the_manifest_stops_the_run_as_the_graders_error():
    cr = chapter()
    stream = ResultStream(cr)
    actions = stream.feed(collected(A, B, GPU, "tests/ch05/test_public.py::test_extra"))
    assert actions == [STOP] and stream.stopped
    assert cr.status == Status.ERROR and "could not be collected" in cr.reason
    assert not cr.tampered  # not the student's fault by itself
    assert stream.feed(result(A)) == [] and not cr.tests[A].reported


def test_a_collection_missing_a_test_or_with_errors_stops_the_run():
    cr = chapter()
    assert ResultStream(cr).feed(collected(A, B)) == [STOP]
    cr = chapter()
    assert ResultStream(cr).feed(collected(A, B, GPU, collection_errors=["boom"])) == [STOP]
    assert "boom" in cr.reason


def test_tests_already_graded_by_an_earlier_run_are_not_expected_again():
    cr = chapter()
    stream = ResultStream(cr, skip=frozenset({A}))
    assert stream.feed(collected(B, GPU)) == [ACK]
    stream.feed(result(A))
    assert not cr.tests[A].reported and cr.tampered


def test_an_oversized_stream_stops_the_run():
    cr = chapter()
    stream = honest(cr)
    junk = b" " * (1 << 20)
    actions = []
    for _ in range(STREAM_LIMIT // len(junk) + 1):
        actions += stream.feed(junk)
    assert actions == [STOP] and any("far more data" in t for t in cr.tampered)


def test_an_overlong_line_is_dropped():
    cr = chapter()
    stream = honest(cr)
    stream.feed(b"x" * (LINE_LIMIT + 1))
    assert any("overlong" in t for t in cr.tampered)
    stream.feed(b"\n")
    assert not any(t.reported for t in cr.tests.values())


def test_a_skip_that_is_not_a_gpu_test_without_a_gpu_is_a_failure():
    cr = chapter()
    stream = honest(cr)
    stream.feed(result(A, "skipped", message="not today"))
    assert cr.tests[A].outcome == Outcome.FAILED and "skipped from inside the code under test" in cr.tests[A].message
    cr = chapter("cuda")
    stream = ResultStream(cr)
    stream.feed(collected(A, B, GPU))
    stream.feed(result(GPU, "skipped", message="skip"))  # a GPU machine: skipping the GPU test is no excuse
    assert cr.tests[GPU].outcome == Outcome.FAILED and cr.max_score == 6


def test_points_possible_come_from_the_manifest_not_from_what_ran():
    ran, missing = chapter(), chapter()
    honest(ran).feed(result(A) + result(B) + result(GPU, "skipped", message="no GPU"))
    missing.fail_all("ch05_linear_regression.py missing")
    assert ran.max_score == missing.max_score == 5
    assert missing.tests[GPU].outcome == Outcome.SKIPPED and missing.score == 0


def test_a_gpu_test_reported_as_run_where_there_is_no_gpu_is_a_violation():
    cr = chapter()
    honest(cr).feed(result(GPU, "passed"))
    assert cr.tampered and cr.score == 0 and cr.tests[GPU].outcome == Outcome.SKIPPED


def test_audit_findings_and_odd_values_are_recorded_printably():
    cr = chapter()
    stream = honest(cr)
    stream.feed(result(A, audit=["torch.allclose"], message="x"))
    stream.feed(line(type="start", nodeid=B) + line(type="test", nodeid=B, outcome="failed",
                                                     message="bad \ud800 \x1b[31m", duration=float("inf"),
                                                     audit="yes"))
    assert any(t.startswith("torch.allclose was replaced") for t in cr.tampered)
    assert any("tamper audit" in t for t in cr.tampered)
    assert "\\ud800" in cr.tests[B].message and "\x1b" not in cr.tests[B].message
    assert cr.tests[B].duration == 0.0  # durations are the parent's own measurement, never the child's


def test_a_judge_sends_a_tests_result_with_the_next_start_in_one_write():
    """`grader.guard.Channel` holds a test's result for the next message: the grader gets
    result and start in one read (one wakeup per test, not two) and records both; a held
    result goes with the session's `done` too. A forked copy of the test process sends
    nothing, held or not."""
    import os

    from grader.guard import Channel
    r, w = os.pipe()
    try:
        os.set_blocking(r, False)
        channel = Channel(w)
        cr = chapter()
        stream = honest(cr)

        def read() -> bytes:
            try:
                return os.read(r, 1 << 16)
            except BlockingIOError:
                return b""

        channel.send({"type": "start", "nodeid": A})
        assert stream.feed(read()) == [started(A)]
        channel.send({"type": "test", "nodeid": A, "outcome": "passed", "message": "", "duration": 0.1},
                     hold=True)
        assert read() == b"", "a held result was written at once"
        channel.send({"type": "start", "nodeid": B})
        both = read()
        assert both.count(b"\n") == 2 and stream.feed(both) == [finished(A), started(B)]
        channel.send({"type": "test", "nodeid": B, "outcome": "failed", "message": "no", "duration": 0.1},
                     hold=True)
        pid = os.fork()
        if pid == 0:   # a copy made by student code's fork(): silent
            channel.send({"type": "done", "exit_code": 0})
            os._exit(0)
        os.waitpid(pid, 0)
        assert read() == b""
        channel.send({"type": "done", "exit_code": 1, "device": "cpu"})
        assert stream.feed(read()) == [finished(B)] and stream.done is not None
        assert not cr.tampered and cr.tests[A].outcome == Outcome.PASSED and cr.tests[B].outcome == Outcome.FAILED
    finally:
        os.close(r)
        os.close(w)


def _printable_by_character(text: str) -> str:
    out = []
    for ch in text:
        if ch.isprintable() or ch == "\t":
            out.append(ch)
        elif "\udc80" <= ch <= "\udcff":
            out.append(f"\\x{ord(ch) - 0xdc00:02x}")
        else:
            out.append(repr(ch)[1:-1])
    return "".join(out)


def test_printable_shows_what_a_character_by_character_pass_shows():
    """`redact.printable` (which the grader runs on every message a child sends) takes a
    quick path for text that is printable, or printable once its control characters are
    escaped; whatever the text, it gives what escaping it one character at a time gives."""
    import random

    from grader.redact import printable
    rng = random.Random(5)
    alphabet = ["a", "Z", " ", "é", "中", "\t", "\n", "\r", "\x00", "\x1b", "\x7f", "\x85", "\x9f", "\xa0",
                "\u2028", "\u200b", "\udc80", "\udcff", "\ud800", "\U0001f600", "\\", "'", '"']
    cases = ["", "plain", "two\nlines", "tab\there", "\x1b[31mred\x1b[0m", "bad byte \udcfe", "lone \ud83d"]
    cases += ["".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 40))) for _ in range(3000)]
    for text in cases:
        assert printable(text) == _printable_by_character(text), repr(text)
