"""An on-disk cache of rendered derivations, so that a repeated ``symelig derive`` skips SymPy.

Deriving and printing take a few hundred milliseconds, importing SymPy more; the answer only
changes when symelig's code or SymPy's version does.  Entries are keyed by the request, the
versions of symelig and SymPy, and a fingerprint (path, size, mtime) of symelig's own source
files, so an edited checkout never serves stale text.

* Safe to delete: a missing or unreadable entry is recomputed.
* Safe under concurrent runs: entries are written to a temporary file and renamed into place,
  so a reader sees a whole entry or none; two writers of one key write the same text.
* Never in the way: a cache that cannot be read or written is skipped silently.

Location: ``$SYMELIG_CACHE_DIR``, else ``$XDG_CACHE_HOME/symelig``, else ``~/.cache/symelig``;
``SYMELIG_CACHE_DIR=off`` disables it.
"""
from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


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

    from . import __version__

    try:
        sympy_version = metadata.version("sympy")
    except metadata.PackageNotFoundError:
        sympy_version = "?"
    digest = hashlib.sha256(f"symelig {__version__} sympy {sympy_version}".encode())
    for path in sorted(_PACKAGE.rglob("*.py")):
        stat = path.stat()
        digest.update(f"{path.relative_to(_PACKAGE)} {stat.st_size} {stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def _path(request: tuple) -> Path | None:
    base = folder()
    if base is None:
        return None
    key = hashlib.sha256(repr((_fingerprint(), request)).encode()).hexdigest()
    return base / f"{key[:40]}.txt"


def get(request: tuple) -> str | None:
    """The cached text for ``request`` (a tuple of plain values), or None."""
    path = _path(request)
    try:
        return path.read_text(encoding="utf-8") if path else None
    except (OSError, UnicodeDecodeError):
        return None


def put(request: tuple, text: str) -> None:
    path = _path(request)
    if path is None:
        return
    from .errors import SymeligError
    from .files import write_atomic

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text)
    except (OSError, SymeligError):
        pass
