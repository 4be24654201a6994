"""grader.testing.reference: student-independent reference runs computed once per cohort."""
from __future__ import annotations

import stat

import pytest
import torch

from grader import testing
from grader.testing import reference

calls: list[tuple] = []


@reference
def lecture_loop(start, x, y, epochs, lr, **mistake):
    calls.append((epochs, lr, tuple(mistake.items())))
    model = torch.nn.Linear(1, 1)           # draws from the random-number generator
    model.load_state_dict(start)
    criterion = torch.nn.MSELoss(reduction=mistake.pop("reduction", "sum"))
    return testing.reference_losses(model, criterion, x, y, epochs, lr, **mistake), model.state_dict()


@reference
def with_optimizer(optimizer_cls, x):
    calls.append(optimizer_cls)
    return [float(x.sum())]


@reference
def on_anything(thing):
    calls.append(thing)
    return 1


X = torch.tensor([[1.0], [2.0], [3.0]])
Y = 2 * X


def _start(seed):
    torch.manual_seed(seed)
    return torch.nn.Linear(1, 1).state_dict()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    calls.clear()
    monkeypatch.setattr(testing, "REFERENCE_CACHE", tmp_path)
    return tmp_path


def test_a_second_call_with_the_same_inputs_is_read_back(cache):
    start = _start(0)
    first = lecture_loop(start, X, Y, 20, 0.01)
    after_first = torch.rand(3)
    start = _start(0)
    second = lecture_loop(start, X, Y, 20, 0.01)
    after_second = torch.rand(3)
    assert len(calls) == 1
    assert first[0] == second[0] and isinstance(second[0], list)
    assert all(torch.equal(first[1][k], second[1][k]) for k in first[1])
    # the random numbers drawn after a cached call are those drawn after the real one
    assert torch.equal(after_first, after_second)
    assert len(list(cache.glob("*.pt"))) == 1 and not list(cache.glob("*.part"))


def test_any_different_input_is_computed_again(cache):
    lecture_loop(_start(0), X, Y, 20, 0.01)
    lecture_loop(_start(1), X, Y, 20, 0.01)                     # other weights
    lecture_loop(_start(0), X, Y + 0.5, 20, 0.01)               # other data
    lecture_loop(_start(0), X, Y, 21, 0.01)                     # other epochs
    lecture_loop(_start(0), X, Y, 20, 0.01, zero_grad=False)    # a mistake
    lecture_loop(_start(0), X, Y, 20, 0.01, reduction="mean")
    assert len(calls) == 6
    with_optimizer(torch.optim.SGD, X)
    with_optimizer(torch.optim.Adam, X)
    assert calls[-2:] == [torch.optim.SGD, torch.optim.Adam]


def test_the_random_state_before_the_call_is_part_of_the_key(cache):
    start = _start(0)
    torch.manual_seed(1)
    lecture_loop(start, X, Y, 5, 0.01)
    torch.manual_seed(2)
    lecture_loop(start, X, Y, 5, 0.01)
    assert len(calls) == 2


def test_inputs_it_cannot_key_are_computed_every_time(cache):
    on_anything(object())
    on_anything(object())
    on_anything(torch.ones(2, device="meta"))   # no bytes to key it by
    assert len(calls) == 3 and not list(cache.iterdir())


def test_an_unreadable_entry_is_computed_again(cache):
    lecture_loop(_start(0), X, Y, 5, 0.01)
    (entry,) = cache.glob("*.pt")
    entry.write_bytes(b"not a cache entry")
    again = lecture_loop(_start(0), X, Y, 5, 0.01)
    assert len(calls) == 2 and len(again[0]) == 5


def test_without_a_cache_every_call_computes(monkeypatch):
    calls.clear()
    monkeypatch.setattr(testing, "REFERENCE_CACHE", None)
    lecture_loop(_start(0), X, Y, 5, 0.01)
    lecture_loop(_start(0), X, Y, 5, 0.01)
    assert len(calls) == 2


def test_grader_grade_gives_judges_a_cache_only_where_student_code_runs_as_another_uid(tmp_path):
    from grader import sandbox
    from grader.cohort import reference_cache
    from grader.scheduler import Settings, grading_args

    full = sandbox.Isolation(root=True, drop_privileges=True)
    folder = reference_cache(tmp_path, full)
    assert folder is not None and stat.S_IMODE(folder.stat().st_mode) == 0o700
    for limited in (sandbox.Isolation(root=False), sandbox.Isolation(root=True, drop_privileges=False)):
        assert reference_cache(tmp_path / "other", limited) is None
    ws = sandbox.Workspace(tmp_path / "w", 60000, 60000)
    settings = Settings(limits=sandbox.Limits(), isolation=full, work_root=tmp_path, datasets=tmp_path,
                        tests_root=tmp_path, hide=[], chapters=["05"], manifests={}, zygote=None,
                        reference_cache=folder)
    # the judge is told; a process running student code never is
    assert f"--reference-cache={folder}" in grading_args("05", ws, settings, judged=True)
    assert not any("reference-cache" in a for a in grading_args("05", ws, settings, judged=False))


def test_judges_share_the_rewritten_test_modules_in_the_run_cache(tmp_path):
    """A judge given the cache keeps the test modules pytest rewrites as bytecode inside it
    (mode 0700), for the next judges of the run: read back, not rewritten, and the same
    results either way."""
    from grader.check import run_pytest
    from grader.paths import TESTS
    from grader.process import chapter_test_args

    args = chapter_test_args("01", "solutions", extra=[f"--reference-cache={tmp_path}"])
    first = run_pytest(args, timeout=120)
    folder = tmp_path / "bytecode"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    kept = sorted(p.name.split(".")[0] for p in folder.rglob("*.pyc") if TESTS.name in p.parts)
    assert {"test_public", "test_hidden"} <= set(kept), kept
    stamps = {p: p.stat().st_mtime_ns for p in folder.rglob("test_*.pyc")}
    second = run_pytest(args, timeout=120)
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("test_*.pyc")} == stamps  # read, not written again
    assert first.results.score == second.results.score == first.results.max_score > 0
