"""Atomic artifact writes and content hashes.

Every artifact goes to a temporary file in the same directory and is renamed into place, so an
interrupted stage never leaves a half-written file that a later stage would trust.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    from .errors import ArtifactError

    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{path}: not valid JSON ({e})") from None


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one JSON line and flush it to disk, so a crash loses at most the line being written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a JSONL log; a torn last line (from a crash mid-write) is ignored."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise
    return records


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


MIB = 1 << 20
MAX_MODEL_BYTES = 64 * MIB  # no Cortex-M board holds a model near this; a bigger file is not one of ours
MAX_TEXT_BYTES = 16 * MIB  # labels, arch and config JSON


def read_regular_file(path: str | os.PathLike, *, max_bytes: int, what: str, error=None) -> bytes:
    """The bytes of a regular file of at most `max_bytes`, else `error` (default ArtifactError) naming it.

    Refuses folders, devices (`/dev/zero` would be read forever), FIFOs and files over the cap, before
    reading a byte; reads at most `max_bytes + 1` bytes, so a file growing meanwhile is caught too."""
    import stat

    from .errors import ArtifactError

    error = error or ArtifactError
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{path}: {what} not found", hint="check the path") from None
    except OSError as e:
        raise error(f"{path}: cannot read the {what} ({e.strerror})", hint="check the path and its permissions") from None
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{path}: is a folder, not a {what} file", hint="pass the file itself")
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{path}: not a regular file (a device, FIFO or socket), so not a {what}",
                    hint="pass a file on disk")
    if st.st_size > max_bytes:
        raise error(f"{path}: {st.st_size:,} bytes, more than the {max_bytes:,} a {what} may have",
                    hint="is this the right file?")
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise error(f"{path}: cannot read the {what} ({e.strerror})", hint="check its permissions") from None
    if len(data) > max_bytes:
        raise error(f"{path}: more than the {max_bytes:,} bytes a {what} may have", hint="is this the right file?")
    return data


def read_text_file(path: str | os.PathLike, *, what: str, max_bytes: int = MAX_TEXT_BYTES, error=None) -> str:
    """A regular UTF-8 text file (see `read_regular_file`); binary content is refused with `error`."""
    from .errors import ArtifactError

    data = read_regular_file(path, max_bytes=max_bytes, what=what, error=error)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise (error or ArtifactError)(f"{path}: the {what} is not UTF-8 text (byte {e.start})",
                                       hint="save it as UTF-8 text") from None
    if "\x00" in text:
        raise (error or ArtifactError)(f"{path}: the {what} holds NUL bytes: binary, not text",
                                       hint="pass a UTF-8 text file")
    return text


_HELD_LOCKS: set[str] = set()


@contextmanager
def folder_lock(folder: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold an exclusive lock on `folder` (a `.ofa-mcu.lock` file in it) for the block; a second process
    asking for it is refused at once with UsageError naming the holder, instead of interleaving records."""
    import fcntl

    from .errors import UsageError

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".ofa-mcu.lock"
    key = str(path.resolve())
    if key in _HELD_LOCKS:  # this process holds it already (deploy runs check in its own folder)
        yield
        return
    f = open(path, "a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another ofa-mcu process"
            raise UsageError(f"{folder}: in use by {holder}; refusing to run a second {what} on it at once",
                             hint="wait for it to finish (or use another --out folder)") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} ({what})")
        f.flush()
        _HELD_LOCKS.add(key)
        try:
            yield
        finally:
            _HELD_LOCKS.discard(key)
    finally:
        f.close()
