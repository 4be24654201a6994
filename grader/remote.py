"""Student code behind a wall: the probe side and the judge side of a chapter test.

A chapter test runs in the *judge*, a process that never runs student code: the test
computes its expected values there, compares, and writes the verdict and the message.
The student's code runs in the *student* process, which serves the judge's requests:

    judge                                   student process
    impl.LinearModel()          ---->       creates the object, keeps it, sends back a handle
    model(x)                    ---->       calls it, sends back the output tensor (a copy)
    probes.losses(impl, ...)    ---->       runs a probe (tests/chNN/probes.py), sends plain data

Requests (judge to student) are pickled by the judge; objects of the test modules cannot
be sent (the hidden tests' code never enters the student's process). Replies (student to
judge) are read by a restricted unpickler and a size cap (`_load_reply`), so all they can
carry is plain data: tensors, numbers, strings, lists, tuples, dicts, dtypes and devices. Any
other object stays in the student's process and the judge gets a `Remote` handle to it.
Exceptions come back as the student's exception type (a builtin base where there is one),
message and line.

`grader grade` puts the two sides in two processes joined by a socket
(`SocketConnection`, `serve`). `grader check` and the project's own suite run both sides
in one process (`LocalConnection`) through the same encoding, with the student's random
state and grad mode kept apart from the judge's, so a test behaves the same in both.
"""
from __future__ import annotations

import builtins
import importlib.util
import io
import os
import pickle
import random
import signal
import socket
import struct
import sys
import traceback
from collections import OrderedDict
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import numpy as np
import torch

MAX_REPLY = 64 << 20          # bytes of one reply from the student's process
MAX_ITEMS = 200_000           # values in one reply (list items, dict entries, ...)
MAX_DEPTH = 40
MESSAGE_CHARS = 2000          # characters of an exception message

REF, TENSOR, NDARRAY, NPSCALAR, SET = "\x00ref", "\x00tensor", "\x00ndarray", "\x00npscalar", "\x00set"
_HEADER = struct.Struct("!Q")


class ImplImportError(Exception):
    """The chapter module under test is missing or fails to import."""


class StudentProcessGone(Exception):
    """The student's process ended, or stopped answering, in the middle of a request."""


class StudentNeverStarted(StudentProcessGone):
    """The student's process ended before it was ready, before any student code ran (its
    sandbox could not be set up): the grader's failure, not the student's."""


READY = b"ready"   # the student's process's first frame: sandboxed, about to serve


class CpuTimeLimit(BaseException):
    """Raised in the student's code when a test's CPU time runs out (ITIMER_PROF)."""


class RemoteError(Exception):
    """An exception raised by the student's code, rebuilt in the judge.

    The judge sees a subclass that also derives from the builtin exception the student's
    one derives from, so `pytest.raises(ValueError)` works; `where` is the student's line."""
    remote_type = "Exception"
    where = ""


class ReplyError(Exception):
    """What the student's process sent back cannot be read as plain data."""


_ERROR_CLASSES: dict[tuple[str, str], type] = {}


def _error_class(name: str, base: str) -> type:
    key = (name, base)
    if key not in _ERROR_CLASSES:
        builtin = getattr(builtins, base, Exception)
        if not (isinstance(builtin, type) and issubclass(builtin, Exception)):
            builtin = Exception
        bases = (RemoteError,) if builtin is Exception else (RemoteError, builtin)
        _ERROR_CLASSES[key] = type(name if name.isidentifier() else "Error", bases, {"remote_type": name})
    return _ERROR_CLASSES[key]


# --------------------------------------------------------------------------- the student's side

def _builtin_base(exc: BaseException) -> str:
    for cls in type(exc).__mro__:
        if cls.__module__ == "builtins" and issubclass(cls, Exception):
            return cls.__name__
    return "Exception"


def _safe_str(exc: BaseException) -> str:
    try:
        text = str(exc)
    except BaseException:  # noqa: BLE001 - a hostile __str__
        text = ""
    return text[:MESSAGE_CHARS]


def where_in(tb, files: set[str]) -> str:
    """' (at ch05_x.py:12 in forward)' for the innermost frame in one of `files`."""
    found = ""
    while tb is not None:
        try:
            filename = tb.tb_frame.f_code.co_filename
            if filename in files:
                found = f" (at {Path(filename).name}:{tb.tb_lineno} in {tb.tb_frame.f_code.co_name})"
        except Exception:  # noqa: BLE001
            pass
        tb = tb.tb_next
    return found


class Server:
    """Serves the judge's requests in the student's process. `load_module(chapter)` imports
    the student's chapter module (raising ImplImportError), `load_probes(chapter)` the
    chapter's probes module."""

    def __init__(self, load_module: Callable[[str], ModuleType],
                 load_probes: Callable[[str], ModuleType], *, local: bool = False) -> None:
        self.load_module, self.load_probes = load_module, load_probes
        self.local = local
        self.objects: dict[int, Any] = {}
        self.next_id = 1
        self.cpu_limit = 0.0
        self.rng: tuple | None = None        # local mode: the student's random state
        self.student_files: set[str] = set()
        self.pid = os.getpid()
        # Made now, before any student code: the answer when the student's code has broken
        # what this process needs to answer at all (builtins or torch replaced).
        self.broken = _dump_reply({"error": {
            "kind": "exception", "type": "BrokenProcess", "base": "Exception",
            "message": "your code broke the process it runs in (Python's builtins or torch's functions "
                       "replaced?), so it could not answer", "where": ""}})

    # -- the loop body
    def handle(self, data: bytes) -> bytes:
        try:
            return self._handle(data)
        finally:
            self._not_a_fork()

    def _handle(self, data: bytes) -> bytes:
        try:
            request = _Unpickler(io.BytesIO(data), self).load()
            result = self._dispatch(request)
            self._not_a_fork()
            reply = {"ok": self._encode(result, [0], 0)}
        except CpuTimeLimit:
            reply = {"error": {"kind": "timeout", "type": "Timeout", "base": "Exception",
                               "message": f"the test used more than {self.cpu_limit:g} s of CPU time",
                               "where": ""}}
        except ImplImportError as exc:
            reply = {"error": {"kind": "import", "type": "ImplImportError", "base": "Exception",
                               "message": _safe_str(exc), "where": ""}}
        except BaseException as exc:  # noqa: BLE001 - everything the student's code raises
            if self.local and (isinstance(exc, KeyboardInterrupt) or _pytest_failure(exc)):
                raise  # one process: the plugin's CPU alarm (pytest.fail) and Ctrl-C pass through
            self._not_a_fork()
            reply = {"error": self._describe(exc)}
        try:
            return _dump_reply(reply)
        except BaseException as exc:  # noqa: BLE001 - a value that cannot be sent
            return _dump_reply({"error": {"kind": "exception", "type": "ReplyError", "base": "Exception",
                                          "message": f"the result could not be sent back: {_safe_str(exc)}",
                                          "where": ""}})

    def _not_a_fork(self) -> None:
        """A process forked by the student's code (os.fork) that returns here must not
        answer the judge: only the process that received the request does."""
        if os.getpid() != self.pid:
            os._exit(0)

    def _describe(self, exc: BaseException) -> dict:
        try:
            name = type(exc).__name__
        except BaseException:  # noqa: BLE001
            name = "Exception"
        kind = "notimpl" if isinstance(exc, NotImplementedError) else "exception"
        return {"kind": kind, "type": str(name)[:100], "base": _builtin_base(exc),
                "message": _safe_str(exc), "where": where_in(exc.__traceback__, self.student_files)}

    # -- requests
    def _dispatch(self, request: dict) -> Any:
        op = request["op"]
        if op == "batch":  # a test's `begin`, then its first request: the last one's result
            result = None
            for one in request["ops"]:
                if one["op"] == "batch":
                    raise ValueError("a batch inside a batch")
                result = self._dispatch(one)
            return result
        if op == "begin":
            self.objects = {k: v for k, v in self.objects.items() if k < 0}
            self.cpu_limit = float(request.get("cpu", 0.0))
            if self.local:
                self.rng = None  # the next request starts from seed 0 (`_student_state`)
            else:
                seed(int(request.get("seed", 0)))
            if not self.local and hasattr(signal, "ITIMER_PROF"):
                # armed for this test, or disarmed (0): the earlier test's `end` is not sent
                signal.signal(signal.SIGPROF, _cpu_expired)
                signal.setitimer(signal.ITIMER_PROF, max(self.cpu_limit, 0.0))
            return None
        with _student_state(self):
            return self._student_op(op, request)

    def _student_op(self, op: str, r: dict) -> Any:
        if op == "module":
            module = self.load_module(r["chapter"])
            self.student_files.add(getattr(module, "__file__", "") or "")
            return self._pin(module, -1 - int(r["chapter"]))
        if op == "probe":
            module = self.load_module(r["chapter"])
            self.student_files.add(getattr(module, "__file__", "") or "")
            probes = self.load_probes(r["chapter"])
            return getattr(probes, r["name"])(module, *r["args"], **r["kwargs"])
        if op == "seed":
            seed(int(r["seed"]))
            return None
        target = r.get("target")
        if op == "getattr":
            return getattr(target, r["name"])
        if op == "setattr":
            setattr(target, r["name"], r["value"])
            return None
        if op == "call":
            return target(*r["args"], **r["kwargs"])
        if op == "method":
            return getattr(target, r["name"])(*r["args"], **r["kwargs"])
        if op == "getitem":
            return target[r["key"]]
        if op == "setitem":
            target[r["key"]] = r["value"]
            return None
        if op == "len":
            return len(target)
        if op == "list":
            items = []
            for item in target:
                items.append(item)
                if len(items) > MAX_ITEMS:
                    raise ValueError(f"more than {MAX_ITEMS} items")
            return items
        if op == "bool":
            return bool(target)
        if op == "isinstance":
            return isinstance(target, r["cls"])
        if op == "type":
            return [f"{c.__module__}.{c.__qualname__}" for c in type(target).__mro__]
        if op == "repr":
            return repr(target)[:MESSAGE_CHARS]
        raise ValueError(f"unknown request {op!r}")

    def _pin(self, value: Any, ident: int) -> tuple:
        self.objects[ident] = value
        return (REF, ident, type(value).__name__)

    def _ref(self, value: Any) -> tuple:
        ident = self.next_id
        self.next_id += 1
        self.objects[ident] = value
        try:
            name = str(type(value).__name__)[:100]
        except BaseException:  # noqa: BLE001
            name = "object"
        return (REF, ident, name)

    def _encode(self, value: Any, count: list[int], depth: int) -> Any:
        count[0] += 1
        if count[0] > MAX_ITEMS or depth > MAX_DEPTH:
            raise ValueError("the result is too large or too deeply nested to send back")
        kind = type(value)
        if value is None or kind in (bool, int, float, str, bytes, complex, torch.dtype, torch.device):
            return value
        if isinstance(value, ModuleType):
            return self._ref(value)
        if isinstance(value, torch.Tensor):
            plain = value.detach()
            if type(plain) is not torch.Tensor:
                plain = torch.Tensor._make_subclass(torch.Tensor, plain)
            grad = None
            if value.is_leaf and value.grad is not None:
                grad = self._encode(value.grad, count, depth + 1)
            return (TENSOR, plain.clone() if plain.is_meta else plain,
                    bool(value.requires_grad), grad, isinstance(value, torch.nn.Parameter))
        if isinstance(value, np.ndarray):
            if value.dtype.kind in "biufc":
                return (NDARRAY, torch.from_numpy(np.ascontiguousarray(value).copy()))
            return self._ref(value)
        if isinstance(value, np.generic) and value.dtype.kind in "biufc":
            return (NPSCALAR, value.dtype.str, value.item())
        if kind is torch.Size:
            return value
        if kind in (list, tuple) or (isinstance(value, tuple) and hasattr(value, "_fields")) \
                or (isinstance(value, tuple) and type(value).__module__ == "torch.return_types"):
            items = [self._encode(v, count, depth + 1) for v in value]
            return items if kind is list else tuple(items)
        if kind in (set, frozenset):
            return (SET, [self._encode(v, count, depth + 1) for v in value])
        if kind in (dict, OrderedDict):
            out = OrderedDict() if kind is OrderedDict else {}
            for k, v in value.items():
                out[self._encode(k, count, depth + 1)] = self._encode(v, count, depth + 1)
            return out
        if isinstance(value, bool):
            return bool(value)
        if isinstance(value, (int, float, str)) and not isinstance(value, torch.Tensor):
            # a subclass (numpy, or one written to lie in comparisons): its plain value
            for base in (int, float, str):
                if isinstance(value, base):
                    return base(value)
        return self._ref(value)


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, server: Server) -> None:
        super().__init__(file)
        self.server = server

    def persistent_load(self, pid):
        return self.server.objects[int(pid)]


def _pytest_failure(exc: BaseException) -> bool:
    """pytest.fail's exception (whose __module__ pytest sets to 'builtins')."""
    return type(exc).__name__ == "Failed" and any(c.__name__ == "OutcomeException" for c in type(exc).__mro__)


_serving = [False]   # a request is being handled (set by `serve`)


def _cpu_expired(signum, frame) -> None:
    """A test's CPU time is up: the request in progress stops. Between requests (the
    student's own threads, still running after the test) the timer only stops; the next
    test's `begin` arms it again."""
    signal.setitimer(signal.ITIMER_PROF, 0)
    if _serving[0]:
        raise CpuTimeLimit()


def seed(value: int) -> None:
    """The same start for every test: Python's, numpy's and torch's generators."""
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)


class _student_state:
    """Around one request: grad mode on (the judge's `no_grad` is not the student's) and,
    in one process, the student's own random state swapped in and out."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def __enter__(self) -> None:
        self.grad = torch.is_grad_enabled()
        torch.set_grad_enabled(True)
        if self.server.local:
            self.judge_rng = _rng_state()
            if self.server.rng is not None:
                _set_rng_state(self.server.rng)
            else:
                seed(0)

    def __exit__(self, *exc) -> None:
        torch.set_grad_enabled(self.grad)
        if self.server.local:
            self.server.rng = _rng_state()
            _set_rng_state(self.judge_rng)


def _rng_state() -> tuple:
    return random.getstate(), np.random.get_state(), torch.get_rng_state()


def _set_rng_state(state: tuple) -> None:
    random.setstate(state[0])
    np.random.set_state(state[1])
    torch.set_rng_state(state[2])


# --------------------------------------------------------------------------- module loading

def import_chapter(folder: Path, filename: str, module_name: str) -> ModuleType:
    """Import a student's chapter file by path, under its module name (not as __main__),
    turning every failure into an ImplImportError with a one-line reason."""
    path = folder / filename
    if not path.is_file():
        present = sorted(p.name for p in folder.glob("ch*.py")) if folder.is_dir() else []
        hint = f" (found: {', '.join(present)})" if present else ""
        raise ImplImportError(f"{filename} not found in {folder}{hint}")
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(module_name, None)
        raise ImplImportError(f"{filename} has a syntax error at line {exc.lineno}: {exc.msg}") from None
    except CpuTimeLimit:
        sys.modules.pop(module_name, None)
        raise ImplImportError(f"importing {filename} failed: timeout, it used up the test's CPU time "
                              "(is there an endless loop, or training, at the top level of the file?)") from None
    except BaseException as exc:  # noqa: BLE001 - any crash at import is the student's
        sys.modules.pop(module_name, None)
        where = where_in(exc.__traceback__, {str(path)})
        raise ImplImportError(f"importing {filename} failed: {type(exc).__name__}: {_safe_str(exc)}"
                              f"{where}") from None
    return module


class ModuleLoader:
    """Imports each chapter module once and remembers a failure, like pytest's fixtures did."""

    def __init__(self, folder: Path, probes_root: Path) -> None:
        self.folder, self.probes_root = folder, probes_root
        self.cache: dict[str, Any] = {}

    def module(self, chapter: str) -> ModuleType:
        from grader.syllabus import CHAPTERS
        key = f"impl{chapter}"
        if key not in self.cache:
            info = CHAPTERS[chapter]
            try:
                self.cache[key] = import_chapter(self.folder, info.filename, info.module)
            except ImplImportError as exc:
                self.cache[key] = exc
        value = self.cache[key]
        if isinstance(value, ImplImportError):
            raise value
        return value

    def probes(self, chapter: str) -> ModuleType:
        key = f"probes{chapter}"
        if key not in self.cache:
            path = self.probes_root / f"ch{chapter}" / "probes.py"
            spec = importlib.util.spec_from_file_location(f"_probes_ch{chapter}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            self.cache[key] = module
        return self.cache[key]


# --------------------------------------------------------------------------- replies

# A reply is a pickle of plain data (what `Server._encode` made) in which tensors, dtypes,
# devices and sizes travel as persistent ids: a dense tensor as its dtype, shape, device and
# raw bytes. Reading one needs no class at all beyond `complex` and `OrderedDict`, so a
# student's process that writes its own bytes on the line can send data, never code. A
# tensor this cannot carry (sparse, quantized, ...) sends the whole reply in torch.save's
# format instead, read back with `torch.load(weights_only=True)`. Both are several times
# cheaper than torch.save's zip archive for the small replies a test makes by the hundred.

_DTYPES = {str(d).removeprefix("torch."): d for d in (
    torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.complex64, torch.complex128,
    torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool)}
_ALLOWED_GLOBALS = {("builtins", "complex"): complex, ("collections", "OrderedDict"): OrderedDict}
_ALLOWED_CLASSES = frozenset(_ALLOWED_GLOBALS.values())  # pickled by reference (an OrderedDict's class)
_TORCH_SAVE = b"PK\x03\x04"   # torch.save's format is a zip archive


class _Plain(Exception):
    """A value the plain reply format cannot carry."""


class _ReplyPickler(pickle.Pickler):
    def persistent_id(self, obj):
        kind = type(obj)
        if kind is torch.Tensor:
            return _tensor_id(obj)
        if kind is torch.dtype:
            if str(obj).removeprefix("torch.") not in _DTYPES:
                raise _Plain(str(obj))
            return ("dtype", str(obj).removeprefix("torch."))
        if kind is torch.device:
            return ("device", str(obj))
        if kind is torch.Size:
            return ("size", tuple(int(n) for n in obj))
        if kind not in _PLAIN_TYPES and not (kind is type and obj in _ALLOWED_CLASSES):
            raise _Plain(kind.__name__)
        return None


_PLAIN_TYPES = frozenset((type(None), bool, int, float, str, bytes, complex, list, tuple, dict, OrderedDict))


def _tensor_id(t: torch.Tensor) -> tuple:
    name = str(t.dtype).removeprefix("torch.")
    if t.layout != torch.strided or name not in _DTYPES or t.is_quantized or t.is_nested:
        raise _Plain(f"a {t.layout} {t.dtype} tensor")
    shape = tuple(int(n) for n in t.shape)
    if t.is_meta:
        return ("tensor", name, shape, str(t.device), None)
    flat = torch.empty(t.numel(), dtype=t.dtype)  # a fresh copy: stride 1, whatever t's strides
    flat.copy_(t.detach().resolve_conj().resolve_neg().reshape(-1))
    data = flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""
    return ("tensor", name, shape, str(t.device), data)


def _dump_reply(reply: Any) -> bytes:
    buffer = io.BytesIO()
    try:
        _ReplyPickler(buffer, protocol=5).dump(reply)
    except _Plain:
        buffer = io.BytesIO()
        torch.save(reply, buffer)
    return buffer.getvalue()


class _ReplyUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except (KeyError, TypeError):
            raise pickle.UnpicklingError(f"{module}.{name} is not plain data") from None

    def persistent_load(self, pid):
        if type(pid) is not tuple or not pid:
            raise pickle.UnpicklingError("an unknown reference")
        kind = pid[0]
        if kind == "dtype" and len(pid) == 2 and pid[1] in _DTYPES:
            return _DTYPES[pid[1]]
        if kind == "device" and len(pid) == 2 and type(pid[1]) is str:
            return torch.device(pid[1])
        if kind == "size" and len(pid) == 2 and type(pid[1]) is tuple:
            return torch.Size([int(n) for n in pid[1]])
        if kind == "tensor" and len(pid) == 5:
            return _tensor_from(*pid[1:])
        raise pickle.UnpicklingError("an unknown reference")


def _tensor_from(name: Any, shape: Any, device: Any, data: Any) -> torch.Tensor:
    if name not in _DTYPES or type(shape) is not tuple or type(device) is not str \
            or not all(type(n) is int and n >= 0 for n in shape):
        raise pickle.UnpicklingError("a malformed tensor")
    dtype = _DTYPES[name]
    if data is None:
        return torch.empty(shape, dtype=dtype, device="meta")
    numel = 1
    for n in shape:
        numel *= n
    if type(data) is not bytes or len(data) != numel * dtype.itemsize:
        raise pickle.UnpicklingError("a tensor whose data does not match its shape")
    if numel == 0:
        t = torch.empty(shape, dtype=dtype)
    else:
        t = torch.frombuffer(bytearray(data), dtype=torch.uint8).view(dtype).reshape(shape)
    return t if device == "cpu" else t.to(torch.device(device))


def _load_reply(data: bytes) -> Any:
    if data[:4] == _TORCH_SAVE:
        return torch.load(io.BytesIO(data), weights_only=True)
    return _ReplyUnpickler(io.BytesIO(data)).load()


# --------------------------------------------------------------------------- transport

def _send_frame(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(_HEADER.pack(len(payload)) + payload)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _recv_frame(sock: socket.socket, limit: int) -> bytes:
    (size,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size))
    if size > limit:
        raise ReplyError(f"the reply is {size} bytes, more than the {limit} allowed")
    return _recv_exact(sock, size)


def serve(sock: socket.socket, server: Server) -> int:
    """The student process's loop: one request, one reply, until the judge hangs up."""
    try:
        _send_frame(sock, READY)
    except OSError:
        return 0
    while True:
        try:
            data = _recv_frame(sock, 1 << 40)
        except (EOFError, OSError):
            return 0
        _serving[0] = True
        try:
            reply = server.handle(data)
        except BaseException:  # noqa: BLE001 - even the error path failed
            server._not_a_fork()
            reply = server.broken
        finally:
            _serving[0] = False
        for stream in (sys.stdout, sys.stderr):  # what the code printed, before the answer
            try:
                stream.flush()
            except BaseException:  # noqa: BLE001 - a stream the student's code replaced or closed
                pass
        try:
            _send_frame(sock, reply)
        except OSError:
            return 0


class Connection:
    """The judge's end. `exchange(bytes) -> bytes` is the transport.

    A test's `begin` waits for the test's first request and travels with it (`batch`); the
    `end` of a test is left out, as the next `begin` does all it did. So a test costs the
    student's process no round trip of its own (a third of ch05's requests were these),
    and a test that never reaches the student's code none at all."""

    pending: dict | None = None          # a `begin` not sent yet
    modules: dict                         # chapter -> the Remote handle of its module

    def exchange(self, payload: bytes) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    def begin(self, cpu: float, seed: int) -> None:
        self.pending = {"op": "begin", "cpu": cpu, "seed": seed}

    def module(self, chapter: str) -> "Remote":
        """The chapter module's handle, asked for once: it lives as long as the process
        (a failed import is asked for again, and raises again, in every test)."""
        cache = self.__dict__.setdefault("modules", {})
        if chapter not in cache:
            cache[chapter] = self.request("module", chapter=chapter)
        return cache[chapter]

    def request(self, op: str, **fields: Any) -> Any:
        fields["op"] = op
        if self.pending is not None:
            fields = {"op": "batch", "ops": [self.pending, fields]}
            self.pending = None
        buffer = io.BytesIO()
        _Pickler(buffer).dump(fields)
        data = self.exchange(buffer.getvalue())
        try:
            reply = _load_reply(data)
        except Exception as exc:  # noqa: BLE001 - anything unreadable is the student's doing
            raise ReplyError(f"what your code returned could not be read back: {type(exc).__name__}") from None
        if not isinstance(reply, dict) or not ({"ok", "error"} & set(reply)):
            raise ReplyError("what your code returned could not be read back")
        if "error" in reply:
            raise _rebuild_error(reply["error"])
        return _decode(reply["ok"], self)


class LocalConnection(Connection):
    """Both sides in one process (`grader check`, the project's suite)."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def exchange(self, payload: bytes) -> bytes:
        return self.server.handle(payload)


class SocketConnection(Connection):
    """The judge's end of the socket to the student's process (`grader grade`)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.broken = ""
        self.ready = False

    def exchange(self, payload: bytes) -> bytes:
        if self.broken:
            raise StudentProcessGone(self.broken)
        if not self.ready:
            try:
                greeting = _recv_frame(self.sock, len(READY))
            except (EOFError, OSError, ReplyError):
                greeting = b""
            if greeting != READY:
                self.broken = "the student's process did not start"
                raise StudentNeverStarted(self.broken)
            self.ready = True
        done = False
        try:
            _send_frame(self.sock, payload)
            reply = _recv_frame(self.sock, MAX_REPLY)
            done = True
            return reply
        except (EOFError, OSError) as exc:
            raise StudentProcessGone(str(exc) or "the connection closed") from None
        finally:
            if not done:
                # Interrupted half-way (a timeout, an oversized reply): the next reply on the
                # line would answer this request, so the line is not used again.
                self.broken = self.broken or "an earlier request was not answered in full"


def _rebuild_error(error: Any) -> BaseException:
    if not isinstance(error, dict):
        return ReplyError("what your code returned could not be read back")
    kind = str(error.get("kind", "exception"))
    message = str(error.get("message", ""))[:MESSAGE_CHARS]
    if kind == "import":
        return ImplImportError(message)
    if kind == "timeout":
        import pytest
        return pytest.fail.Exception(f"Timeout: {message}", pytrace=False)
    name = str(error.get("type", "Exception"))[:100]
    base = "NotImplementedError" if kind == "notimpl" else str(error.get("base", "Exception"))
    exc = _error_class(name, base)(message)
    exc.where = str(error.get("where", ""))[:300]
    return exc


def _decode(value: Any, conn: Connection) -> Any:
    kind = type(value)
    if kind is tuple and value and isinstance(value[0], str) and value[0].startswith("\x00"):
        tag = value[0]
        if tag == REF and len(value) == 3:
            return Remote(conn, int(value[1]), str(value[2]))
        if tag == TENSOR and len(value) == 5 and isinstance(value[1], torch.Tensor):
            _, t, requires_grad, grad, is_param = value
            t = torch.Tensor._make_subclass(torch.Tensor, t) if type(t) is not torch.Tensor else t
            if is_param:
                t = torch.nn.Parameter(t, requires_grad=bool(requires_grad) and _grad_dtype(t))
            elif requires_grad and _grad_dtype(t):
                t.requires_grad_(True)
            if grad is not None and t.requires_grad:
                grad = _decode(grad, conn)
                if isinstance(grad, torch.Tensor) and grad.shape == t.shape:
                    t.grad = grad.detach().to(t.dtype)
            return t
        if tag == NDARRAY and len(value) == 2 and isinstance(value[1], torch.Tensor):
            return value[1].numpy()
        if tag == NPSCALAR and len(value) == 3:
            return np.dtype(str(value[1])).type(value[2])
        if tag == SET and len(value) == 2:
            return {_decode(v, conn) for v in value[1]}
    if kind is list:
        return [_decode(v, conn) for v in value]
    if kind is tuple:
        return tuple(_decode(v, conn) for v in value)
    if kind in (dict, OrderedDict):
        out = kind()
        for k, v in value.items():
            out[_decode(k, conn)] = _decode(v, conn)
        return out
    return value


def _grad_dtype(t: torch.Tensor) -> bool:
    return t.is_floating_point() or t.is_complex()


_FORBIDDEN_PREFIXES = ("tests.", "_pytest", "pytest", "pluggy", "grader.guard", "grader.plugin",
                       "test_", "conftest")


class _Pickler(pickle.Pickler):
    """The judge's side: Remote handles go by id; the tests' own code is never sent."""

    def __init__(self, file) -> None:
        super().__init__(file, protocol=5)

    def persistent_id(self, obj):
        if type(obj) is Remote:
            return str(object.__getattribute__(obj, "_id"))
        return None

    def reducer_override(self, obj):
        if type(obj) is torch.Tensor:
            plain = _plain_tensor(obj)
            if plain is not None:
                return plain
        for candidate in (obj, type(obj)):
            module = getattr(candidate, "__module__", None) or ""
            if isinstance(module, str) and (module.startswith(_FORBIDDEN_PREFIXES) or module == "__main__"):
                raise TypeError(f"{getattr(candidate, '__qualname__', candidate)!r} is defined in "
                                f"{module} and cannot be sent to the student's process: "
                                "write code that must run beside the student's in the chapter's probes.py")
        return NotImplemented


def _tensor_from_bytes(data: bytes, name: str, shape: tuple, stride: tuple, requires_grad: bool) -> torch.Tensor:
    storage = torch.UntypedStorage.from_buffer(data, dtype=torch.uint8) if data else torch.UntypedStorage(0)
    t = torch.empty(0, dtype=_DTYPES[name]).set_(storage, 0, shape, stride)
    return t.requires_grad_(True) if requires_grad else t


def _plain_tensor(t: torch.Tensor):
    """A reduction of a plain CPU tensor that is exactly its storage (most tensors a test
    sends), as its bytes: what pickle would make of it through torch.save, an eighth of the
    time (a request with a small tensor: 60 us instead of 480). None for anything else (a
    view into a larger storage, other strides, devices, layouts, attributes, hooks), which
    pickles as before. Either way the student's process gets a tensor of its own, sharing
    no storage with another tensor of the request (pickle does not keep that either), and a
    tensor that requires grad arrives as a leaf that does."""
    name = str(t.dtype).removeprefix("torch.")
    if (t.layout != torch.strided or t.device.type != "cpu" or name not in _DTYPES
            or t.is_quantized or t.is_conj() or t.is_neg() or t.__dict__ or t._backward_hooks
            or t.storage_offset() != 0 or not t.is_contiguous()):
        return None
    storage = t.untyped_storage()
    nbytes = t.numel() * t.element_size()
    if storage.nbytes() != nbytes:
        return None
    data = t.detach().reshape(-1).view(torch.uint8).numpy().tobytes() if nbytes else b""
    return _tensor_from_bytes, (data, name, tuple(t.shape), tuple(t.stride()), bool(t.requires_grad))


# --------------------------------------------------------------------------- the judge's handles

class Remote:
    """A handle on an object that lives in the student's process. Attribute access, calls,
    indexing, `len` and iteration are requests; what comes back is plain data or another
    handle. Tensors come back as copies: change the student's objects through their methods
    (`model.load_state_dict(...)`), never by writing into a copy."""

    __slots__ = ("_conn", "_id", "_type", "__weakref__")

    def __init__(self, conn: Connection, ident: int, typename: str) -> None:
        object.__setattr__(self, "_conn", conn)
        object.__setattr__(self, "_id", ident)
        object.__setattr__(self, "_type", typename)

    def _do(self, op: str, **fields: Any) -> Any:
        return object.__getattribute__(self, "_conn").request(op, target=self, **fields)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self._do("getattr", name=name)

    def __setattr__(self, name: str, value: Any) -> None:
        self._do("setattr", name=name, value=value)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._do("call", args=args, kwargs=kwargs)

    def __getitem__(self, key: Any) -> Any:
        return self._do("getitem", key=key)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._do("setitem", key=key, value=value)

    def __len__(self) -> int:
        n = self._do("len")
        if type(n) is not int or n < 0:
            raise TypeError("len() of the student's object is not a non-negative int")
        return n

    def __iter__(self):
        items = self._do("list")
        return iter(items if isinstance(items, list) else [])

    def __bool__(self) -> bool:
        return bool(self._do("bool"))

    def __repr__(self) -> str:
        return f"<{object.__getattribute__(self, '_type')} from the student's code>"

    def __reduce__(self):
        raise TypeError("a Remote handle is sent by reference only")


def type_name(value: Any) -> str:
    """The class name of a value or of the object behind a Remote handle."""
    if type(value) is Remote:
        return object.__getattribute__(value, "_type")
    return type(value).__name__


def is_instance(value: Any, cls: type | tuple[type, ...]) -> bool:
    """isinstance, also for the object behind a Remote handle (checked where it lives)."""
    if type(value) is Remote:
        return bool(value._do("isinstance", cls=cls))
    return isinstance(value, cls)


def remote_mro(value: Any) -> list[str]:
    """'module.Qualname' of each class in the object's MRO."""
    if type(value) is Remote:
        return list(value._do("type"))
    return [f"{c.__module__}.{c.__qualname__}" for c in type(value).__mro__]


class Probes:
    """`probes.name(*args)` runs `name(impl, *args)` from the chapter's probes.py in the
    student's process and returns its plain-data result."""

    def __init__(self, conn: Connection, chapter: str) -> None:
        self._conn, self._chapter = conn, chapter

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._conn.request("probe", chapter=self._chapter, name=name, args=args, kwargs=kwargs)
        call.__name__ = name
        return call


class Student:
    """The judge's view of the student's process for one test: the chapter module, the
    chapter's probes, and the student's random seed."""

    def __init__(self, conn: Connection, chapter: str) -> None:
        self.conn, self.chapter = conn, chapter
        self.probes = Probes(conn, chapter)

    @property
    def module(self) -> Remote:
        return self.conn.module(self.chapter)

    def seed(self, value: int) -> None:
        """Seed the student's generators (random, numpy, torch), not the judge's."""
        self.conn.request("seed", seed=value)

    def begin(self, cpu: float = 0.0) -> None:
        """A fresh start for the test: sent with its first request (`Connection`)."""
        self.conn.begin(cpu=cpu, seed=0)
