"""`--require-gpu`: is CUDA usable where the tests will run? Asked before grading anything.

A runner whose GPU set-up is broken would otherwise grade "successfully" on the CPU: the
`gpu`-marked tests are skipped and count for no one. So with `--require-gpu` the grader
first starts CUDA in a process made exactly like the ones that will run the tests, and
stops with one line when that fails:

* `grader grade`: a child forked from the zygote (the warm parent of every grading child),
  inside the same sandbox and under the same limits (`probe_sandboxed`);
* `grader check`: a child forked from the warm checking process (`probe_forked`), or a fresh
  interpreter where the check runs its tests in one (`probe_subprocess`).

The parent never touches CUDA itself: a process that has started CUDA cannot fork children
that use it, which is also why the question is asked in a child at all.
"""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

PROBE_TIMEOUT = 180.0   # seconds: a first CUDA start-up compiles and loads kernels


@dataclass
class Report:
    ok: bool
    error: str = ""          # one line: why CUDA is not usable
    device: str = ""         # the GPU's name
    torch: str = ""          # torch's version
    cuda_build: str = ""     # the CUDA version torch was built for ("" for a CPU-only build)

    def describe(self) -> str:
        """One line for the log and the job summary."""
        if not self.ok:
            return f"no usable GPU: {self.error}"
        return f"cuda: {self.device} (torch {self.torch}, built for CUDA {self.cuda_build})"

    @classmethod
    def from_json(cls, data: bytes, fallback: str) -> "Report":
        try:
            fields = json.loads(data.decode("utf-8"))
            return cls(**{k: fields[k] for k in ("ok", "error", "device", "torch", "cuda_build")})
        except (ValueError, KeyError, TypeError):
            return cls(False, fallback)


def cuda_report() -> Report:
    """Start CUDA in this process and compute on the GPU; says why not in one line."""
    import torch

    report = Report(False, torch=torch.__version__, cuda_build=torch.version.cuda or "")
    if not report.cuda_build:
        report.error = (f"torch {torch.__version__} is a CPU-only build: install a CUDA build of "
                        "PyTorch on this machine (see the README: picking the torch build)")
        return report
    if not torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        report.error = ("torch.cuda.is_available() is False in a grading process: no NVIDIA GPU "
                        f"or driver here, or a driver too old for CUDA {report.cuda_build}"
                        + (f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""))
        return report
    try:
        x = torch.arange(1024, dtype=torch.float32, device="cuda")
        total = float((x * 2).sum().item())
        torch.cuda.synchronize()
        if total != 1023.0 * 1024.0:
            raise RuntimeError(f"a sum on the GPU came out as {total}")
        report.device = torch.cuda.get_device_name(0)
    except Exception as exc:  # noqa: BLE001 - any failure means the same: no usable GPU
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        report.error = f"CUDA failed to start in a grading process: {type(exc).__name__}: {first}"
        return report
    report.ok = True
    return report


def _write_report(fd: int) -> int:
    """A probe child's body: the report, as one JSON message on `fd`."""
    data = json.dumps(asdict(cuda_report())).encode()
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.close(fd)
    return 0


def _read_report(read_fd: int, timeout: float) -> tuple[bytes, bool]:
    """Everything the probe writes, until it closes the pipe or the time is up."""
    deadline = time.monotonic() + timeout
    data = bytearray()
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([read_fd], [], [], left)[0]:
                return bytes(data), True
            chunk = os.read(read_fd, 1 << 16)
            if not chunk:
                return bytes(data), False
            data += chunk
    finally:
        os.close(read_fd)


def _conclude(data: bytes, timed_out: bool, timeout: float) -> Report:
    if timed_out:
        return Report(False, f"starting CUDA in a grading process took longer than {timeout:g} s")
    return Report.from_json(data, "the process that tried CUDA died before it could answer "
                                  "(a driver crash, or the memory limit)")


# --------------------------------------------------------------------------- grader check

def probe_forked(timeout: float = PROBE_TIMEOUT) -> Report:
    """From this (warm) process, as `grader check` forks its test child."""
    from grader.process import fork_child, kill_group

    read_fd, write_fd = os.pipe()
    pid = fork_child(lambda: _write_report(write_fd), keep={write_fd})
    os.close(write_fd)
    try:
        data, timed_out = _read_report(read_fd, timeout)
    finally:
        kill_group(pid)
        os.waitpid(pid, 0)
    return _conclude(data, timed_out, timeout)


def probe_subprocess(timeout: float = PROBE_TIMEOUT) -> Report:
    """In a fresh interpreter, as `grader check --no-fork` runs its tests."""
    code = ("import json, dataclasses; from grader.gpu import cuda_report; "
            "print(json.dumps(dataclasses.asdict(cuda_report())))")
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    try:
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=timeout,
                             env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return _conclude(b"", True, timeout)
    lines = run.stdout.strip().splitlines()
    return _conclude(lines[-1] if lines else b"", False, timeout)


# --------------------------------------------------------------------------- grader grade

def probe_sandboxed(zygote, ws, limits, isolation, hide: list[Path], datasets: Path,
                    tests_root: Path, timeout: float = PROBE_TIMEOUT) -> Report:
    """From the zygote, in the sandbox a grading child enters (same limits, same uid), as
    `grader grade` will run the tests. `ws` is a created Workspace for the probe."""
    from grader import accounting, child
    from grader.process import kill_group

    plan = child.plan_to_dict([], ws, limits, isolation, hide, datasets, tests_root, frozenset())
    read_fd, write_fd = os.pipe()
    try:
        pid = zygote.fork("cuda-probe", {"plan": plan}, [write_fd])
    except OSError:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    try:
        data, timed_out = _read_report(read_fd, timeout)
    finally:
        kill_group(pid)
        accounting.kill_uid(ws.uid)
    return _conclude(data, timed_out, timeout)


def probe_in_child(message: dict, write_fd: int, parent: int) -> int:
    """The zygote's probe child: enter the sandbox of `message["plan"]`, then report."""
    from grader import child, sandbox

    plan = child.plan_from_dict(message["plan"], write_fd, -1, parent)
    ws = plan.workspace
    sandbox.enter(ws, plan.limits, plan.isolation, plan.hide, sandbox.child_env(ws, plan.datasets),
                  plan.parent)
    return _write_report(write_fd)
