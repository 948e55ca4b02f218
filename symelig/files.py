"""Writing outputs: all or nothing, so an error never leaves a half-written file behind."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import SymeligError


def write_atomic(path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise SymeligError(f"cannot write {path}: folder {folder} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise SymeligError(f"cannot write {path}: {err.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, _mode_for(path))  # mkstemp makes 0600; a normal file follows the umask
        os.replace(tmp, path)
    except OSError as err:
        os.unlink(tmp)
        raise SymeligError(f"cannot write {path}: {err.strerror}") from None
    except BaseException:
        os.unlink(tmp)
        raise


def _mode_for(path: Path) -> int:
    """The permission bits a plain ``open(path, "w")`` would give: the old file's, or 0666 & ~umask."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
