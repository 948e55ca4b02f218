"""An on-disk cache of rendered derivations, so that a repeated ``symelig derive`` skips SymPy.

Deriving and printing take a few hundred milliseconds, importing SymPy more; the answer only
changes when symelig's code or SymPy's version does.  Entries are keyed by the request, the
versions of symelig and SymPy, and a fingerprint (path, size, mtime) of symelig's own source
files, so an edited checkout never serves stale text.

* Verified: an entry is one header line, ``symelig-cache 1 <key> sha256=<hex>``, then the text.
  An entry whose format version, key or SHA-256 does not match what is read back (empty,
  truncated, damaged, written by another version, copied from another key), that is not a
  regular file of ours (a symlink, a FIFO) or that others may write, is a miss: recomputed and
  overwritten.
* Private: the hash only catches damage.  Whoever can write the folder can also write a valid
  hash, and ``export`` puts the cached text into a module the user imports, so the folder must
  be the user's alone: it is created 0700, and a folder owned by another user, writable by group
  or others, or inside a folder anyone may replace it in (world-writable without the sticky
  bit) is not used, with a one-line warning.
* Safe under concurrent runs and crashes: entries are written to a temporary file, fsync'd and
  renamed into place, so a reader sees a whole entry or none.
* Never in the way: a cache that cannot be read or written is skipped; it is safe to delete.

Location: ``$SYMELIG_CACHE_DIR``, else ``$XDG_CACHE_HOME/symelig``, else ``~/.cache/symelig``;
``SYMELIG_CACHE_DIR=off`` disables it.
"""
from __future__ import annotations

import hashlib
import os
import stat
import sys
import threading
from functools import lru_cache
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_FORMAT = "symelig-cache 1"
_warned: set = set()  # folders already warned about in this process
_warning = threading.Lock()


def folder() -> Path | None:
    configured = os.environ.get("SYMELIG_CACHE_DIR")
    if configured == "off":
        return None
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "symelig"


@lru_cache(maxsize=1)
def _fingerprint() -> str:
    from importlib import metadata

    from .version import __version__

    try:
        sympy_version = metadata.version("sympy")
    except metadata.PackageNotFoundError:
        sympy_version = "?"
    digest = hashlib.sha256(f"symelig {__version__} sympy {sympy_version}".encode())
    for path in sorted(_PACKAGE.rglob("*.py")):
        info = path.stat()
        digest.update(f"{path.relative_to(_PACKAGE)} {info.st_size} {info.st_mtime_ns}".encode())
    return digest.hexdigest()


def _key(request: tuple) -> str:
    return hashlib.sha256(repr((_fingerprint(), request)).encode()).hexdigest()


def _path(request: tuple) -> Path | None:
    base = folder()
    return None if base is None else base / f"{_key(request)[:40]}.txt"


def _header(key: str, payload: bytes) -> bytes:
    return f"{_FORMAT} {key} sha256={hashlib.sha256(payload).hexdigest()}\n".encode()


def _private(base: Path, create: bool) -> bool:
    """Whether ``base`` is a folder only we can write (created 0700 with ``create``); a folder
    that is missing or cannot be made is skipped silently, one that others control with a warning."""
    try:
        for missing in reversed([p for p in (base, *base.parents) if create and not p.exists()]):
            try:  # 0700 whatever the umask, as the XDG base directory spec asks of new folders
                os.mkdir(missing, 0o700)
                os.chmod(missing, 0o700)
            except FileExistsError:
                pass  # made by a concurrent run, or by someone else: checked below
        info = os.stat(base)
    except OSError:
        return False
    if not stat.S_ISDIR(info.st_mode):
        return False
    problem = None
    if info.st_uid != os.geteuid():
        problem = f"is owned by uid {info.st_uid}, not by you (uid {os.geteuid()})"
    elif info.st_mode & 0o022:
        problem = f"is writable by others (mode {stat.S_IMODE(info.st_mode):04o})"
    else:
        for parent in Path(os.path.realpath(base)).parents:  # could another user swap the folder?
            mode = os.stat(parent).st_mode
            if mode & 0o002 and not mode & stat.S_ISVTX:
                problem = f"is inside {parent}, which anyone can write (mode {stat.S_IMODE(mode):04o})"
                break
    if problem:
        with _warning:  # test and add as one step: two threads must not both warn
            first = str(base) not in _warned
            _warned.add(str(base))
    if problem and first:
        print(f"symelig: warning: cache folder {base} {problem}; not using it", file=sys.stderr)
    return problem is None


def private(base: Path) -> bool:
    """Whether ``base`` is a folder only this user can write, created 0700 if missing (the
    numba backend keeps its modules and compiled kernels in ``folder() / "numba"``)."""
    return _private(base, create=True)


def get(request: tuple) -> str | None:
    """The cached text for ``request`` (a tuple of plain values), or None."""
    path = _path(request)
    if path is None or not path.parent.exists() or not _private(path.parent, create=False):
        return None
    try:  # O_NONBLOCK: a FIFO planted as an entry must not block the open
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
            return None
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    finally:
        os.close(fd)
    header, _, payload = data.partition(b"\n")
    if header + b"\n" != _header(_key(request), payload):
        return None
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return None


def put(request: tuple, text: str) -> None:
    path = _path(request)
    if path is None or not _private(path.parent, create=True):
        return
    from .errors import SymeligError
    from .files import replace

    payload = text.encode("utf-8")
    try:  # replaces whatever is at the entry's name (a symlink included), 0600
        replace(path, _header(_key(request), payload) + payload, keep=False)
    except (OSError, SymeligError):
        pass
