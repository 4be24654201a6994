"""Sandbox: the working folder of a submission and the limits applied before its code runs.

Per job slot the grader uses one unprivileged numeric uid (61000 and up, no /etc/passwd
entry needed, reserved with a lock file so concurrent graders never share one). Per
submission it builds a fresh working folder:

    WORK/<n>/            root:<gid> 0750   (other slots' uids cannot enter)
        student/         root:<gid> 0750   the student's chapter files, read-only to them
        tests/chNN/      root:<gid> 0750   the instructor's tests for the chapter being run;
                                           deleted by the grader once pytest has collected them
        home/            <uid>      0700   HOME, the current directory and TMPDIR

In the forked child, still as root: new network and mount namespaces where the kernel
allows (no network at all; the instructor's tests/, solutions/, examples/, .git, the
submissions and the output folder are covered by empty read-only mounts), resource
limits (address space, processes, file size, open files, no core dumps), a scrubbed
environment; then `setgroups([])`, `setgid`, `setuid` to the slot's uid, no new
privileges, and death with the grader. Only after that does pytest import anything of
the student's. Afterwards every process of the slot's uid is killed and the files it
left in world-writable places (/tmp, /var/tmp, /dev/shm) are removed.

Without root none of the uid-based protections exist: limits still apply, the process
group is killed, and network access is refused by the grading plugin only.
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
import os
import pwd
import resource
import shutil
import signal
import sys
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from grader import accounting
from grader.paths import ROOT
from grader.process import fork_child

UID_BASE = int(os.environ.get("PRACTICE_GRADER_UID_BASE", "61000"))
UID_SPAN = 2000
LOCK_DIR = Path(tempfile.gettempdir()) / "pytorch-practice-grader-uids"

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
CLONE_NEWIPC = 0x08000000
# Shared writable places a job gets a private, size-limited copy of (in its mount namespace):
# nothing written there is seen by another job or outlives the job.
PRIVATE_SHARED = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REC, MS_PRIVATE = 0x4000, 0x40000
PR_SET_PDEATHSIG, PR_SET_NAME, PR_SET_NO_NEW_PRIVS, PR_SET_CHILD_SUBREAPER = 1, 15, 38, 36


WALL_FACTOR = 4.0      # wall-clock backstops: this many times the CPU limit (plus slack)
WALL_SLACK = 30.0


@dataclass(frozen=True)
class Limits:
    """Per-submission limits. Time is CPU time of the submission's processes, which machine
    load does not change; wall-clock time only backs it up, several times larger, for code
    that waits instead of computing (a sleep, a blocked read)."""
    test_cpu: float = 60.0         # CPU seconds per test (an alarm in the child, enforced from outside too)
    cpu: float = 300.0             # CPU seconds per submission, all its chapters
    wall: float = 0.0              # wall-clock backstop per submission; 0: WALL_FACTOR x cpu
    memory_mb: int = 2048          # address space beyond what the warm parent already maps
    nproc: int = 128               # processes and threads of the slot's uid
    fsize_mb: int = 64             # largest file the code may write
    disk_mb: int = 256             # HOME, /tmp, /var/tmp, /dev/shm, /run/lock: each a tmpfs this large
    nofile: int = 1024             # open file descriptors
    gpu: bool = False              # CUDA in use: memory_mb caps resident memory (grader.memwatch),
                                   # not address space, which CUDA reserves by the gigabyte

    @property
    def wall_backstop(self) -> float:
        return self.wall or WALL_FACTOR * self.cpu

    @property
    def test_wall(self) -> float:
        """Wall-clock backstop per test."""
        return WALL_FACTOR * self.test_cpu + WALL_SLACK

    @property
    def test_cpu_hard(self) -> float:
        """Where the parent kills a test whose code switched off the child's own alarm."""
        return 1.25 * self.test_cpu + 2.0

    def scaled(self, factor: float) -> "Limits":
        """The CPU limits times `factor` (a slower machine gets proportionally more)."""
        return replace(self, test_cpu=round(self.test_cpu * factor, 1), cpu=round(self.cpu * factor, 1))

    def describe(self) -> dict:
        return {**asdict(self), "wall_backstop": self.wall_backstop, "test_wall": self.test_wall}


@dataclass
class Isolation:
    """What this machine lets the grader do; probed once before grading starts."""
    root: bool = False
    network_namespace: bool = False
    mount_namespace: bool = False
    ipc_namespace: bool = False
    drop_privileges: bool = False
    # folders other users cannot reach (e.g. python under /root/.pyenv): (blocked ancestor,
    # [needed paths below it]); in the mount namespace the ancestor is covered by an empty
    # tmpfs and only the needed paths are bound back in
    reopen: list[tuple[str, list[str]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if not self.root:
            return ("limited: not running as root, so student code runs as this user "
                    "(limits apply, but no separate uid, namespaces or file protection)")
        if not self.drop_privileges:
            return "WEAK: student code runs as root (" + "; ".join(self.notes) + ")"
        parts = ["separate uid per job"]
        parts.append("no network (namespace)" if self.network_namespace else "network blocked by the plugin only")
        parts.append("instructor folders hidden, private size-limited HOME, /dev/shm and /tmp "
                     "(/tmp only where the grader's own files are not in it) "
                     "(mount namespace)" if self.mount_namespace
                     else "instructor folders protected by permissions only")
        parts.append("private IPC objects (namespace)" if self.ipc_namespace
                     else "IPC objects removed after each job only")
        return ", ".join(parts)


_libc = None


def libc():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _unshare(flags: int) -> None:
    if libc().unshare(ctypes.c_int(flags)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare: {os.strerror(err)}")


def _mount(source: str | None, target: str | None, fstype: str | None, flags: int,
           data: str | None) -> None:
    enc = (lambda s: None if s is None else os.fsencode(s))
    if libc().mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {target}: {os.strerror(err)}")


def _prctl(option: int, value: int) -> None:
    libc().prctl(ctypes.c_int(option), ctypes.c_ulong(value), ctypes.c_ulong(0),
                 ctypes.c_ulong(0), ctypes.c_ulong(0))


def set_thread_name(name: str) -> None:
    """The calling thread's name as /proc shows it (`comm`, 15 bytes), where Linux has one."""
    buffer = ctypes.create_string_buffer(name.encode()[:15])
    try:
        _prctl(PR_SET_NAME, ctypes.addressof(buffer))
    except (OSError, AttributeError):
        pass


def become_subreaper() -> None:
    """Orphans of student processes are re-parented to the grader, which reaps them."""
    try:
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


def die_with_parent() -> None:
    """This process is killed when its parent exits (and exits now if it already has)."""
    parent = os.getppid()
    try:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass
    if os.getppid() != parent:
        os._exit(1)


def blocked_ancestor(path: Path) -> Path | None:
    """The first folder on the way to `path` that other users cannot traverse."""
    path = Path(path).resolve()
    for folder in list(reversed(path.parents))[1:] + [path]:
        try:
            if not os.stat(folder).st_mode & 0o001:
                return folder
        except OSError:
            return None
    return None


def needed_paths() -> list[Path]:
    """What a child must be able to read: the interpreter, the virtualenv, the grader."""
    paths = [Path(sys.base_prefix), Path(sys.prefix), ROOT / "grader", ROOT / "datasets"]
    return sorted({p.resolve() for p in paths if p.exists()})


def probe_isolation() -> Isolation:
    """Fork once and try what the sandbox will do, so failures are known up front."""
    iso = Isolation(root=os.geteuid() == 0)
    if not iso.root or not sys.platform.startswith("linux"):
        return iso
    with tempfile.TemporaryDirectory() as scratch:
        for flag, attr in ((CLONE_NEWNET, "network_namespace"), (CLONE_NEWNS, "mount_namespace"),
                           (CLONE_NEWIPC, "ipc_namespace")):
            pid = fork_child(lambda flag=flag: _try_namespace(flag, scratch))
            _, status = os.waitpid(pid, 0)
            ok = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
            setattr(iso, attr, ok)
            if not ok:
                iso.notes.append(f"{attr.replace('_', ' ')} unavailable here")
    blocked: dict[str, list[str]] = {}
    for path in needed_paths():
        top = blocked_ancestor(path)
        if top is not None:
            blocked.setdefault(str(top), []).append(str(path))
    iso.reopen = sorted(blocked.items())
    iso.drop_privileges = iso.mount_namespace or not blocked
    if not iso.drop_privileges:
        iso.notes.append(f"{', '.join(blocked)} is not readable by other users and there is no "
                         "mount namespace to work around it")
    return iso


def _try_namespace(flag: int, scratch: str) -> int:
    """In a throw-away child: 0 when the namespace (and, for mounts, a tmpfs) works."""
    try:
        _unshare(flag)
        if flag == CLONE_NEWNS:
            _mount(None, "/", None, MS_REC | MS_PRIVATE, None)
            _mount("tmpfs", scratch, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k,mode=0755")
    except OSError:
        return 1
    return 0


# --------------------------------------------------------------------------- uids

class UidPool:
    """Unprivileged uids reserved for this grader run, two per job slot (`grader.scheduler`)."""

    def __init__(self) -> None:
        self.uids: list[int] = []
        self._locks: list[int] = []

    def acquire(self, count: int) -> list[int]:
        if os.geteuid() != 0:
            self.uids = [os.getuid()] * count
            return self.uids
        LOCK_DIR.mkdir(mode=0o700, exist_ok=True)
        for uid in range(UID_BASE, UID_BASE + UID_SPAN):
            if len(self.uids) == count:
                break
            try:
                pwd.getpwuid(uid)
                continue  # a real account: never borrow it
            except KeyError:
                pass
            fd = os.open(LOCK_DIR / f"{uid}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue  # another grader on this machine uses it
            self._locks.append(fd)
            self.uids.append(uid)
            accounting.kill_uid(uid)  # leftovers of an interrupted earlier run
            accounting.remove_stray_files(uid)
        if len(self.uids) < count:
            raise RuntimeError(f"could not reserve {count} unused uids from {UID_BASE}")
        return self.uids

    def release(self) -> None:
        for fd in self._locks:
            os.close(fd)
        self._locks.clear()


# --------------------------------------------------------------------------- work root

WORK_PREFIX = "grader-work-"


def work_base() -> Path:
    """Where working folders live: outside /tmp as root, because each job gets a private
    /tmp (PRIVATE_SHARED) that would hide them; the temp folder otherwise."""
    chosen = os.environ.get("PRACTICE_GRADER_WORK")
    if chosen:
        return Path(chosen)
    if os.geteuid() == 0:
        base = Path("/var/lib/pytorch-practice-grader")
        base.mkdir(mode=0o755, parents=True, exist_ok=True)
        os.chmod(base, 0o755)
        return base
    return Path(tempfile.gettempdir())


class WorkRoot:
    """The folder holding this run's working folders, locked while the run lives so a
    later run can tell its own leftovers (after a kill -9) from a concurrent run's."""

    def __init__(self) -> None:
        clean_stale_work_roots()
        self.path = Path(tempfile.mkdtemp(prefix=WORK_PREFIX, dir=work_base()))
        os.chmod(self.path, 0o755)
        # Locked before it has the name another grader's `clean_stale_work_roots` looks for:
        # a lock file found unlocked is a dead run's, never one about to be locked.
        self._lock = os.open(self.path / ".lock-new", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        os.rename(self.path / ".lock-new", self.path / ".lock")

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        os.close(self._lock)


def clean_stale_work_roots() -> None:
    for folder in work_base().glob(WORK_PREFIX + "*"):
        try:
            fd = os.open(folder / ".lock", os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # a running grader holds it
        finally:
            os.close(fd)
        shutil.rmtree(folder, ignore_errors=True)


# --------------------------------------------------------------------------- workspace

class Workspace:
    """The fresh working folder of one submission (see the module docstring)."""

    def __init__(self, root: Path, uid: int, gid: int) -> None:
        self.path = root
        self.uid, self.gid = uid, gid
        self.student = root / "student"
        self.tests = root / "tests"
        self.home = root / "home"
        self.tmp = self.home / "tmp"
        self._privileged = os.geteuid() == 0

    def _own(self, path: Path, mode: int, *, student_owned: bool = False) -> None:
        if self._privileged:
            os.chown(path, self.uid if student_owned else 0, self.gid)
        os.chmod(path, mode)

    def create(self, files: dict[str, bytes]) -> "Workspace":
        if self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir()
        self._own(self.path, 0o750)
        for folder in (self.student, self.tests):
            folder.mkdir()
            self._own(folder, 0o750)
        for folder in (self.home, self.tmp):
            folder.mkdir()
            self._own(folder, 0o700, student_owned=True)
        for name, data in files.items():
            target = self.student / name
            target.write_bytes(data)
            self._own(target, 0o640)
        return self

    def install_tests(self, source: Path, only: list[str] | None = None) -> Path:
        """Copy one chapter's tests (every file but caches, or the files named in `only`)
        into tests/<chapter>/."""
        target = self.tests / source.name
        if target.exists():
            shutil.rmtree(target)
        if only is None:
            shutil.copytree(source, target, symlinks=False,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))
        else:
            target.mkdir()
            for name in only:
                shutil.copyfile(source / name, target / name)
        package = source.parent / "__init__.py"  # mirror `tests` being a package, if it is
        if package.is_file() and not (self.tests / "__init__.py").exists():
            shutil.copyfile(package, self.tests / "__init__.py")
            self._own(self.tests / "__init__.py", 0o640)
        for dirpath, dirnames, filenames in os.walk(target):
            self._own(Path(dirpath), 0o750)
            for name in filenames:
                self._own(Path(dirpath) / name, 0o640)
        return target

    def remove_test_files(self) -> None:
        """Called once pytest has collected: the test modules (`test_*.py`) are deleted, so
        nothing can read their text any more. Package `__init__.py` files and helpers stay:
        pytest imports packages lazily, and tests may import helpers inside functions."""
        for dirpath, dirnames, filenames in os.walk(self.tests):
            for name in filenames:
                if name.startswith("test_") and name.endswith(".py"):
                    try:
                        os.unlink(Path(dirpath) / name)
                    except OSError:
                        pass

    def destroy(self, remover: accounting.Remover | None = None) -> None:
        """Delete the folder; with `remover`, by its thread, once only the grader can enter
        the folder (the slot's uid may serve the next job meanwhile)."""
        if remover is None:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        try:
            os.chmod(self.path, 0o700)
        except OSError:
            pass
        remover.remove(self.path)


# --------------------------------------------------------------------------- in the child

def vm_size() -> int:
    """Bytes of address space this process maps now."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def enter(ws: Workspace, limits: Limits, isolation: Isolation, hide: list[Path],
          env: dict[str, str], parent: int) -> None:
    """Runs in the forked child before pytest starts: namespaces, limits, environment,
    then the switch to the slot's uid. Raises if the sandbox cannot be entered."""
    if limits.gpu:  # before anything else, while still privileged: see grader.memwatch
        from grader import memwatch
        memwatch.start(limits.memory_mb, ws.uid if isolation.root and isolation.drop_privileges else None)
    if isolation.root:
        flags = (CLONE_NEWNET if isolation.network_namespace else 0) | \
                (CLONE_NEWNS if isolation.mount_namespace else 0) | \
                (CLONE_NEWIPC if isolation.ipc_namespace else 0)
        if flags:
            _unshare(flags)
        if isolation.mount_namespace:
            # decided before any mount, from the view the grader has (`remove_stray_files`)
            private = private_folders(ws, Path(env.get("PRACTICE_DATASETS", "/")))
            _mount(None, "/", None, MS_REC | MS_PRIVATE, None)
            _reopen(ws, isolation.reopen)
            for path in hide:
                try:
                    _mount("tmpfs", str(path), "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                           "size=4k,mode=0755")
                except OSError:
                    pass  # permissions still protect it
            _private_tmpfs(ws, limits, private)
    _set_limits(limits, isolation.root)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a too-large write fails with EFBIG instead
    os.environ.clear()
    os.environ.update(env)
    tempfile.tempdir = None  # re-read TMPDIR
    os.umask(0o077)
    if isolation.root and isolation.drop_privileges:
        os.setgroups([])
        os.setgid(ws.gid)
        os.setuid(ws.uid)
        if os.getuid() != ws.uid or os.geteuid() != ws.uid:  # pragma: no cover - defensive
            raise OSError(errno.EPERM, "could not drop privileges")
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # after setuid, which clears it
    if os.getppid() != parent:  # the grader died before the line above took effect
        os._exit(1)
    os.chdir(ws.home)
    sys.dont_write_bytecode = True


def private_folders(ws: Workspace, datasets: Path) -> list[str]:
    """The machine's shared writable folders (PRIVATE_SHARED) that a job's mount namespace
    covers with a tmpfs of its own: all but those holding what the child needs (the grader,
    its Python, the data sets, the working folder: a checkout under /tmp, say), which
    covering would hide. The uid's files in the others never reach the machine's.

    What decides is the folder the working folders are made in, not which one: worked out
    once per grading run (about 1 ms of path lookups), by the grader for its clean-up and
    by the zygote for the children it forks, which inherit the answer."""
    return list(_private_folders(str(ws.path.parent), str(datasets)))


@functools.lru_cache(maxsize=8)
def _private_folders(work_root: str, datasets: str) -> tuple[str, ...]:
    needed = [Path(p).resolve() for p in (work_root, *needed_paths(), datasets) if str(p) != "/"]
    return tuple(folder for folder in PRIVATE_SHARED
                 if os.path.isdir(folder) and not os.path.islink(folder)
                 and not any(p.is_relative_to(folder) for p in needed))


def _private_tmpfs(ws: Workspace, limits: Limits, private: list[str]) -> None:
    """HOME and the `private` shared folders become empty, size-limited tmpfs mounts
    private to this job: a disk quota, and no files shared with other jobs. What the job
    leaves in the others is removed after it (`remove_stray_files`)."""
    size = f"size={limits.disk_mb}m"
    _mount("tmpfs", str(ws.home), "tmpfs", MS_NOSUID | MS_NODEV, f"{size},mode=0700,uid={ws.uid},gid={ws.gid}")
    ws.tmp.mkdir(mode=0o700)
    os.chown(ws.tmp, ws.uid, ws.gid)
    for folder in private:
        _mount("tmpfs", folder, "tmpfs", MS_NOSUID | MS_NODEV, f"{size},mode=1777")


def _reopen(ws: Workspace, reopen: list[tuple[str, list[str]]]) -> None:
    """Cover each blocked ancestor with an empty tmpfs and bind only the needed paths back."""
    MS_BIND = 0x1000
    for i, (top, paths) in enumerate(reopen):
        staged = []
        for j, path in enumerate(paths):
            stage = ws.path / f".stage-{i}-{j}"
            stage.mkdir(exist_ok=True)
            _mount(path, str(stage), None, MS_BIND | MS_REC, None)
            staged.append((stage, path))
        _mount("tmpfs", top, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=0755")
        for stage, path in staged:
            os.makedirs(path, mode=0o755, exist_ok=True)
            _mount(str(stage), path, None, MS_BIND | MS_REC, None)
            libc().umount2(os.fsencode(str(stage)), ctypes.c_int(2))  # MNT_DETACH


def _set_limits(limits: Limits, root: bool) -> None:
    def cap(which: int, value: int) -> None:
        soft, hard = resource.getrlimit(which)
        if not root and hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(which, (value, value))

    if not limits.gpu:  # with a GPU, grader.memwatch enforces memory_mb instead
        cap(resource.RLIMIT_AS, vm_size() + limits.memory_mb * (1 << 20))
    cpu = int(limits.cpu * 1.25) + 10   # the kernel's own backstop per process (SIGXCPU, then SIGKILL)
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    cap(resource.RLIMIT_FSIZE, limits.fsize_mb * (1 << 20))
    cap(resource.RLIMIT_NOFILE, limits.nofile)
    cap(resource.RLIMIT_CORE, 0)
    if root:
        cap(resource.RLIMIT_NPROC, limits.nproc)
    else:  # shared with every process of this user: leave room for what already runs
        cap(resource.RLIMIT_NPROC, _count_own_processes() + limits.nproc)


def _count_own_processes() -> int:
    uid = os.getuid()
    n = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                n += len(os.listdir(f"/proc/{name}/task")) if os.stat(f"/proc/{name}").st_uid == uid else 0
            except OSError:
                pass
    return n


def child_env(ws: Workspace, datasets: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(ws.home),
        "TMPDIR": str(ws.tmp),
        "USER": "student", "LOGNAME": "student",
        "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        "PRACTICE_DATASETS": str(datasets),
        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
    }
    for name in ("PRACTICE_THREADS", "CUDA_VISIBLE_DEVICES"):
        if name in os.environ:
            env[name] = os.environ[name]
    env.update(extra or {})
    return env
