"""The one atomic writer (a temporary file beside the target, then a rename: never half a file, and
no temporary file left behind when the write fails), the one reader of JSON records, and the one
maker of a folder's name from a domain's (``folder_name``). A leaf."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import threading
from pathlib import Path
from typing import Iterator

from bmil.errors import BMILError


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def folder_name(name: str) -> str:
    """``name`` (a domain's or an env id such as ``pkg.mod:Suite/task-v0``) as one path component of
    a folder's name: each character outside [A-Za-z0-9._-] becomes '_' (no ':' and no nested folder),
    and a name of dots alone gets a '_' in front. A name that is one already is left as it is."""
    name = _UNSAFE.sub("_", str(name))
    return f"_{name}" if name.strip(".") == "" else name


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path in ``path``'s folder to write; it replaces ``path`` when the block ends, and
    is deleted instead when the block raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Named by process and thread, so that two writers never share one (and the file's mode is the
    # umask's, as for any file the user writes).
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporaries of ``atomic_path`` under ``folder`` that a killed process left (its pid
    no longer runs); those of a live writer stay. The paths deleted."""
    removed = []
    for tmp in Path(folder).rglob(".*.tmp"):
        parts = tmp.name.rsplit(".", 3)  # ".<name>", pid, thread, "tmp"
        if len(parts) == 4 and parts[1].isdigit() and parts[2].isdigit() and not _alive(int(parts[1])):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def write_bytes(path: str | Path, data: bytes, sync: bool = False) -> None:
    """Save ``data`` atomically; with ``sync``, on disk before the rename (a checkpoint)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        if sync:
            f.flush()
            os.fsync(f.fileno())


def write_text(path: str | Path, text: str) -> None:
    """Save ``text`` atomically."""
    write_bytes(path, text.encode())


def write_record(path: str | Path, record: dict, indent: int | None = None) -> None:
    """Save a record as JSON atomically."""
    write_text(path, json.dumps(record, indent=indent))


def copy_file(source: str | Path, target: str | Path) -> None:
    """Copy ``source`` to ``target`` atomically (whole, or not at all)."""
    with atomic_path(target) as tmp:
        shutil.copy2(source, tmp)


def check_writable(path: str | Path, option: str) -> None:
    """Before the work: ``path`` (an output file the user named with ``option``) can be written, so
    that nothing is lost to a bad path after the work. Nothing is made here."""
    path = Path(path)
    if path.is_dir():
        raise BMILError(f"{option} {path} is a folder; give a file's path.")
    _check_above(path, path.parent, option)


def check_folder(path: str | Path, option: str) -> None:
    """Before the work: ``path`` (an output folder the user named with ``option``) is, or can be made,
    a folder this process writes in. Nothing is made here (a plan writes nothing)."""
    _check_above(Path(path), Path(path), option)


def _check_above(named: Path, folder: Path, option: str) -> None:
    """``folder``, or the nearest of its parents that exists, is a folder this process can write in."""
    above = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if above is not None and not above.is_dir():
        raise BMILError(f"{option} {named} cannot be written: {above} is a file, not a folder; give another path.")
    if above is not None and not os.access(above, os.W_OK | os.X_OK):
        raise BMILError(f"{option} {named} cannot be written: {above} is not writable here; give a folder you can write.")


def read_record(path: Path, fix: str) -> dict:
    """A JSON record of a run folder, or one clear error naming the file and ``fix``."""
    try:
        record = json.loads(Path(path).read_text())
        if isinstance(record, dict):
            return record
        problem = f"a {type(record).__name__}, not a JSON object"
    except ValueError as e:
        problem = f"{type(e).__name__}: {e}"
    raise damaged(path, problem, fix)


def damaged(path: Path, problem: str, fix: str) -> BMILError:
    """The one message for a damaged record: the file, what is wrong, how to mend it."""
    return BMILError(f"{path} is damaged ({problem}); restore it (git checkout) or {fix}")
