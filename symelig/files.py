"""Writing outputs: all or nothing, so an error never leaves a half-written file behind.

What ``-o FILE`` does with what is already at FILE:

* ``-o -`` is stdout (the CLI handles it; nothing here sees it).
* A missing file, or a regular file we may write: replaced atomically (a temporary file in the
  same folder, fsync'd, renamed over it), keeping the old file's permission bits and owner.
* A symlink: written through, like a shell's ``>``: the file it points to is replaced and the
  link stays a link.
* Refused with a one-line error: a read-only file (no write bit, even for root), a file we have
  no write permission for, anything but a regular file (folder, device such as /dev/null, FIFO,
  socket), and a file with several hard links: replacing it would silently detach the other
  names, and writing in place would not be atomic.

The checks run just before the write; a file changed in between by another process is not
guarded against (no worse than ``open(path, "w")``).
"""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from .errors import SymeligError

_KINDS = {stat.S_ISDIR: "a folder", stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device",
          stat.S_ISFIFO: "a named pipe (FIFO)", stat.S_ISSOCK: "a socket"}


def target(path) -> Path:
    """The file ``write_atomic(path, …)`` would replace (symlinks resolved); SymeligError if it
    refuses to.  Lets a caller check every output before writing the first."""
    shown = path
    if str(path).endswith(os.sep):  # Path() would drop the slash and write a file named like the folder
        raise SymeligError(f"cannot write {shown}: a file name cannot end with {os.sep}")
    path = Path(os.path.realpath(path))
    try:
        info = os.stat(path)
    except FileNotFoundError:
        info = None
    except OSError as err:
        raise SymeligError(f"cannot write {shown}: {err.strerror}") from None
    if info is not None and not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _KINDS.items() if test(info.st_mode)), "something else")
        hint = "" if kind == "a folder" else " (-o - writes to stdout)"
        raise SymeligError(f"cannot write {shown}: it is {kind}, not a regular file{hint}")
    if info is not None:
        if not info.st_mode & 0o222:
            raise SymeligError(f"cannot write {shown}: the file is read-only")
        if not os.access(path, os.W_OK):
            raise SymeligError(f"cannot write {shown}: permission denied")
        if info.st_nlink > 1:
            raise SymeligError(f"cannot write {shown}: it has {info.st_nlink} hard links, which replacing it would "
                               "detach (remove it first, or write elsewhere)")
    folder = path.parent
    if not folder.is_dir():
        raise SymeligError(f"cannot write {shown}: folder {folder} does not exist")
    return path


def write_atomic(path, text: str) -> None:
    """Write ``text`` to ``path`` (see the module's docstring for what is refused)."""
    replace(target(path), text.encode("utf-8"), shown=path)


def replace(path: Path, data: bytes, shown=None, keep: bool = True) -> None:
    """Put ``data`` at ``path`` whatever is there (a symlink is replaced, not followed): a
    temporary file in the same folder, fsync'd, then renamed; the folder is fsync'd after.
    ``keep``: the new file gets the old one's mode and owner; else it stays private (0600)."""
    shown = path if shown is None else shown
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise SymeligError(f"cannot write {shown}: {err.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if keep:
                _keep_owner_and_mode(handle.fileno(), path)
            os.fsync(handle.fileno())  # the data is on disk before the name points at it
        os.replace(tmp, path)
    except OSError as err:
        os.unlink(tmp)
        raise SymeligError(f"cannot write {shown}: {err.strerror}") from None
    except BaseException:
        os.unlink(tmp)
        raise
    _sync_folder(path.parent)


def _keep_owner_and_mode(fd: int, path: Path) -> None:
    """The bits a plain ``open(path, "w")`` would leave: the old file's mode and owner (when we may
    set it), else 0666 & ~umask (mkstemp makes 0600)."""
    try:
        old = os.lstat(path)
    except OSError:
        old = None
    if old is None or not stat.S_ISREG(old.st_mode):
        os.fchmod(fd, 0o666 & ~_umask())
        return
    try:
        os.fchown(fd, old.st_uid, old.st_gid)
    except OSError:
        pass  # only root may give a file away; the file becomes ours, like an editor's save
    os.fchmod(fd, old.st_mode & 0o777)


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable; best effort (some filesystems refuse to fsync a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
