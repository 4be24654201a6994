"""The memory limit where a GPU is in use: a watchdog on resident memory, not RLIMIT_AS.

On a CPU-only machine a grading child's memory is capped with RLIMIT_AS (address space).
CUDA cannot start under such a cap: the driver reserves tens of gigabytes of address space
for unified addressing, none of it host memory. So where the children use CUDA the grader
drops RLIMIT_AS and starts this watchdog instead, in the child, before any student code runs:

* it is forked as root (before the child drops privileges), into a process group of its
  own, so student code can neither kill it nor charge its CPU time to the submission, and
  it dies with the child (SIGKILL on the parent's death);
* every SAMPLE seconds it reads /proc/PID/status of each process of the child's group (and,
  with the full sandbox, of the slot's uid) and computes how much anonymous resident memory
  (RssAnon + VmSwap) the process holds beyond what the child held when the watchdog started
  (the warm grader's torch, shared with the child);
* a process over the limit (`--memory`, per process, as RLIMIT_AS would be) gets the whole
  group and uid killed with SIGKILL, after one line in the log; the grader then reports the
  usual "killed (SIGKILL), most likely for using too much memory".

No cgroup is needed, so it works in containers and on CI runners. GPU memory is not counted
(the driver maps it, it is not anonymous host memory); pinned host memory is. What it cannot
do: stop an allocation faster than one sample (a burst between samples can overshoot until
the next one), or account exactly for a process started afresh with exec (it is measured
against the same baseline, so it may use up to that baseline more before it is stopped).
"""
from __future__ import annotations

import os
import signal
import time

SAMPLE = 0.2   # seconds between samples


def anon_kib(pid: int | str) -> int | None:
    """Anonymous resident plus swapped memory of a process, in KiB (None if it is gone)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            text = f.read().decode("ascii", "replace")
    except OSError:
        return None
    total = 0
    for line in text.splitlines():
        if line.startswith(("RssAnon:", "VmSwap:")):
            total += int(line.split()[1])
    return total


def watched(pgid: int, uid: int | None, me: int) -> list[int]:
    """Live processes of the group `pgid`, or owned by `uid` (a slot's dedicated uid)."""
    from grader.accounting import job_processes
    return [pid for pid, fields in job_processes(pgid, uid) if pid != me and fields[0] != b"Z"]


def over_limit(pgid: int, uid: int | None, baseline_kib: int, limit_kib: int,
               me: int) -> tuple[int, int] | None:
    """(pid, KiB above the baseline) of the first process over the limit, else None."""
    for pid in watched(pgid, uid, me):
        used = anon_kib(pid)
        if used is not None and used - baseline_kib > limit_kib:
            return pid, used - baseline_kib
    return None


def start(memory_mb: int, uid: int | None) -> int:
    """Fork the watchdog for the calling process (the grading child, still privileged);
    returns its pid. `uid`: the slot's dedicated uid, or None without the full sandbox."""
    leader, pgid = os.getpid(), os.getpgid(0)
    baseline = anon_kib(leader) or 0
    pid = os.fork()
    if pid:
        return pid
    status = 0
    try:
        _detach(leader)
        watch(leader, pgid, uid, baseline, memory_mb * 1024)
    except BaseException:  # noqa: BLE001 - the watchdog never raises into pytest's process
        status = 1
    finally:
        os._exit(status)


def _detach(leader: int) -> None:
    """In the watchdog: its own process group, death with the child, nothing inherited."""
    from grader.process import close_fds_except
    from grader.sandbox import PR_SET_PDEATHSIG, _prctl

    os.setpgid(0, 0)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    try:
        signal.set_wakeup_fd(-1)
    except ValueError:
        pass
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != leader:
        os._exit(0)
    close_fds_except({2})   # the log: the one line it may write


def watch(leader: int, pgid: int, uid: int | None, baseline_kib: int, limit_kib: int) -> None:
    me = os.getpid()
    while os.getppid() == leader:
        time.sleep(SAMPLE)
        hit = over_limit(pgid, uid, baseline_kib, limit_kib, me)
        if hit is None:
            continue
        pid, used = hit
        _say(f"\n[grader: process {pid} of the submission holds {used // 1024} MB of memory, "
             f"more than the {limit_kib // 1024} MB allowed: stopped]\n")
        _kill_all(pgid, uid, me)
        return


def _say(text: str) -> None:
    try:
        os.write(2, text.encode())
    except OSError:
        pass


def _kill_all(pgid: int, uid: int | None, me: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for pid in watched(pgid, uid, me):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
