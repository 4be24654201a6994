"""Submissions: find them in a folder and read their chapter files safely.

A submission is a folder, a `.zip` or a `.tar.gz` (`.tgz`, `.tar`) named by the student's
id. Inside, chapter files sit under `exercises/` or at the top, possibly below one
wrapping folder (`alice/exercises/...`, as "compress this folder" makes). Only files
named exactly like a chapter module (`ch05_linear_regression.py`) are taken; nothing is
ever extracted to disk by the archive libraries: members are read into memory, capped,
and written by the grader under names it chooses. So `../` paths, absolute paths, links
and devices cannot place anything anywhere, and a zip bomb costs at most the cap.

A chapter notebook of `grader nbgrader` (`ch05.ipynb`) stands for its chapter file, so
nbgrader's `submitted/<student>/<assignment>/ch05.ipynb` layout is graded as it is: the
grader reads the notebook's solution cells into the released module
(`grader.nbgrader.graded_module`) and grades that like any chapter file. Where a
submission holds both, the chapter file in the better place wins, the `.py` on a tie.
"""
from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import re
import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from grader.redact import printable
from grader.suspicious import scan_files
from grader.syllabus import CHAPTERS, chapter_of_module

FILE_CAP = 1 << 20              # a chapter file larger than 1 MB is not source code
NOTEBOOK_CAP = 64 << 20         # notebooks carry outputs (plots): a larger one is not a chapter's
MEMBER_LIMIT = 5000             # archives with more entries are refused
EXPANDED_LIMIT = 256 << 20      # bytes a .tar.* may expand to while it is scanned
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar", ".zip")
CHAPTER_FILE_RE = re.compile(r"^ch\d\d_\w+\.py$")
NOTEBOOK_RE = re.compile(r"^ch(\d\d)\.ipynb$")
SAFE_ID_RE = re.compile(r"[^\w.@+-]")
RESERVED_IDS = {"grades.csv", "report.html"}   # files of the output folder


class Unreadable(Exception):
    """The submission cannot be read at all; the message is the one-line reason."""


@dataclass
class Submission:
    student: str                      # safe id: a folder name in OUT and a row in grades.csv
    source: Path                      # the folder or archive it came from
    files: dict[str, bytes] = field(default_factory=dict)   # chapter filename -> content
    notes: list[str] = field(default_factory=list)          # skipped entries, odd names, ...
    error: str = ""                   # why the submission could not be read ("" if it could)
    review: list[str] = field(default_factory=list)         # lines flagged for a person's review
    _hashes: dict[str, str] | None = field(default=None, repr=False, compare=False)

    @property
    def chapters(self) -> list[str]:
        return sorted(c.number for name in self.files if (c := chapter_of_module(name)))

    def file_hashes(self) -> dict[str, str]:
        """filename -> sha256 of its content, computed once per file."""
        if self._hashes is None or set(self._hashes) != set(self.files):
            self._hashes = {name: hashlib.sha256(data).hexdigest() for name, data in sorted(self.files.items())}
        return self._hashes


def safe_id(name: str) -> str:
    """A student id usable as a folder name, a CSV cell and an HTML text: letters, digits,
    `._@+-`; anything else becomes `_`, and a short hash keeps altered ids distinct."""
    clean = SAFE_ID_RE.sub("_", printable(name)).strip("._") or "student"
    if clean[0] in "=+-@":
        clean = "_" + clean
    clean = clean[:80]
    if clean != name:
        digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:6]
        clean = f"{clean}-{digest}"
    return clean


def student_name(path: Path) -> str | None:
    """The raw student id of a submission path, or None if it is not a submission."""
    name = path.name
    if name.startswith("."):
        return None
    if path.is_dir() and not path.is_symlink():
        return name
    if not path.is_file() or path.is_symlink():
        return None
    lower = name.lower()
    for suffix in ARCHIVE_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def discover(folder: Path) -> tuple[list[Submission], list[str]]:
    """Submissions under `folder` (sorted by id, not yet read) and notes on skipped entries."""
    found: dict[str, list[Path]] = {}
    skipped = []
    for entry in sorted(folder.iterdir(), key=lambda p: os.fsencode(p.name)):
        raw = student_name(entry)
        if raw is None:
            if entry.name.startswith("."):
                skipped.append(f"{printable(entry.name)}: a hidden name (starts with '.'); skipped: "
                               "rename it to grade it")
            else:
                skipped.append(f"{printable(entry.name)}: not a folder, .zip or .tar.gz; skipped")
            continue
        found.setdefault(raw, []).append(entry)
    subs = []
    taken: set[str] = set()
    for raw, paths in sorted(found.items(), key=lambda kv: safe_id(kv[0])):
        student = safe_id(raw)
        while student in taken or student.lower() in RESERVED_IDS:  # two raw names cleaned to one id
            student += "_"
        taken.add(student)
        sub = Submission(student=student, source=paths[0])
        if len(paths) > 1:
            names = ", ".join(printable(p.name) for p in paths)
            sub.error = f"more than one submission for this student ({names}): keep one"
        subs.append(sub)
    return subs, skipped


def read(sub: Submission) -> Submission:
    """Fill `sub.files` (and notes) from its source; on failure set `sub.error` instead."""
    if sub.error:
        return sub
    try:
        if sub.source.is_dir():
            entries = _folder_entries(sub.source)
        elif sub.source.name.lower().endswith(".zip"):
            entries = _zip_entries(sub.source)
        else:
            entries = _tar_entries(sub.source)
        sub.files, notes = _choose(entries)
        sub.notes += notes
    except Unreadable as exc:
        sub.error = str(exc)
    except (OSError, EOFError, zipfile.BadZipFile, tarfile.TarError, lzma.LZMAError,
            zlib.error, RuntimeError, ValueError) as exc:
        sub.error = f"cannot read {printable(sub.source.name)}: {type(exc).__name__}: " \
                    f"{printable(str(exc))[:200]}"
    if not sub.error and not sub.files:
        sub.error = _nothing_found(sub)
    sub.review = scan_files(sub.files)
    return sub


def _nothing_found(sub: Submission) -> str:
    hint = f" ({sub.notes[0]})" if sub.notes else ""
    return ("no chapter files found: expected files like ch05_linear_regression.py under "
            f"exercises/ or at the top, or chapter notebooks like ch05/ch05.ipynb{hint}")


# --------------------------------------------------------------------------- entries
# An entry is (relative posix path parts, loader or None, note); the loader returns bytes.

@dataclass
class _Entry:
    parts: tuple[str, ...]
    load: object = None       # callable -> bytes, or None when the entry is not a regular file
    size: int = 0
    kind: str = "file"


def _folder_entries(root: Path) -> list[_Entry]:
    entries = []
    count = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel = Path(dirpath).relative_to(root).parts
        if len(rel) > 2:
            dirnames[:] = []
            continue
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "__pycache__"]
        for name in filenames:
            count += 1
            if count > MEMBER_LIMIT:
                raise Unreadable(f"more than {MEMBER_LIMIT} files in the submission folder")
            path = Path(dirpath) / name
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                entries.append(_Entry(rel + (name,), None, 0, "link"))
            elif not stat.S_ISREG(st.st_mode):
                entries.append(_Entry(rel + (name,), None, 0, "special file"))
            else:
                entries.append(_Entry(rel + (name,), _file_loader(path, _cap(name)), st.st_size))
    return entries


def _cap(name: str) -> int:
    """The most bytes read of a file of that name: a chapter file's or a notebook's cap."""
    return NOTEBOOK_CAP if NOTEBOOK_RE.match(name) else FILE_CAP


def _file_loader(path: Path, cap: int = FILE_CAP):
    def load() -> bytes:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            return f.read(cap + 1)
    return load


def _zip_entries(path: Path) -> list[_Entry]:
    zf = zipfile.ZipFile(path)
    infos = zf.infolist()
    if len(infos) > MEMBER_LIMIT:
        raise Unreadable(f"the archive has {len(infos)} entries (at most {MEMBER_LIMIT})")
    _refuse_duplicates(info.filename.replace("\\", "/") for info in infos)
    entries = []
    for info in infos:
        parts = _safe_parts(info.filename.replace("\\", "/"))
        mode = info.external_attr >> 16
        if parts is None:
            entries.append(_Entry((info.filename,), None, 0, "unsafe path"))
        elif info.is_dir():
            continue
        elif stat.S_IFMT(mode) == stat.S_IFLNK:
            entries.append(_Entry(parts, None, 0, "link"))
        elif stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # 0: made where there are no modes
            entries.append(_Entry(parts, None, 0, "special file"))
        else:
            entries.append(_Entry(parts, _zip_loader(zf, info, _cap(parts[-1])), info.file_size))
    return entries


def _refuse_duplicates(names) -> None:
    """An archive that holds one path twice has no single meaning (tools disagree on which
    copy wins): it is refused with its reason rather than graded from either copy."""
    seen: set[tuple[str, ...]] = set()
    for name in names:
        parts = _safe_parts(name)
        if parts is None:
            continue
        if parts in seen:
            raise Unreadable(f"the archive holds {printable('/'.join(parts))} more than once: "
                             "make a new archive with one copy of each file")
        seen.add(parts)


def _zip_loader(zf: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int = FILE_CAP):
    def load() -> bytes:
        with zf.open(info) as f:   # decompresses lazily: reading is capped, not the header
            return f.read(cap + 1)
    return load


class _Capped(io.RawIOBase):
    """A read-only stream that refuses to deliver more than `limit` bytes in all."""

    def __init__(self, inner, limit: int) -> None:
        self.inner, self.left = inner, limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.left <= 0:
            raise Unreadable(f"the archive expands to more than {EXPANDED_LIMIT >> 20} MB "
                             "(a compression bomb?)")
        view = memoryview(buffer)[: self.left]
        data = self.inner.read(len(view))
        view[: len(data)] = data
        self.left -= len(data)
        return len(data)


def _tar_entries(path: Path) -> list[_Entry]:
    raw = open(path, "rb")  # noqa: SIM115 - closed with the stream below
    magic = raw.read(6)
    raw.seek(0)
    if magic[:2] == b"\x1f\x8b":
        inner = gzip.GzipFile(fileobj=raw)
    elif magic[:3] == b"BZh":
        inner = bz2.BZ2File(raw)
    elif magic == b"\xfd7zXZ\x00":
        inner = lzma.LZMAFile(raw)
    else:
        inner = raw
    stream = io.BufferedReader(_Capped(inner, EXPANDED_LIMIT))
    entries = []
    names: set[tuple[str, ...]] = set()
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tf:
            for count, member in enumerate(tf, 1):
                if count > MEMBER_LIMIT:
                    raise Unreadable(f"the archive has more than {MEMBER_LIMIT} entries")
                parts = _safe_parts(member.name)
                if parts is not None and not member.isdir():
                    if parts in names:
                        _refuse_duplicates(["/".join(parts)] * 2)
                    names.add(parts)
                if parts is None:
                    entries.append(_Entry((member.name,), None, 0, "unsafe path"))
                elif member.isdir():
                    continue
                elif member.issym() or member.islnk():
                    entries.append(_Entry(parts, None, 0, "link"))
                elif not member.isreg():
                    entries.append(_Entry(parts, None, 0, "special file"))
                else:
                    data = b""
                    if _wanted(parts) and member.size <= _cap(parts[-1]):
                        f = tf.extractfile(member)
                        data = f.read(_cap(parts[-1]) + 1) if f else b""
                    entries.append(_Entry(parts, (lambda d=data: d), member.size))
    finally:
        raw.close()
    return entries


def _safe_parts(name: str) -> tuple[str, ...] | None:
    """Path parts of an archive member, or None if it is absolute or climbs out."""
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return None
    parts = tuple(p for p in PurePosixPath(name).parts if p not in ("", "."))
    if any(p == ".." for p in parts) or not parts:
        return None
    return parts


def _named_like_chapter(name: str) -> bool:
    return bool(CHAPTER_FILE_RE.match(name) or NOTEBOOK_RE.match(name))


def _wanted(parts: tuple[str, ...]) -> bool:
    return _named_like_chapter(parts[-1]) and _location(parts) is not None


def _location(parts: tuple[str, ...]) -> int | None:
    """Preference of where a chapter file sits (lower is better), None if elsewhere. A
    notebook may also sit in nbgrader's assignment folder below one wrapping folder
    (`alice/ch05/ch05.ipynb` in alice.zip)."""
    dirs = parts[:-1]
    if dirs == ("exercises",):
        return 0
    if dirs == ():
        return 1
    if len(dirs) == 2 and dirs[1] == "exercises":
        return 2
    if len(dirs) == 1:
        return 3
    if len(dirs) == 2 and NOTEBOOK_RE.match(parts[-1]) and dirs[1] == parts[-1][: -len(".ipynb")]:
        return 4
    return None


def _choose(entries: list[_Entry]) -> tuple[dict[str, bytes], list[str]]:
    """The chapter files to grade, and notes on everything skipped on the way."""
    notes = []
    for e in entries:
        if e.kind != "file" and _named_like_chapter(e.parts[-1] if e.parts else ""):
            notes.append(f"{printable('/'.join(e.parts))}: a {e.kind}, not a regular file; skipped")
        elif e.kind == "unsafe path":
            notes.append(f"{printable(e.parts[0])}: unsafe path in the archive; skipped")
    best: dict[str, tuple[tuple[int, int], _Entry]] = {}
    for e in entries:
        if e.kind != "file" or not _named_like_chapter(e.parts[-1]):
            continue
        where = _location(e.parts)
        if where is None:
            continue
        name = _chapter_filename(e, notes)
        if name is None:
            continue
        rank = (where, 1 if NOTEBOOK_RE.match(e.parts[-1]) else 0)
        if name not in best:
            best[name] = (rank, e)
            continue
        loser = e
        if rank < best[name][0]:
            best[name], loser = (rank, e), best[name][1]
        if NOTEBOOK_RE.match(loser.parts[-1]) or NOTEBOOK_RE.match(best[name][1].parts[-1]):
            notes.append(f"{printable('/'.join(loser.parts))}: skipped: {name} is graded from "
                         f"{printable('/'.join(best[name][1].parts))}")
    files = {}
    for name, (rank, e) in sorted(best.items()):
        data = _load(e, notes)
        if data is not None and NOTEBOOK_RE.match(e.parts[-1]):
            data = _module_of_notebook(e, data, notes)
        if data is not None:
            files[name] = data
    return files, notes


def _chapter_filename(e: _Entry, notes: list[str]) -> str | None:
    """The chapter file an entry provides (a notebook provides its chapter's), or None."""
    name = e.parts[-1]
    match = NOTEBOOK_RE.match(name)
    if match:
        return CHAPTERS[match.group(1)].filename if match.group(1) in CHAPTERS else None
    if chapter_of_module(name) is None:
        number = name[2:4]
        if number in CHAPTERS:
            notes.append(f"{printable('/'.join(e.parts))}: not a chapter file (chapter {number}'s "
                         f"file is {CHAPTERS[number].filename}); skipped")
        return None
    return name


def _load(e: _Entry, notes: list[str]) -> bytes | None:
    """The entry's bytes, or None (with a note) when it is larger than its cap."""
    cap, name = _cap(e.parts[-1]), e.parts[-1]
    if e.size > cap:
        notes.append(f"{name}: larger than {cap >> 20} MB; skipped")
        return None
    data = e.load()
    if len(data) > cap:
        notes.append(f"{name}: larger than {cap >> 20} MB once unpacked; skipped")
        return None
    return data


def _module_of_notebook(e: _Entry, data: bytes, notes: list[str]) -> bytes | None:
    """The chapter file graded for a chapter notebook: its solution cells in the released
    module. A copy of the grader without the solutions (a CI or Gradescope bundle) takes the
    notebook's code cells as they are. A file that is no notebook is skipped with a note, as
    the chapter is missing."""
    from grader.notebook import NotebookError, module_source, read_notebook

    label = printable("/".join(e.parts))
    chapter = NOTEBOOK_RE.match(e.parts[-1]).group(1)
    try:
        nb = read_notebook(data, label)
        try:
            from grader import nbgrader
            text, more = nbgrader.graded_module(nb, chapter)
        except (ImportError, OSError):
            text, more = module_source(nb), []
    except NotebookError as exc:
        reason = str(exc)
        notes.append(f"{reason if reason.startswith(label) else f'{label}: {reason}'}; skipped")
        return None
    notes += [f"{label}: {note}" for note in more]
    module = text.encode("utf-8")
    if len(module) > FILE_CAP:
        notes.append(f"{label}: its code is larger than {FILE_CAP >> 20} MB; skipped")
        return None
    return module
