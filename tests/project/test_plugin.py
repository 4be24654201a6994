"""The grading plugin and `grader check`: selection, messages, exit codes, offline guard."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys

import pytest

from chapter_runs import run_chapter
from grader import cli
from grader.paths import ROOT
from grader.plugin import NetworkBlocked
from grader.check import run_pytest
from grader.process import chapter_test_args

SOLUTION = ROOT / "solutions" / "ch05_linear_regression.py"


def test_network_is_blocked_during_tests():
    with pytest.raises(NetworkBlocked, match="network access is blocked"):
        socket.create_connection(("127.0.0.1", 9), timeout=1)


def test_unix_sockets_still_work():
    a, b = socket.socketpair()
    a.sendall(b"ok")
    assert b.recv(2) == b"ok"
    a.close(), b.close()


def test_syntax_error_is_one_clear_line(tmp_path):
    (tmp_path / SOLUTION.name).write_text(SOLUTION.read_text().replace("return self.linear(x)",
                                                                       "return self.linear(x"))
    results = run_chapter("05", tmp_path).results
    assert results.score == 0
    assert {t.message for t in results.tests} == {
        f"{SOLUTION.name} has a syntax error at line {_line_of(SOLUTION, 'return self.linear(x)')}: "
        "'(' was never closed"}


def _line_of(path, text):
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_missing_file_names_the_file(tmp_path):
    (tmp_path / "ch05_linear.py").write_text("")
    results = run_chapter("05", tmp_path).results
    assert results.score == 0
    assert all(t.message.startswith("ch05_linear_regression.py not found in") and "ch05_linear.py" in t.message
               for t in results.tests)


def test_crash_at_import_is_reported(tmp_path):
    (tmp_path / SOLUTION.name).write_text(SOLUTION.read_text() + "\nraise ValueError('boom')\n")
    results = run_chapter("05", tmp_path).results
    assert all("importing ch05_linear_regression.py failed: ValueError: boom" in t.message
               for t in results.tests)


def test_task_option_selects_one_task():
    results = run_chapter("05", "solutions", tasks=["ch05.forward"]).results
    assert {t.task for t in results.tests} == {"ch05.forward"}


def test_timeout_message(tmp_path):
    (tmp_path / SOLUTION.name).write_text(SOLUTION.read_text().replace(
        "        return self.linear2(self.linear1(x).clamp(min=0))",
        "        while True:\n            pass"))
    outcome = run_pytest(chapter_test_args("05", tmp_path, tasks=["ch05.two_layer"],
                                           extra=["--timeout", "1"]), timeout=60)
    messages = {t.message for t in outcome.results.tests}
    assert all(m.startswith("timed out") and "infinite loop" in m for m in messages), messages


def _bad_tests(tmp_path, marks):
    tests = tmp_path / "tests" / "ch05"
    tests.mkdir(parents=True)
    (tests / "test_public.py").write_text(f"import pytest\n\n{marks}\ndef test_x(impl):\n    pass\n")
    return tmp_path / "tests"


@pytest.mark.parametrize("marks, problem", [
    ('@pytest.mark.task("ch05.forwrd")\n@pytest.mark.points(1)', "is not a task of the syllabus"),
    ('@pytest.mark.task("ch03.cost")\n@pytest.mark.points(1)', "belongs to another chapter"),
    ('@pytest.mark.task("ch05.forward")', "needs @pytest.mark.points"),
    ('@pytest.mark.task("ch05.forward")\n@pytest.mark.points(1)\n@pytest.mark.hidden', "test_hidden"),
])
def test_badly_marked_tests_fail_collection(tmp_path, marks, problem):
    tests = _bad_tests(tmp_path, marks)
    outcome = run_pytest(chapter_test_args("05", "solutions", tests_dir=tests), timeout=60)
    assert outcome.exit_code == pytest.ExitCode.USAGE_ERROR
    assert problem in outcome.log


def test_sessions_read_no_installed_entry_points(monkeypatch):
    """The grading plugins go into pytest as modules: a `-p NAME` would first read the
    entry points of every installed distribution (6 ms of each of a cohort's sessions)."""
    import importlib.metadata

    def distributions(*args, **kwargs):
        raise RuntimeError("a grading session read the installed distributions' entry points")

    monkeypatch.setattr(importlib.metadata, "distributions", distributions)  # the fork inherits it
    outcome = run_chapter("05", "solutions", tasks=["ch05.forward"])
    assert outcome.exit_code == 0, outcome.log[-2000:]
    assert all(t.outcome == "passed" for t in outcome.results.tests)


def test_check_prints_table_and_fails_on_stub(capsys):
    assert cli.main(["check", "05"]) == 1
    out = capsys.readouterr().out
    assert "ch05.forward" in out and "0 / 20" in out
    assert "not implemented yet: ch05.forward: LinearModel.forward" in out
    assert "Traceback" not in out


def test_check_passes_on_solution(capsys):
    assert cli.main(["check", "5", "--impl", "solutions"]) == 0
    out = capsys.readouterr().out
    assert "20 / 20" in out and "FAIL" not in out


def test_check_from_the_command_line_ends_without_teardown_and_loses_no_output():
    """From the command line `grader check` ends its process as soon as the table is out:
    an exit handler (here: torch's heap's teardown stands for them) does not run, and the
    table, written to a pipe and so held in a buffer, arrives whole with the exit status."""
    script = ("import atexit, sys\n"
              "atexit.register(lambda: print('TEARDOWN RAN'))\n"
              "from grader.cli import main\n"
              "sys.exit(main())\n")
    run = subprocess.run([sys.executable, "-c", script, "check", "01"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stderr[-2000:]
    assert "TEARDOWN RAN" not in run.stdout
    assert run.stdout.rstrip().endswith("(-v shows the tracebacks)"), run.stdout[-2000:]
    assert "ch01" in run.stdout and "total" in run.stdout


def test_a_pytest_started_on_its_own_imports_torch_and_its_compiler_without_collecting():
    """In a fresh interpreter (a `--no-fork` check, Windows, macOS), the plugin has torch
    imported, and torch's compiler stack when a test first steps an optimizer, with no
    collection during either, and their objects frozen after; the collector stays on, and
    other imports are untouched."""
    script = (
        "import gc, sys\n"
        "def importing(name):\n"
        "    module = sys.modules.get(name)\n"
        "    return module is not None and getattr(module.__spec__, '_initializing', False)\n"
        "during, other = [], []\n"
        "def seen(phase, info):\n"
        "    if phase == 'start':\n"
        "        (during if importing('torch') or importing('torch._dynamo') else other).append(1)\n"
        "gc.callbacks.append(seen)\n"
        "import grader.plugin\n"
        "assert 'torch' in sys.modules and during == [] and other, (during, other)\n"
        "frozen = gc.get_freeze_count()\n"
        "assert gc.isenabled() and frozen > 100_000, frozen\n"
        "import torch\n"
        "opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)\n"
        "assert 'torch._dynamo' in sys.modules and during == [], during\n"
        "assert gc.isenabled() and gc.get_freeze_count() > frozen + 100_000\n"
        "import json\n"
        "assert type(json.__spec__.loader).__name__ == 'SourceFileLoader'\n"
        "garbage = []; garbage.append(garbage); del garbage\n"
        "assert gc.collect() >= 1\n"
        "print('ok')\n")
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-3000:]


def test_check_unknown_chapter_lists_chapters():
    with pytest.raises(SystemExit) as exc:
        cli.main(["check", "99"])
    assert str(exc.value).startswith("grader: there is no chapter '99'; chapters are 01, 02")


def test_plain_pytest_grades_a_folder_anywhere(tmp_path):
    """`pytest -m ch05 --impl PATH` from the repository root, as an instructor would type it."""
    folder = tmp_path / "submission"
    folder.mkdir()
    shutil.copy(SOLUTION, folder)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-m", "ch05 and not hidden", "--impl", str(folder),
                           "-q", "-p", "no:cacheprovider"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    public = (ROOT / "tests" / "ch05" / "test_public.py").read_text(encoding="utf-8").count("\ndef test_")
    assert f"{public} passed" in proc.stdout


def test_skipping_from_student_code_earns_nothing(tmp_path):
    (tmp_path / SOLUTION.name).write_text(SOLUTION.read_text().replace(
        "        return self.linear(x)\n",
        "        import pytest\n        pytest.skip('not today')\n"))
    results = run_chapter("05", tmp_path, tasks=["ch05.forward"]).results
    assert results.max_score > 0 and results.score == 0
    # the skip is the student's exception like any other: the test fails and says so
    assert all(t.outcome == "failed" and "Skipped: not today" in t.message for t in results.tests)


def test_results_json_option_writes_the_graded_results(tmp_path):
    out = tmp_path / "results.json"
    outcome = run_pytest(chapter_test_args("05", "solutions", tasks=["ch05.forward"],
                                           extra=[f"--results-json={out}"]), timeout=120)
    import json
    data = json.loads(out.read_text())
    assert data["exitstatus"] == 0 and outcome.exit_code == 0
    assert {t["task"] for t in data["tests"]} == {"ch05.forward"}
    assert sum(t["score"] for t in data["tests"]) == sum(t["points"] for t in data["tests"]) > 0



def test_seeding_queues_device_calls_without_reading_source_lines():
    """warm_up (run by this worker, via chapter_runs) keeps torch.manual_seed cheap: the
    seed queued for CUDA until it starts still carries its stack, without source text."""
    import linecache

    import torch

    def seed_here():
        torch.manual_seed(5)
        return sys._getframe().f_lineno - 1

    calls = []
    real_getline = linecache.getline
    linecache.getline = lambda *a, **k: calls.append(a) or real_getline(*a, **k)
    try:
        torch.manual_seed(4)  # the queued seed_all replaces the previous one
        line = seed_here()
    finally:
        linecache.getline = real_getline
    assert not calls, f"seeding read source lines: {calls[:3]}"
    assert torch.initial_seed() == 5
    if torch.cuda.is_initialized():
        pytest.skip("CUDA is initialised: seeds are not queued")
    stack = torch.cuda._lazy_seed_tracker.get_calls()[-1][1]
    assert f"line {line}, in seed_here\n" in "".join(stack), list(stack)[-6:]


def test_a_judges_terminal_is_written_as_its_run_ends_not_after_each_test():
    """`judgeserver.hold_progress`: pytest's progress letters stay in the stream's buffer
    (no write per test, which woke the grader) until the stream itself is flushed."""
    import io

    from _pytest._io import TerminalWriter

    from grader.judgeserver import hold_progress

    class Stream(io.StringIO):
        flushes = 0

        def flush(self) -> None:
            Stream.flushes += 1

    class Reporter:
        _tw = TerminalWriter(Stream())

    class Config:
        class pluginmanager:
            @staticmethod
            def get_plugin(name):
                return Reporter if name == "terminalreporter" else None

    Reporter._tw.write(".", flush=True)
    assert Stream.flushes == 1
    hold_progress(Config)
    for letter in ".F.":
        Reporter._tw.write(letter, flush=True)
    Reporter._tw.flush()
    assert Stream.flushes == 1 and Reporter._tw._file.getvalue() == "..F."
