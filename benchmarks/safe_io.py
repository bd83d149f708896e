"""Reading files that came from someone else: bounded, no links, no FIFOs or devices, no deep JSON.

Used by the leaderboard and the run report (:func:`benchmarks.board.validation.load`), which read run
folders a submitter made: a file there may be a symbolic link to a system file, ``/dev/zero``, a
FIFO that never answers, or JSON nested deeply enough to exhaust Python's recursion. And writing
files atomically (:func:`atomic_write_bytes`), so that a reader never sees half a file.

Imports nothing of the project: every layer above may use it.
"""

from __future__ import annotations

import json
import os
import re
import stat
import unicodedata
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class UnsafeFileError(ValueError):
    """A file that must not be read: a link, not a regular file, or over its size limit."""


_KINDS = (
    (stat.S_ISREG, "a file"),
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def read_regular(folder: str | Path, relative: str, limit: int) -> bytes:
    """The bytes of ``folder/relative``, read without following any link below ``folder``.

    Each folder on the way is opened relative to the one before with ``O_NOFOLLOW`` (so a link
    swapped in between checks is refused too), the file is opened non-blocking (a FIFO cannot hang
    the reader) and must be a regular file, and at most ``limit + 1`` bytes are read: the size on
    disk is not trusted (``/dev/zero`` and growing files report any size).

    Args:
        folder: the run folder (itself no link either).
        relative: a path inside it, with ``/`` separators.
        limit: the largest size accepted (bytes).

    Raises:
        FileNotFoundError: if the file (or the folder) does not exist.
        UnsafeFileError: for a link, anything but a regular file or folder where one is expected,
            or a file over ``limit`` bytes.
    """
    parts = PurePosixPath(relative).parts
    if not parts or any(p in ("", ".", "..") or p.startswith("/") for p in parts):
        raise ValueError(f"relative must be a plain path inside the folder, got {relative!r}")
    nofollow = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    opened: list[int] = []
    where = Path(folder)
    try:
        fd = _open(where, nofollow | os.O_DIRECTORY, None)
        opened.append(fd)
        for part in parts[:-1]:
            where = where / part
            fd = _open(where, nofollow | os.O_DIRECTORY, opened[-1])
            opened.append(fd)
        where = where / parts[-1]
        fd = _open(where, nofollow | os.O_NONBLOCK, opened[-1])
        opened.append(fd)
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise UnsafeFileError(f"is {_kind(mode)}, not a regular file")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise UnsafeFileError(f"over the {limit}-byte limit")
        return b"".join(chunks)
    finally:
        for fd in opened:
            os.close(fd)


def _open(path: Path, flags: int, dir_fd: int | None) -> int:
    """``os.open`` of the last part of ``path`` (relative to ``dir_fd``), with errors that say what was found."""
    name = str(path) if dir_fd is None else path.name
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file or folder") from None
    except OSError as error:
        try:
            mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
        except OSError:
            mode = 0
        if stat.S_ISLNK(mode):
            raise UnsafeFileError(
                f"{path} is a symbolic link; submissions hold only regular files and folders"
            ) from None
        if flags & os.O_DIRECTORY:
            raise UnsafeFileError(f"{path} is {_kind(mode)}; expected a folder") from None
        raise UnsafeFileError(f"{path} cannot be read ({error.strerror})") from None


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


def json_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in a JSON text (strings skipped), in one pass of
    C-speed regex and numpy: no recursion, however deep the text."""
    skeleton = np.frombuffer(_JSON_STRING.sub(b"", data), np.uint8)
    steps = np.isin(skeleton, (ord("["), ord("{"))).astype(np.int64) - np.isin(skeleton, (ord("]"), ord("}")))
    return int(np.cumsum(steps).max(initial=0))


def parse_json(data: bytes, max_depth: int) -> Any:
    """JSON (UTF-8) nested at most ``max_depth`` deep.

    Raises:
        ValueError: for text that is not UTF-8 JSON or is nested deeper.
    """
    depth = json_depth(data)
    if depth > max_depth:
        raise ValueError(f"JSON nested {depth} deep; at most {max_depth} accepted")
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise ValueError(f"not valid JSON ({str(error)[:120]})") from None


MAX_JSON_BYTES = 50 * 1024 * 1024  # a run's result.json is ~4 MB at the paper preset's 8 networks
MAX_JSON_DEPTH = 16  # result.json nests 6 deep


def read_json(folder: str | Path, relative: str, limit: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``folder/relative`` read as :func:`read_regular` reads and parsed as :func:`parse_json` does.

    Raises:
        FileNotFoundError: if it does not exist.
        ValueError: for a link, a non-regular or oversized file, or text that is not JSON within the depth.
    """
    data = read_regular(folder, relative, limit)  # its errors name the file
    try:
        return parse_json(data, max_depth)
    except ValueError as error:
        raise ValueError(f"{Path(folder) / relative}: {error}") from None


def png_problem(data: bytes) -> str:
    """Why ``data`` is not a PNG image ("" if it starts as one: the signature and an IHDR chunk)."""
    if not data.startswith(PNG_MAGIC) or data[12:16] != b"IHDR":
        return "not a PNG image (wrong signature)"
    return ""


# Characters a name or description may hold: letters, marks, digits, punctuation, symbols and the
# plain space. Everything else is refused: control characters (ESC, BEL, NUL, CR, LF), format
# characters (the bidi overrides U+202A-U+202E and U+2066-U+2069, zero-width joiners), other
# separators, private-use and unassigned code points: none has a place in a one-line label.
_ALLOWED_CATEGORIES = ("L", "M", "N", "P", "S")


def text_problem(text: str) -> str:
    """Why ``text`` is not a printable one-line label ("" if it is)."""
    for i, char in enumerate(text):
        if char != " " and unicodedata.category(char)[0] not in _ALLOWED_CATEGORIES:
            what = unicodedata.name(char, "unnamed")
            return f"character {i} is {ascii(char)} ({what}): only printable characters and spaces are allowed"
    return ""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Writes ``data`` to ``path`` so that readers see the old file or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


def atomic_write_json(path: Path, obj: Any) -> None:
    """Writes ``obj`` as JSON (NaN allowed) to ``path`` with :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, json.dumps(obj, indent=1, allow_nan=True).encode())


def _short(value: Any, limit: int = 60) -> str:
    """A value for an error message: its repr, cut (a forged field may be megabytes)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
