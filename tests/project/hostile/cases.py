"""Hostile and broken submissions, built from the chapter 05 solution.

`build_cohort(folder, token)` writes one submission per case into `folder` and returns
the cases. Each case says what the grader must conclude: the chapter's score (as
"full", 0, or full minus the points of some tasks), the chapter status, and a phrase
the reason or a failure message must contain. `token` makes markers (files in /tmp,
process names) unique to one test run.
"""
from __future__ import annotations

import io
import os
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from grader.paths import ROOT

FILENAME = "ch05_linear_regression.py"
SOLUTION = (ROOT / "solutions" / FILENAME).read_text(encoding="utf-8")
STUB = (ROOT / "exercises" / FILENAME).read_text(encoding="utf-8")
IMPORTS = "from torch import nn\n"          # hostile code is injected after this line
FORWARD = "        return self.linear(x)\n"
TWO_LAYER = "        return self.linear2(self.linear1(x).clamp(min=0))\n"
DYNAMIC = "        if depth is None:\n"
STUB_FORWARD = '        raise NotImplementedError("ch05.forward: LinearModel.forward")\n'


@dataclass
class Case:
    student: str                 # the submission's id (its folder or archive name without suffix)
    score: str | float           # "full", a number, "full-<task or test>[,...]" (their points lost),
                                 # "same-as:<student>" (that student's score) or "any"
    status: str | None = None    # expected chapter status (None: any)
    says: str = ""               # phrase (case-insensitive) in the chapter reason or a failure message
    unreadable: str = ""         # phrase in the unreadable reason, if the submission cannot be read
    checks: list[str] = field(default_factory=list)  # extra checks the test runs by name


def at_import(code: str, source: str = SOLUTION) -> str:
    assert source.count(IMPORTS) == 1
    return source.replace(IMPORTS, IMPORTS + "\n" + code.strip("\n") + "\n")


def in_function(anchor: str, code: str, source: str = SOLUTION) -> str:
    """Insert `code` (indented like `anchor`) before the line `anchor`."""
    assert source.count(anchor) == 1, anchor
    indent = anchor[: len(anchor) - len(anchor.lstrip())]
    block = "".join(indent + line + "\n" for line in code.strip("\n").splitlines())
    return source.replace(anchor, block + anchor)


def sources(token: str) -> dict[str, tuple[str, Case]]:
    """student -> (ch05 file text, expectation) for the single-file cases."""
    hidden_text = (ROOT / "tests" / "ch05" / "test_hidden.py").read_text(encoding="utf-8")
    tmp_marker = f"/tmp/hostile-{token}"
    s: dict[str, tuple[str, Case]] = {}

    def add(student: str, text: str, **kw) -> None:
        s[student] = (text, Case(student, **kw))

    add("good", SOLUTION, score="full", status="graded")
    add("good_late", SOLUTION, score="full", status="graded")
    add("syntax_error", SOLUTION.replace("return self.linear(x)", "return self.linear(x", 1),
        score=0, status="import-error", says="syntax error")
    add("loop_at_import", at_import("while True:\n    pass"), score=0, status="import-error", says="timeout")
    add("loop_in_function", in_function(TWO_LAYER, "while x.shape[0] == 6:  # never ends for 6 rows\n    pass"),
        score="full-test_two_layer_shape", status="graded", says="timed out")
    add("memory_50gb", in_function(DYNAMIC, "hog = torch.empty(50 * 2**30, dtype=torch.uint8)"),
        score="full-ch05.dynamic", status="graded", says="memory")
    add("fork_bomb", at_import("import os\nwhile True:\n    os.fork()"),
        score=0, status="import-error", says="resource temporarily unavailable")
    add("os_exit_at_import", at_import("import os\nos._exit(0)"), score=0, status="crashed",
        says="os._exit()")
    add("sys_exit_at_import", at_import("import sys\nsys.exit(0)"), score=0, status="import-error",
        says="SystemExit")
    add("segfault_at_import", at_import("import ctypes\nctypes.string_at(0)"), score=0, status="crashed",
        says="segmentation fault")
    add("segfault_in_function", in_function(DYNAMIC, "import ctypes\nctypes.string_at(0)"),
        score="full-ch05.dynamic", status="crashed", says="segmentation fault")
    add("print_100mb", at_import("import sys\nfor _ in range(100):\n    sys.stdout.write(('y' * 1023 + '\\n') * 1024)\n"
                                 "sys.stdout.flush()"),
        score="full", status="graded", checks=["small_log"])
    add("writes_everywhere", at_import(f"""
import os as _os
from pathlib import Path as _P
def _try(what, fn):
    try:
        fn()
        print("WROTE", what)
    except Exception as exc:
        print("REFUSED", what, type(exc).__name__)
_here = _P(__file__).resolve().parent
_try("home", lambda: (_P.home() / "notes.txt").write_text("mine"))
_try("tests", lambda: (_here.parent / "tests" / "ch05" / "test_public.py").write_text("x = 1"))
_try("tests-new", lambda: (_here.parent / "tests" / "ch05" / "conftest.py").write_text("x = 1"))
_try("grader", lambda: open({str(ROOT / 'grader' / 'plugin.py')!r}, "a").write("# pwned"))
_try("repo-tests", lambda: open({str(ROOT / 'tests' / 'ch05' / 'test_public.py')!r}, "a").write("# pwned"))
_try("solutions", lambda: open({str(ROOT / 'solutions' / FILENAME)!r}, "a").write("# pwned"))
_try("tmp", lambda: open({tmp_marker + '-written'!r}, "w").write("outside"))
_try("var-tmp", lambda: open({'/var/tmp/hostile-' + token!r}, "w").write("outside"))
"""), score="full", status="graded", checks=["files_intact"])
    add("reads_hidden", at_import(f"""
import gc as _gc, inspect as _inspect, linecache as _lc, sys as _sys
from pathlib import Path as _P
LEAK = []
for _path in [_P(__file__).resolve().parent.parent / "tests" / "ch05" / "test_hidden.py",
              _P({str(ROOT / 'tests' / 'ch05' / 'test_hidden.py')!r})]:
    try:
        LEAK.append(_path.read_text())
    except Exception as exc:
        print("cannot read", _path, type(exc).__name__)
for _name, _mod in list(_sys.modules.items()):
    if _name.endswith("test_hidden"):
        try:
            LEAK.append(_inspect.getsource(_mod))
        except Exception as exc:
            print("no source for", _name, type(exc).__name__)
for _file, _lines in list(_lc.cache.items()):
    if "test_hidden" in str(_file):
        LEAK.append("".join(_lines[2] if len(_lines) > 2 else []))
LEAK = "\\n".join(x for x in LEAK if x)
print("LEAKED", len(LEAK), "characters")
print(LEAK)
""", in_function(FORWARD, "if LEAK:\n    raise AssertionError(LEAK)")),
        score="full", status="graded", checks=["no_hidden_source"])
    # the judges' shared reference runs (expected values of hidden tests) sit beside the
    # workspaces, in a folder only the grader's uid can open
    add("reads_references", at_import("""
from pathlib import Path as _P
_refs = _P(__file__).resolve().parent.parent.parent / "references"
for _what, _do in [("list", lambda: list(_refs.iterdir())),
                   ("write", lambda: (_refs / "forged.pt").write_bytes(b"forged"))]:
    try:
        _do()
        print("REFERENCES", _what, "allowed")
    except Exception as exc:
        print("REFERENCES", _what, type(exc).__name__)
"""), score="full", status="graded")
    add("echoes_hidden", at_import(f"LEAK = {hidden_text!r}\nprint(LEAK)",
                                   in_function(FORWARD, "raise ValueError(LEAK)")),
        score="full-ch05.forward", status="graded", says="hidden test source removed",
        checks=["no_hidden_source"])
    # Patching what the tests use changes nothing: the tests run in the judge, which never
    # runs student code. The solution keeps its full marks, the stub its nothing.
    add("patch_allclose", at_import("torch.allclose = lambda *args, **kwargs: True"),
        score="full", status="graded")
    add("patch_pytest", at_import("""
import _pytest.reports as _r
_orig = _r.TestReport.from_item_and_call
def _always_pass(item, call):
    report = _orig(item, call)
    report.outcome, report.longrepr = "passed", None
    return report
_r.TestReport.from_item_and_call = staticmethod(_always_pass)
""", STUB), score=0, status="graded")
    add("forge_channel", at_import("""
import fcntl as _fcntl, json as _json, os as _os
_lines = []
for _name in ["test_hidden.py::test_forward_values_match_linear", "test_public.py::test_forward_shape"]:
    _id = "tests/ch05/" + _name
    _lines.append(_json.dumps({"type": "start", "nodeid": _id}))
    _lines.append(_json.dumps({"type": "test", "nodeid": _id, "outcome": "passed", "audit": []}))
for _fd in map(int, _os.listdir("/proc/self/fd")):
    try:
        if _fd > 2 and _fcntl.fcntl(_fd, _fcntl.F_GETFL) & _os.O_ACCMODE == _os.O_WRONLY:
            _os.write(_fd, ("\\n".join(_lines) + "\\n").encode())
    except OSError:
        pass
""", STUB), score=0, status="graded")
    add("dataloader_workers", at_import("""
from torch.utils.data import DataLoader as _DL, TensorDataset as _TD, get_worker_info as _wi
_seen = {w for _, w in _DL(_TD(torch.arange(64.0)), batch_size=8, num_workers=2,
                           collate_fn=lambda b: (b, _wi().id))}
print("WORKERS-OK", len(_seen), flush=True)
"""), score="full", status="graded", checks=["workers"])
    add("skips_itself", in_function(TWO_LAYER, "import pytest\npytest.skip('not today')"),
        score="full-ch05.two_layer", status="graded", says="Skipped: not today")
    add("background_process", at_import(f"""
import os as _os, subprocess as _sp, sys as _sys, time as _t
_sleeper = _sp.Popen(["sleep", "3007"], start_new_session=True)
print("BG-PID", _sleeper.pid, flush=True)
if _os.fork() == 0:
    _os.setsid()
    if _os.fork() == 0:
        print("BG-PID", _os.getpid(), flush=True)
        while True:
            try:
                open({tmp_marker + '-bg'!r}, "a").write("x")
            except OSError:
                pass
            _t.sleep(0.05)
    _os._exit(0)
"""), score="full", status="graded", checks=["no_survivors"])
    add("not_utf8_output", at_import("import sys\nsys.stdout.buffer.write(b'bad bytes: \\xff\\xfe\\xfa\\n')\n"
                                     "sys.stdout.flush()",
                                     in_function(TWO_LAYER, "raise ValueError('lone surrogate: \\udcff')")),
        score="full-ch05.two_layer", status="graded", says="lone surrogate")
    s.update(forgeries(token))
    return s


def forgeries(token: str) -> dict[str, tuple[str, Case]]:
    """Generic tricks to forge a verdict, two or more variants of each, on code whose honest
    score is known (the stub: 0; a forward returning zeros of the right shape: the public
    shape test only). Each must earn exactly that."""
    s: dict[str, tuple[str, Case]] = {}

    def add(student: str, text: str, score, **kw) -> None:
        s[student] = (text, Case(student, score=score, **{"status": "graded", **kw}))

    zeros_forward = STUB.replace('raise NotImplementedError("ch05.forward: LinearModel.forward")',
                                 "return _wrap(torch.zeros(x.shape[0], 1))", 1)
    assert zeros_forward != STUB
    shape_only = "same-as:honest_zeros"   # the honest twin: forward returns zeros, no trick
    add("honest_zeros", zeros_forward.replace("return _wrap(", "return (", 1), "any")
    # 1. pytest's reports
    add("forge_report_properties", at_import("""
import _pytest.reports as _r
for _cls in (_r.TestReport, _r.BaseReport):
    _cls.passed = property(lambda self: True)
    _cls.failed = property(lambda self: False)
""", STUB), 0)
    add("forge_report_init", at_import("""
import _pytest.reports as _r
_init = _r.TestReport.__init__
def _passing(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    self.outcome, self.longrepr = "passed", None
_r.TestReport.__init__ = _passing
""", STUB), 0)
    # 2. the grading plugin's result records
    add("forge_result_property", at_import("""
import grader.results as _g, grader.plugin as _p
_g.TestResult.outcome = property(lambda self: "passed", lambda self, value: None)
_p.TestResult.outcome = property(lambda self: "passed", lambda self, value: None)
""", STUB), 0)
    add("forge_result_init", at_import("""
import grader.results as _g
_init = _g.TestResult.__init__
def _passing(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    object.__setattr__(self, "outcome", "passed")
_g.TestResult.__init__ = _passing
""", STUB), 0)
    # 3. results appended or rewritten for the running test
    add("forge_append_results", in_function(STUB_FORWARD, """import gc as _gc
import grader.results as _g
for _obj in _gc.get_objects():
    if isinstance(_obj, _g.RunResults):
        for _name in ("test_forward_shape", "test_forward_values_match_linear"):
            _obj.tests.append(_g.TestResult(nodeid="tests/ch05/x.py::" + _name, name=_name,
                              task="ch05.forward", points=2, hidden=False, gpu=False,
                              outcome="passed", message=""))
""", STUB), 0)
    add("forge_rewrite_results", at_import("""
import gc as _gc, threading as _th, time as _t
def _rewrite():
    while True:
        for _obj in _gc.get_objects():
            if type(_obj).__name__ == "TestResult":
                try:
                    _obj.outcome, _obj.message = "passed", ""
                except Exception:
                    pass
        _t.sleep(0.01)
_th.Thread(target=_rewrite, daemon=True).start()
""", STUB), 0)
    # 4. the result channel taken over, then a quiet exit
    add("forge_channel_exit", in_function(STUB_FORWARD, """import json as _json, os as _os
_lines = []
for _name in ["test_hidden.py::test_forward_values_match_linear", "test_public.py::test_forward_shape"]:
    _lines.append(_json.dumps({"type": "start", "nodeid": "tests/ch05/" + _name}))
    _lines.append(_json.dumps({"type": "test", "nodeid": "tests/ch05/" + _name, "outcome": "passed"}))
_lines.append(_json.dumps({"type": "done", "exit_code": 0}))
for _fd in range(3, 1024):
    try:
        _os.write(_fd, ("\\n".join(_lines) + "\\n").encode())
    except OSError:
        pass
_os._exit(0)""", STUB), 0, status=None, says="os._exit()")
    # 5. names shadowed in the test modules' globals
    add("shadow_test_globals", at_import("""
import sys as _sys
for _name, _mod in list(_sys.modules.items()):
    if "test_" in _name or _name.startswith("tests"):
        for _attr in ("assert_close", "check_gradients"):
            if hasattr(_mod, _attr):
                setattr(_mod, _attr, lambda *a, **k: None)
""", STUB), 0)
    add("shadow_via_functions", at_import("""
import gc as _gc, types as _types
for _obj in _gc.get_objects():
    if isinstance(_obj, _types.FunctionType) and "test_" in getattr(_obj, "__name__", ""):
        _obj.__globals__["assert_close"] = lambda *a, **k: None
        _obj.__code__ = (lambda *a, **k: None).__code__
""", STUB), 0)
    # 6. a torch function mode entered at import
    add("function_mode_allclose", at_import("""
from torch.overrides import TorchFunctionMode as _Mode
class _Lie(_Mode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in (torch.allclose, torch.equal, torch.isclose):
            return True
        return func(*args, **(kwargs or {}))
_Lie().__enter__()
""", zeros_forward.replace("return _wrap(", "return (", 1)), shape_only)
    add("function_mode_zero_diff", at_import("""
from torch.overrides import TorchFunctionMode as _Mode
class _Lie(_Mode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in (torch.sub, torch.Tensor.sub, torch.Tensor.__sub__, torch.abs, torch.Tensor.abs):
            return torch.zeros_like(out)
        return out
_Lie().__enter__()
""", zeros_forward.replace("return _wrap(", "return (", 1)), shape_only)
    # 7. a tensor subclass whose comparisons lie
    add("lying_tensor_function", at_import("""
class _Liar(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func in (torch.allclose, torch.equal, torch.Tensor.__eq__, torch.isclose):
            return True
        return super().__torch_function__(func, types, args, kwargs)
def _wrap(t):
    return t.as_subclass(_Liar)
""", zeros_forward), shape_only)
    add("lying_tensor_methods", at_import("""
class _Liar(torch.Tensor):
    def __eq__(self, other):
        return True
    def __sub__(self, other):
        return torch.zeros(self.shape)
    def __abs__(self):
        return torch.zeros(self.shape)
    def allclose(self, *args, **kwargs):
        return True
    def tolist(self):
        return [[8.0]] * self.shape[0]
    def item(self):
        return 8.0
def _wrap(t):
    return t.as_subclass(_Liar)
""", zeros_forward), shape_only)
    # 8. builtins patched, and put back after each call
    add("builtins_restoring", at_import("""
import builtins as _b
_saved = {n: getattr(_b, n) for n in ("abs", "all", "any", "isinstance", "len", "float")}
def _lie():
    _b.abs, _b.all, _b.any = (lambda x: 0), (lambda *a: True), (lambda *a: True)
    _b.isinstance = lambda *a: True
def _restore():
    for _n, _f in _saved.items():
        setattr(_b, _n, _f)
_lie()
""", STUB.replace('raise NotImplementedError("ch05.forward: LinearModel.forward")',
                  "_restore()\n        _lie()\n        raise NotImplementedError('ch05.forward')", 1)), 0)
    add("builtins_import_hook", at_import("""
import builtins as _b
_real_import = _b.__import__
class _Anything:
    def __getattr__(self, name):
        return lambda *a, **k: True
def _import(name, *args, **kwargs):
    if name in ("grader.testing", "torch.testing", "numpy.testing"):
        return _Anything()
    return _real_import(name, *args, **kwargs)
_b.__import__ = _import
""", STUB), 0)
    # other students' work and the hidden tests, looked for from the student's process
    add("walks_frames", at_import("""
import gc as _gc, sys as _sys, codecs as _codecs
_found = []
_f = _sys._getframe(0)
while _f is not None:
    for _scope in (_f.f_locals, _f.f_globals):
        for _v in list(_scope.values()):
            if isinstance(_v, (str, bytes)) and ("good_late" in str(_v) or "assert_close(" in str(_v)):
                _found.append(str(_v)[:200])
    _f = _f.f_back
for _obj in _gc.get_objects():
    if isinstance(_obj, dict):
        for _v in list(_obj.values())[:50]:
            if isinstance(_v, str) and ("good_late" in _v or "hint=\\"the bias is missing" in _v):
                _found.append(_v[:200])
LEAK = _codecs.encode("\\n".join(_found), "rot13")
""", in_function(FORWARD, "if LEAK:\n    raise AssertionError(LEAK)")), "full")
    return s


def _zip(path: Path, members: list[tuple[str, bytes, int]]) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data, mode in members:
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.external_attr = mode << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)


def build_cohort(folder: Path, token: str) -> list[Case]:
    cases = []
    for student, (text, case) in sources(token).items():
        where = folder / student / ("exercises" if len(cases) % 2 else "")
        where.mkdir(parents=True, exist_ok=True)
        (where / FILENAME).write_text(text, encoding="utf-8")
        cases.append(case)

    # a chapter file of another chapter only: chapter 05 is missing
    (folder / "missing_file").mkdir()
    (folder / "missing_file" / "ch01_tensors.py").write_text("x = 1\n")
    cases.append(Case("missing_file", score=0, status="missing", says=f"{FILENAME} missing"))

    # archive members that try to leave the working folder, next to a good file
    _zip(folder / "zip_escape.zip", [
        (f"../../escaped-{token}.py", b"print('escaped')\n", 0o100644),
        (f"/tmp/hostile-{token}-absolute.py", b"print('absolute')\n", 0o100644),
        (f"exercises/{FILENAME}", SOLUTION.encode(), 0o100644),
    ])
    cases.append(Case("zip_escape", score="full", status="graded", checks=["no_escape"]))

    # links to the solution (would be a cheat) and to /etc/passwd
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        link = tarfile.TarInfo(f"exercises/{FILENAME}")
        link.type, link.linkname = tarfile.SYMTYPE, str(ROOT / "solutions" / FILENAME)
        tf.addfile(link)
        hard = tarfile.TarInfo(FILENAME)
        hard.type, hard.linkname = tarfile.LNKTYPE, "/etc/passwd"
        tf.addfile(hard)
    (folder / "tar_links.tar.gz").write_bytes(buf.getvalue())
    cases.append(Case("tar_links", score=0, status="unreadable", unreadable="link"))

    (folder / "folder_link" / "exercises").mkdir(parents=True)
    os.symlink(ROOT / "solutions" / FILENAME, folder / "folder_link" / "exercises" / FILENAME)
    cases.append(Case("folder_link", score=0, status="unreadable", unreadable="link"))

    # a zip bomb: the chapter file inflates to 300 MB
    with zipfile.ZipFile(folder / "zip_bomb.zip", "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open(f"exercises/{FILENAME}", "w", force_zip64=True) as f:
            block = b"\0" * (1 << 20)
            for _ in range(300):
                f.write(block)
    cases.append(Case("zip_bomb", score=0, status="unreadable", unreadable="larger than 1 MB"))

    # a tar.gz whose first member inflates past the unpacking cap
    with tarfile.open(folder / "tar_bomb.tar.gz", "w:gz", compresslevel=1) as tf:
        info = tarfile.TarInfo("junk.bin")
        info.size = 300 << 20
        tf.addfile(info, _Zeros(info.size))
        info = tarfile.TarInfo(FILENAME)
        info.size = len(SOLUTION.encode())
        tf.addfile(info, io.BytesIO(SOLUTION.encode()))
    cases.append(Case("tar_bomb", score=0, status="unreadable", unreadable="compression bomb"))

    (folder / "broken.zip").write_bytes(b"PK\x03\x04 this is not really a zip file" * 10)
    cases.append(Case("broken", score=0, status="unreadable", unreadable="cannot read"))

    # a non-UTF-8 student id and file name, with the good solution
    raw = os.fsencode(folder) + b"/d\xe9bora"
    os.makedirs(raw + b"/exercises")
    with open(raw + b"/exercises/" + FILENAME.encode(), "wb") as f:
        f.write(SOLUTION.encode())
    with open(raw + b"/exercises/notes\xff.txt", "wb") as f:
        f.write(b"\xff\xfe")
    cases.append(Case("d\udce9bora", score="full", status="graded"))
    return cases


class _Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = b"\0" * n
        self.left -= n
        return n
