"""The processes of a job: find them, measure their CPU time, kill them, clean up after them.

Linux only (it reads /proc). With root each job slot has a uid of its own, so "the job's
processes" are exactly that uid's; without root they are the child's process group and the
orphans re-parented to the zygote.
"""
from __future__ import annotations

import os
import queue
import shutil
import signal
import stat
import threading
import time
from pathlib import Path
from typing import Collection

SHARED_TMP = ("/tmp", "/var/tmp", "/dev/shm")


def processes_of(uid: int) -> list[int]:
    """Live (non-zombie) processes whose real, effective or saved uid is `uid`."""
    pids = []
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        text = _read_proc(f"/proc/{name}/status", 2048)
        if text is None:
            continue
        state = uids = None
        for line in text.decode("ascii", "replace").splitlines():
            if line.startswith("State:"):
                state = line.split()[1]
            elif line.startswith("Uid:"):
                uids = [int(x) for x in line.split()[1:4]]
                break
        if uids and uid in uids and state != "Z":
            pids.append(int(name))
    return pids


def _read_proc(path: str, size: int) -> bytes | None:
    """The start of a /proc file (one read, without a buffered file object: this runs for
    every process on the machine after each job), or None if it cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, size)
    except OSError:
        return None
    finally:
        os.close(fd)


def kill_uid(uid: int, rounds: int = 200) -> bool:
    """SIGKILL every process of `uid` until none is left (a fork bomb races; it loses).
    Only as root with a dedicated uid; returns whether none remain."""
    if os.geteuid() != 0 or uid == 0:
        return True
    for _ in range(rounds):
        pids = processes_of(uid)
        if not pids:
            return True
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.002)
    return not processes_of(uid)


def remove_stray_files(uid: int, private: Collection[str] = ()) -> list[str]:
    """Delete what `uid` created in the world-writable temp folders; returns the paths.
    `private`: those its processes saw only a tmpfs of their own in (not walked: on a busy
    machine /tmp alone may hold thousands of entries, and this runs after every job)."""
    if os.geteuid() != 0 or uid == 0:
        return []
    removed = []

    def walk(folder: str, depth: int) -> None:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return
        for e in entries:
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            if st.st_uid == uid:
                try:
                    if stat.S_ISDIR(st.st_mode):
                        shutil.rmtree(e.path, ignore_errors=True)
                    else:
                        os.unlink(e.path)
                    removed.append(e.path)
                except OSError:
                    pass
            elif stat.S_ISDIR(st.st_mode) and st.st_mode & 0o002 and depth < 3:
                walk(e.path, depth + 1)

    for folder in SHARED_TMP:
        if folder not in private and os.path.isdir(folder):
            walk(folder, 0)
    return removed


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def job_processes(pgid: int, uid: int | None = None):
    """(pid, /proc/pid/stat fields after the name) of every process in process group `pgid`
    or owned by `uid` (a slot's dedicated uid: code that left the group still counts)."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fields = _read_proc(f"/proc/{name}/stat", 4096).rsplit(b")", 1)[1].split()
            owner = os.stat(f"/proc/{name}").st_uid if uid is not None else None
        except (OSError, AttributeError, IndexError):
            continue
        if int(fields[2]) == pgid or (uid is not None and owner == uid):
            yield int(name), fields


def cpu_seconds(pgid: int, uid: int | None = None) -> float:
    """CPU time (user + system) of the job's live processes (`job_processes`), plus what the
    group's leader has collected from children it waited for."""
    ticks = 0
    for pid, fields in job_processes(pgid, uid):
        ticks += int(fields[11]) + int(fields[12])          # utime, stime
        if pid == pgid:
            ticks += int(fields[13]) + int(fields[14])      # cutime, cstime
    return ticks / _TICKS


def process_cpu(pid: int) -> float:
    """CPU time of one process and of the children it has waited for (one file read)."""
    data = _read_proc(f"/proc/{pid}/stat", 4096)
    try:
        fields = data.rsplit(b")", 1)[1].split()
    except (AttributeError, IndexError):
        return 0.0
    return sum(int(x) for x in fields[11:15]) / _TICKS


def kill_orphans(tracked: set[int], *, scan: bool = False) -> None:
    """Kill the grader's children it did not start: processes of student code re-parented
    to the grader (a subreaper) after their parent died. The safety net without root.

    This process's children are read from /proc/self/task/*/children, one short file per
    thread, unless `scan` or the kernel lacks them: then every /proc entry is read (about 2 ms
    here, after every child's exit). The kernel may leave out a child re-parented while the
    file is read; the next call finds it, and the last call (`scan`) reads every entry."""
    children = None if scan else own_children()
    if children is None:
        me = str(os.getpid())
        children = []
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) in tracked:
                continue
            try:
                with open(f"/proc/{name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == me and fields[0] != "Z":
                children.append(int(name))
    for pid in children:
        if pid not in tracked:
            try:
                os.kill(pid, signal.SIGKILL)   # a zombie already reaped is not signalled: no harm
            except ProcessLookupError:
                pass


_CHILDREN_FILES = os.path.exists(f"/proc/self/task/{os.getpid()}/children")


def own_children() -> list[int] | None:
    """The pids of this process's children (those of every thread), or None where the
    kernel does not list them (CONFIG_PROC_CHILDREN)."""
    if not _CHILDREN_FILES:
        return None
    pids: list[int] = []
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return None
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/children", "rb") as f:
                pids += [int(x) for x in f.read().split()]
        except OSError:
            continue   # a thread that ended meanwhile
    return pids


class Remover:
    """Folders deleted in order by a thread of their own. Deleting a job's working folder
    waits for the kernel to take down what the job's mount namespace mounted in it (about
    3 ms a job here, waiting, not computing), and the grader's loop must not wait with it:
    it answers the judges and starts the next jobs meanwhile. `close` returns once every
    folder given is gone (or could not be deleted: as `shutil.rmtree(ignore_errors=True)`)."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Path | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def remove(self, path: Path) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="grader-remover", daemon=True)
            self._thread.start()
        self._queue.put(path)

    def _run(self) -> None:
        while (path := self._queue.get()) is not None:
            shutil.rmtree(path, ignore_errors=True)

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
