"""`grader grade` against submissions that try to stall it, leave state behind, forge
its outputs or take it down, each graded beside honest submissions.

Run as root on Linux for the full sandbox (a separate uid per job, namespaces, private
tmpfs); the limited mode's refusal and the pure parts run anywhere.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from grader import accounting, sandbox
from grader.process import fork_child
from grader.suspicious import scan
from hostile.cases import FILENAME, FORWARD, SOLUTION, at_import, in_function
from hostile.harness import results, run_cli

needs_root = pytest.mark.skipif(not sys.platform.startswith("linux") or os.geteuid() != 0,
                                reason="the full sandbox needs Linux and root")

SHM_KEY = 0x5EC0DE  # a SysV shared-memory key the writer creates and the reader looks for


def _writer(token: str) -> str:
    """At import: leave something in every shared place a later job could look."""
    return at_import(f"""
import ctypes as _ct, os as _os
for _place in ("/dev/shm", "/run/lock", "/tmp", "/var/tmp"):
    try:
        open(_os.path.join(_place, "payload-{token}"), "w").write("secret")
    except OSError:
        pass
_libc = _ct.CDLL(None, use_errno=True)
_libc.shmget({SHM_KEY}, 4096, 0o1000 | 0o666)
""")


def _reader(token: str) -> str:
    """At import: fail loudly if anything of the writer's is visible."""
    return at_import(f"""
import ctypes as _ct, os as _os
_seen = [p for p in ("/dev/shm", "/run/lock", "/tmp", "/var/tmp")
         if _os.path.exists(_os.path.join(p, "payload-{token}"))]
if _ct.CDLL(None, use_errno=True).shmget({SHM_KEY}, 0, 0) != -1:
    _seen.append("SysV shared memory")
if _seen:
    raise RuntimeError(f"another job's state is visible: {{_seen}}")
""")


FILL_DISK = at_import("""
import os as _os
_block = b"x" * (1 << 20)
for _place in (_os.path.expanduser("~"), "/dev/shm", "/tmp"):
    try:
        with open(_os.path.join(_place, "filler"), "wb") as _f:
            for _ in range(1024):   # 1 GB, far above the quota
                _f.write(_block)
    except OSError:
        pass
""")
CLOSE_FDS = at_import("import os as _os\n_os.close(1)\n_os.close(2)")
SURROGATE = in_function(FORWARD, "raise AssertionError('bad \\ud800 here')")
MARKDOWN = in_function(FORWARD, "raise AssertionError('see ![img](http://example.invalid/x.png) "
                                "and [click](http://example.invalid) <b>now</b>')")
REACHES = at_import("import gc as _gc, inspect as _inspect, sys as _sys\n_frame = _sys._getframe(0)")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip("the full sandbox needs Linux and root")
    base = tmp_path_factory.mktemp("security")
    token = uuid.uuid4().hex[:10]
    subs = base / "subs"
    files = {"a_writer": _writer(token), "b_reader": _reader(token), "honest": SOLUTION,
             "fill_disk": FILL_DISK, "close_fds": CLOSE_FDS, "surrogate": SURROGATE,
             "markdown": MARKDOWN, "reaches": REACHES}
    for student, text in files.items():
        (subs / student).mkdir(parents=True)
        (subs / student / FILENAME).write_text(text, encoding="utf-8")
    with zipfile.ZipFile(subs / "twice.zip", "w") as z:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            z.writestr(FILENAME, SOLUTION)
            z.writestr(FILENAME, SOLUTION.replace("return self.linear(x)", "return 0 * self.linear(x)"))
    (subs / ".sneaky").mkdir()
    (subs / ".sneaky" / FILENAME).write_text(SOLUTION, encoding="utf-8")
    # a link the sandbox uid cannot follow, beside the working folders and in /tmp
    private = base / "private"
    (private / "inside").mkdir(parents=True)
    os.chmod(private, 0o700)
    links = [Path(p) / f"zz-unreadable-{token}" for p in {str(sandbox.work_base()), "/tmp"}]
    for link in links:
        link.symlink_to(private / "inside")
    try:
        out = base / "out"
        run = run_cli(["grade", str(subs), "-o", str(out), "--chapters", "05", "--jobs", "1",
                       "--disk", "64"], base, timeout=600)
    finally:
        for link in links:
            link.unlink()
    ipcs = subprocess.run(["ipcs", "-m"], capture_output=True, text=True).stdout
    return SimpleNamespace(out=out, run=run, token=token, ipcs=ipcs)


def _full(out: Path, student: str) -> bool:
    data = results(out, student)
    return data["score"] == data["extra_data"]["max_score"] > 0


@needs_root
def test_the_cohort_is_graded_despite_an_unreadable_link_beside_it(cohort):
    assert cohort.run.code == 0, cohort.run.explain()
    assert _full(cohort.out, "honest")


@needs_root
def test_no_state_is_shared_between_jobs_or_outlives_them(cohort):
    assert _full(cohort.out, "a_writer") and _full(cohort.out, "b_reader"), \
        results(cohort.out, "b_reader")["output"]
    for place in ("/dev/shm", "/run/lock", "/tmp", "/var/tmp"):
        assert not Path(place, f"payload-{cohort.token}").exists(), place
    assert f"{SHM_KEY:08x}" not in cohort.ipcs


@needs_root
def test_disk_writes_are_bounded_by_the_quota(cohort):
    assert _full(cohort.out, "fill_disk")
    assert not Path("/dev/shm/filler").exists() and not Path("/tmp/filler").exists()


@needs_root
def test_a_correct_solution_that_closes_stdout_and_stderr_gets_full_marks(cohort):
    assert _full(cohort.out, "close_fds"), results(cohort.out, "close_fds")["output"]


@needs_root
def test_a_lone_surrogate_in_a_message_is_shown_not_fatal(cohort):
    data = results(cohort.out, "surrogate")
    assert "\\ud800" in data["output"]
    assert data["score"] < data["extra_data"]["max_score"]


@needs_root
def test_student_text_cannot_add_markdown_or_html(cohort):
    feedback = (cohort.out / "markdown" / "feedback.md").read_text(encoding="utf-8")
    assert "![img]" not in feedback and "[click](" not in feedback and "<b>" not in feedback
    assert "\\!\\[img\\]" in feedback


@needs_root
def test_every_results_json_is_strict_json(cohort):
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")
    for path in cohort.out.glob("*/results.json"):
        json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


@needs_root
def test_a_duplicated_archive_entry_makes_the_archive_unreadable(cohort):
    data = results(cohort.out, "twice")
    assert "more than once" in data["extra_data"]["unreadable"] and data["score"] == 0


@needs_root
def test_dot_named_entries_are_listed_in_the_notes(cohort):
    assert ".sneaky: a hidden name" in cohort.run.stderr
    assert not (cohort.out / ".sneaky").exists()


@needs_root
def test_reaching_for_internals_is_flagged_for_review_without_changing_the_score(cohort):
    data = results(cohort.out, "reaches")
    assert _full(cohort.out, "reaches")
    review = " ".join(data["extra_data"]["review"])
    assert "imports gc" in review and "imports inspect" in review and "stack frames" in review
    assert not results(cohort.out, "honest")["extra_data"]["review"]
    grades = (cohort.out / "grades.csv").read_text(encoding="utf-8")
    assert "review (" in grades


@needs_root
def test_a_grader_failure_is_never_a_score_and_is_retried(tmp_path):
    subs = tmp_path / "subs"
    (subs / "alice").mkdir(parents=True)
    (subs / "alice" / FILENAME).write_text(SOLUTION, encoding="utf-8")
    out = tmp_path / "out"

    def broken_sandbox():
        def enter(*args, **kwargs):
            raise OSError("the sandbox could not be set up (simulated)")
        sandbox.enter = enter

    first = run_cli(["grade", str(subs), "-o", str(out), "-q"], tmp_path, before=broken_sandbox)
    assert first.code == 3, first.explain()
    assert "run the same command again" in first.stderr
    row = (out / "grades.csv").read_text(encoding="utf-8").splitlines()[1]
    assert row.startswith("alice,regrade,regrade,"), row
    assert "regrade" in (out / "alice" / "feedback.md").read_text(encoding="utf-8")
    second = run_cli(["grade", str(subs), "-o", str(out), "-q"], tmp_path)
    assert second.code == 0, second.explain()
    assert _full(out, "alice")


@needs_root
def test_after_a_job_only_the_shared_folders_it_could_write_to_are_searched(tmp_path):
    """The shared folders a job had a tmpfs of its own in (`sandbox.private_folders`) are
    exactly those its files never reached on the machine, and the clean-up after every job
    (`remove_stray_files`) leaves them unwalked; the rest (here /var/tmp, which holds the
    data sets and so cannot be covered) are searched and emptied of the job's files."""
    isolation = sandbox.probe_isolation()
    if not isolation.mount_namespace:
        pytest.skip("no mount namespace here")
    token = uuid.uuid4().hex[:10]
    datasets = Path("/var/tmp") / f"datasets-{token}"
    datasets.mkdir()
    pool, work = sandbox.UidPool(), sandbox.WorkRoot()
    uid = pool.acquire(1)[0]
    ws = sandbox.Workspace(work.path / "ws", uid, uid).create({})
    planted: list[Path] = []

    def leave_files() -> int:
        for place in sandbox.PRIVATE_SHARED:
            try:
                Path(place, f"stray-{token}").write_text("x")
            except OSError:
                pass
        return 0
    try:
        parent = os.getpid()
        pid = fork_child(lambda: (sandbox.enter(ws, sandbox.Limits(), isolation, [],
                                                sandbox.child_env(ws, datasets), parent), leave_files())[1])
        assert os.waitpid(pid, 0)[1] == 0
        private = sandbox.private_folders(ws, datasets)
        shared = [p for p in sandbox.PRIVATE_SHARED if os.path.isdir(p) and not os.path.islink(p)]
        reached = [p for p in shared if Path(p, f"stray-{token}").exists()]
        assert "/var/tmp" not in private and "/var/tmp" in reached, (private, reached)
        assert sorted(reached) == sorted(set(shared) - set(private)), (private, reached)
        for place in private:   # what the walk would find there, were it walked
            planted.append(Path(place, f"planted-{token}"))
            planted[-1].write_text("x")
            os.chown(planted[-1], uid, uid)
        removed = accounting.remove_stray_files(uid, private)
        assert f"/var/tmp/stray-{token}" in removed and not Path("/var/tmp", f"stray-{token}").exists()
        assert all(p.exists() for p in planted) and not set(map(str, planted)) & set(removed), removed
    finally:
        for p in planted:
            p.unlink(missing_ok=True)
        accounting.kill_uid(uid)
        accounting.remove_stray_files(uid)
        pool.release()
        work.remove()
        datasets.rmdir()


def test_a_work_root_is_never_taken_for_a_dead_runs_by_a_grader_starting_beside_it(monkeypatch):
    """Two graders on one machine (CI shards, say): one that starts cleans up the work roots
    of runs killed earlier, those whose lock nobody holds. Were it to look at the exact
    moment another grader has made its lock file but not yet locked it, it must not take
    that live work root for a dead one."""
    real = sandbox.fcntl.flock
    seen = []

    def flock(fd, op):
        if not seen:   # the other grader cleans up just before this one locks
            seen.append(True)
            sandbox.clean_stale_work_roots()
        return real(fd, op)
    monkeypatch.setattr(sandbox.fcntl, "flock", flock)
    root = sandbox.WorkRoot()
    try:
        assert seen and root.path.is_dir() and (root.path / ".lock").exists()
        monkeypatch.setattr(sandbox.fcntl, "flock", real)
        sandbox.clean_stale_work_roots()   # and later on, while it runs
        assert root.path.is_dir()
    finally:
        root.remove()
    assert not root.path.exists()


def test_without_the_full_sandbox_grading_is_refused_unless_asked(tmp_path):
    subs = tmp_path / "subs"
    (subs / "alice").mkdir(parents=True)
    (subs / "alice" / FILENAME).write_text(SOLUTION, encoding="utf-8")

    def not_root() -> None:
        os.geteuid = lambda: 4242  # noqa: E731 - only in this forked grading process

    refused = run_cli(["grade", str(subs), "-o", str(tmp_path / "out")], tmp_path, before=not_root)
    assert refused.code == 2 and "--unsafe-limited" in refused.stderr, refused.explain()
    assert len(refused.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "alice").exists()


def test_the_review_scan_flags_reaching_code_and_spares_the_solutions():
    from grader.paths import SOLUTIONS
    for path in sorted(SOLUTIONS.glob("ch*.py")):
        assert scan(path.read_text(encoding="utf-8")) == [], path.name
    flagged = scan("import ctypes\nimport sys\nf = sys._getframe(1).f_back\nexec('x=1')\n"
                   "from torch.overrides import TorchFunctionMode\nsys.modules['torch'] = None\n")
    text = " ".join(flagged)
    for what in ("ctypes", "stack frames", "exec", "torch function modes", "sys.modules"):
        assert what in text, what


def test_hidden_lines_to_redact_leave_out_what_students_already_have(tmp_path):
    from grader.manifest import source_lines
    (tmp_path / "test_public.py").write_text("def helper(model):\n    optimizer.zero_grad_on_every_batch()\n")
    (tmp_path / "probes.py").write_text("held_out = load_the_probe_inputs(seed=7)\n")
    (tmp_path / "test_hidden.py").write_text(
        "def test_x():\n"
        "    optimizer.zero_grad_on_every_batch()\n"       # also in the public tests
        "    held_out = load_the_probe_inputs(seed=7)\n"   # also in the probes
        "    expected = secret_threshold_value(0.95)\n"    # only here: a secret
        "    assert ok, 'call reported_in_a_message_only()'\n"
        "    reported_in_a_message_only()\n")            # quoted by the file's own message
    assert source_lines(tmp_path) == ["assert ok, 'call reported_in_a_message_only()'",
                                      "expected = secret_threshold_value(0.95)"]
