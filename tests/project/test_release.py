"""`grader release`: the student repository holds what students need, and nothing secret.

One release of every chapter is shared by the module's tests. Its leak search here is written
independently of release.py's scanner, so a bug in one is not hidden by the same bug in the
other. The check is run inside the release with an interpreter that sees this venv's packages
but not this repository's editable `grader`, so a module missing from the release fails there
instead of being imported from here.
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from grader import check, cli, release
from grader.check import format_check, run_pytest, run_pytest_subprocess
from grader.paths import ROOT
from grader.release import IMPORT_LINE_RE
from grader.process import chapter_test_args
from grader.results import task_rows
from grader.syllabus import CHAPTERS

MIN_LINE = 20
REQUIRED_MODULES = {"__init__", "__main__", "cli", "check", "paths", "process", "results", "plugin", "syllabus"}
INSTRUCTOR_ONLY = {"release", "cohort", "scheduler", "sandbox", "stubs", "mistakes"}  # public tests use grader.testing


@pytest.fixture(scope="module")
def dest(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("release") / "student"
    release.release(folder)
    return folder


@pytest.fixture(scope="module")
def student_python(tmp_path_factory) -> str:
    """A Python with this venv's packages on its path, but without the .pth files that
    install this repository's editable `grader`."""
    env_dir = tmp_path_factory.mktemp("student-venv")
    venv.create(env_dir, with_pip=False, symlinks=os.name != "nt")
    purelib = Path(sysconfig.get_paths(vars={"base": str(env_dir), "platbase": str(env_dir)})["purelib"])
    purelib.mkdir(parents=True, exist_ok=True)
    (purelib / "course-packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return str(env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python"))


def run_in(dest: Path, python: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(dest)}
    env.pop("PRACTICE_NO_FORK", None)
    return subprocess.run([python, "-m", "grader", *args], cwd=dest, env=env, capture_output=True,
                          text=True, timeout=300)


# --------------------------------------------------------------------------- nothing secret

def _solution_lines() -> set[str]:
    found = set()
    for path in (ROOT / "solutions").glob("ch*.py"):
        inside = False
        for line in path.read_text(encoding="utf-8").splitlines():
            if "### BEGIN SOLUTION" in line:
                inside = True
            elif "### END SOLUTION" in line:
                inside = False
            elif inside and len(line.strip()) >= MIN_LINE:
                found.add(line.strip())
    return found


def _hidden_lines_and_names() -> tuple[set[str], set[str]]:
    lines, names = set(), set()
    for path in (ROOT / "tests").glob("ch*/test_hidden*.py"):
        text = path.read_text(encoding="utf-8")
        # import lines say which libraries a test uses, not what it checks (as the scanner has it)
        lines |= {ln.strip() for ln in text.splitlines()
                  if len(ln.strip()) >= MIN_LINE and not IMPORT_LINE_RE.match(ln.strip())}
        names |= {node.name for node in ast.walk(ast.parse(text))
                  if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test")}
    return lines, names


def _public_texts() -> list[str]:
    """What is published by design: the stubs and the public test files, here."""
    paths = list((ROOT / "exercises").glob("ch*.py"))
    paths += [p for p in (ROOT / "tests").glob("ch*/*.py") if not p.name.startswith("test_hidden")]
    return [p.read_text(encoding="utf-8") for p in paths]


def test_release_holds_no_solution_line_and_no_hidden_test(dest):
    hidden_lines, hidden_names = _hidden_lines_and_names()
    public = _public_texts()
    # a line the stubs or the public tests contain anyway (a TODO comment, a points mark) is public
    secrets = {s for s in _solution_lines() | hidden_lines if not any(s in text for text in public)}
    assert len(secrets) > 1000 and len(hidden_names) > 100   # the search is not vacuous
    texts = {}
    for path in sorted(p for p in dest.rglob("*") if p.is_file()):
        rel = path.relative_to(dest).as_posix()
        try:
            texts[rel] = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:   # binary: must be a bundled data file, unchanged
            assert rel.startswith("datasets/") and path.read_bytes() == (ROOT / rel).read_bytes(), rel
    blob = "\n".join(texts.values())
    names = re.compile(r"\b(" + "|".join(sorted(hidden_names)) + r")\b")
    leaks = [s for s in secrets if s in blob] + sorted(set(names.findall(blob)))
    where = [f"{rel}:{n}: {line.strip()[:80]}" for rel, text in texts.items()
             for n, line in enumerate(text.splitlines(), 1)
             if names.search(line) or any(s in line for s in leaks)]
    assert not leaks, "leaked into the release:\n" + "\n".join(where[:30])


def test_release_leaves_out_instructor_files(dest):
    top = {p.name for p in dest.iterdir()}
    assert top == {".github", ".gitignore", ".release.json", "Makefile", "README.md", "bootstrap.py",
                   "datasets", "exercises", "grader", "pyproject.toml", "tests"}
    assert {p.name for p in (dest / "tests").iterdir()} == {"__init__.py"} | {f"ch{c}" for c in CHAPTERS}
    for folder in (dest / "tests").glob("ch*"):
        assert {p.name for p in folder.iterdir()} == {"__init__.py", "probes.py", "test_public.py"}, folder
    modules = {p.stem for p in (dest / "grader").glob("*.py")}
    assert REQUIRED_MODULES <= modules and not modules & INSTRUCTOR_ONLY, sorted(modules)
    assert not list(dest.rglob("full")) and not list(dest.rglob("__pycache__"))
    assert (dest / ".github" / "workflows" / "check.yml").read_bytes() == \
        (ROOT / "grader" / "student" / "check.yml").read_bytes()


def test_public_tests_and_stubs_are_byte_identical(dest):
    for chapter, info in CHAPTERS.items():
        for rel in (f"tests/ch{chapter}/test_public.py", f"exercises/{info.filename}"):
            assert (dest / rel).read_bytes() == (ROOT / rel).read_bytes(), rel


def test_manifest_records_what_was_released(dest):
    manifest = json.loads((dest / ".release.json").read_text())
    assert manifest["chapters"] == sorted(CHAPTERS)
    for rel, digest in manifest["files"].items():
        assert hashlib.sha256((dest / rel).read_bytes()).hexdigest() == digest, rel


# --------------------------------------------------------------------------- checking in DEST

def test_check_in_release_fails_on_the_stubs(dest, student_python):
    run = run_in(dest, student_python, "check", "05")
    assert run.returncode == 1, run.stdout + run.stderr
    assert re.search(r"total\s+0 / [1-9]\d*", run.stdout), run.stdout
    assert run.stdout.count("not implemented yet: ch05.") == 4, run.stdout
    assert "public tests only: the hidden tests run when your work is graded" in run.stdout


def test_check_in_release_gives_full_marks_to_the_solution(dest, student_python, tmp_path):
    shutil.copy(ROOT / "solutions" / CHAPTERS["05"].filename, tmp_path)
    run = run_in(dest, student_python, "check", "05", "--impl", str(tmp_path), "--no-fork")
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"total\s+([1-9]\d*) / \1 ", run.stdout), run.stdout
    assert "What to fix" not in run.stdout


# --------------------------------------------------------------------------- releasing again

def test_release_again_keeps_students_work_and_adds_chapters(tmp_path):
    dest = tmp_path / "student"
    release.release(dest, ["01", "02"], git=True)
    log = subprocess.run(["git", "log", "--oneline"], cwd=dest, capture_output=True, text=True).stdout
    assert len(log.splitlines()) == 1
    assert subprocess.run(["git", "status", "--porcelain"], cwd=dest, capture_output=True,
                          text=True).stdout == ""
    assert not (dest / "tests" / "ch03").exists()

    mine = dest / "exercises" / CHAPTERS["01"].filename
    mine.write_text(mine.read_text() + "\n# my work\n")
    # ch02 as an older release wrote it: the manifest knows it, so it is updated, not kept
    old = dest / "exercises" / CHAPTERS["02"].filename
    old.write_text("# an older stub\n")
    manifest = json.loads((dest / ".release.json").read_text())
    manifest["files"][f"exercises/{old.name}"] = hashlib.sha256(old.read_bytes()).hexdigest()
    (dest / ".release.json").write_text(json.dumps(manifest))

    report = release.release(dest, ["03"])
    assert report.kept == [f"exercises/{mine.name}"]
    assert mine.read_text().endswith("# my work\n")
    assert old.read_bytes() == (ROOT / "exercises" / old.name).read_bytes()
    assert (dest / "tests" / "ch03" / "test_public.py").is_file()
    assert (dest / "exercises" / CHAPTERS["03"].filename).is_file()
    assert json.loads((dest / ".release.json").read_text())["chapters"] == ["01", "02", "03"]


def test_release_refuses_a_folder_inside_the_repository_or_not_its_own(tmp_path, capsys):
    assert cli.main(["release", str(ROOT / "build" / "student")]) == 1
    err = capsys.readouterr().err
    assert "inside the repository" in err and len(err.strip().splitlines()) == 1
    assert not (ROOT / "build" / "student").exists()
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(release.ReleaseError, match="not empty"):
        release.release(tmp_path)


def test_leak_stops_the_release_naming_file_and_line(tmp_path, monkeypatch):
    secrets = release.collect_secrets(ROOT)
    line = next(s for s, origin in secrets.lines.items() if origin.startswith("tests/"))
    name = next(iter(secrets.names))
    planned = release.planned_files

    def with_leak(source, chapters):
        files = planned(source, chapters)
        files["grader/notes.py"] = f'"""Notes.\n\n    {line}\n"""\n# see {name}\n'.encode()
        return files

    monkeypatch.setattr(release, "planned_files", with_leak)
    with pytest.raises(release.ReleaseError) as err:
        release.release(tmp_path / "student", ["01"])
    assert "grader/notes.py:3: a line of tests/" in str(err.value)
    assert f"grader/notes.py:5: the hidden test name {name}" in str(err.value)
    assert not (tmp_path / "student").exists()


def test_release_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["release", "--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and "--chapters 01,02" in out and "make release dest=" in out


# --------------------------------------------------------------------------- no fork

def test_fork_only_on_linux_unless_switched_off(monkeypatch):
    monkeypatch.delenv("PRACTICE_NO_FORK", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    assert check.fork_wanted() and not check.fork_wanted(no_fork=True)
    monkeypatch.setenv("PRACTICE_NO_FORK", "1")
    assert not check.fork_wanted()
    monkeypatch.setenv("PRACTICE_NO_FORK", "0")
    assert check.fork_wanted()
    for platform in ("darwin", "win32"):
        monkeypatch.setattr(sys, "platform", platform)
        assert not check.fork_wanted()


def test_check_with_no_fork_never_forks(monkeypatch, capsys):
    def no_fork(*args, **kwargs):
        raise AssertionError("forked")

    ran = []

    def fresh(args, timeout=None):
        ran.append(args)
        return check.RunOutcome(check.RunResults(), 0)

    monkeypatch.setattr(check, "run_pytest", no_fork)
    monkeypatch.setattr(check, "warm_up", no_fork)
    monkeypatch.setattr(check, "run_pytest_subprocess", fresh)
    cli.main(["check", "05", "--no-fork"])
    monkeypatch.setenv("PRACTICE_NO_FORK", "1")
    cli.main(["check", "05"])
    assert len(ran) == 2 and "no tests ran" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("number", ["05", "08"])  # the README's example, and the spawn chapter
def test_no_fork_gives_the_same_table_as_fork(number):
    tests = ROOT / "tests" / f"ch{number}"
    for impl in ("solutions", "exercises"):
        args = chapter_test_args(number, impl, public_only=True)
        forked, fresh = run_pytest(args, timeout=300), run_pytest_subprocess(args, timeout=300)
        assert not forked.error and not fresh.error, (forked.error, fresh.error, fresh.log[-2000:])
        assert task_rows(number, fresh.results.tests) == task_rows(number, forked.results.tests)
        assert [(t.name, t.outcome, t.message) for t in fresh.results.tests] == \
            [(t.name, t.outcome, t.message) for t in forked.results.tests]
        assert format_check(CHAPTERS[number], fresh, chapter_tests=tests) == \
            format_check(CHAPTERS[number], forked, chapter_tests=tests)
        assert fresh.exit_code == forked.exit_code == (0 if impl == "solutions" else 1)


# --------------------------------------------------------------------------- student tools

def test_student_pyproject_matches_the_course():
    tomllib = pytest.importorskip("tomllib")
    here = tomllib.loads((ROOT / "pyproject.toml").read_text())
    student = tomllib.loads((ROOT / "grader" / "student" / "pyproject.toml").read_text())
    pins = [d for d in here["project"]["optional-dependencies"]["grade"] if d.startswith("torch")]
    assert pins and [d for d in student["project"]["dependencies"] if d.startswith("torch")] == pins
    assert student["project"]["requires-python"] == here["project"]["requires-python"]
    assert student["project"]["entry-points"] == here["project"]["entry-points"]
    for key in ("addopts", "testpaths", "timeout"):
        assert student["tool"]["pytest"]["ini_options"][key] == here["tool"]["pytest"]["ini_options"][key]


def test_student_makefile_picks_the_windows_venv(dest):
    if shutil.which("make") is None:
        pytest.skip("no make here")
    plan = subprocess.run(["make", "-n", "-C", str(dest), "check", "ch=05", "OS=Windows_NT", "TORCH=cpu"],
                          capture_output=True, text=True).stdout
    assert "python bootstrap.py --torch=cpu" in plan
    assert ".venv/Scripts/python.exe -m grader check 05" in plan


def test_bootstrap_says_in_one_line_when_the_cpu_index_is_unreachable(dest, tmp_path):
    env = {**os.environ, "PRACTICE_TORCH_CPU_INDEX": "http://127.0.0.1:9/whl/cpu"}
    run = subprocess.run([sys.executable, str(dest / "bootstrap.py"), "--torch", "cpu", "--root", str(tmp_path)],
                         env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert len(run.stderr.strip().splitlines()) == 1 and "cannot be reached" in run.stderr, run.stderr
    assert not (tmp_path / ".venv").exists()


def test_bootstrap_names_the_python_needed(dest):
    as_if_39 = ("import sys; path = sys.argv[1]; sys.version_info = (3, 9, 6, 'final', 0); "
                "exec(compile(open(path).read(), path, 'exec'), {'__name__': '__main__', '__file__': path})")
    run = subprocess.run([sys.executable, "-c", as_if_39, str(dest / "bootstrap.py")],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert len(run.stderr.strip().splitlines()) == 1 and "needs Python 3.10 or newer" in run.stderr


# The workflows (the student ones included) are linted by
# test_ci_grading.test_workflows_pass_actionlint.
