"""``symelig eval-files``: eligibilities of logged data larger than memory, block by block.

Input: a folder with one ``.npy`` file per argument (``x.npy``, ``logits.npy``, …), the batch
along the first axis; they are memory-mapped, never loaded whole, after their headers were
checked (a damaged or unsupported file is a one-line error, never numpy's exception).  Output: a
folder with ``log_prob.npy`` and one ``<parameter>.npy`` per eligibility, written through memory
maps block by block.  Each block holds as many rows as fit ``memory_limit`` with the kernel's
working copies counted (inputs, outputs and up to three output-sized temporaries).  Outputs are
written under temporary names of their own (two runs into one folder never share one) and
renamed when complete, so an error, SIGINT, SIGTERM or SIGHUP leaves nothing half-written: the signals
remove the partial files and raise :class:`Interrupted`.  A bad value is reported at its row in
the files, not in the block.
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
import tempfile
import threading
from pathlib import Path

import numpy as np

from .errors import SymeligError, first_failing

_UNITS = {"": 1, "B": 1, "K": 2**10, "KB": 2**10, "M": 2**20, "MB": 2**20, "G": 2**30, "GB": 2**30}
_WORKING_COPIES = 4  # outputs plus temporaries the kernels make, per output-sized array


def parse_size(text: str) -> int:
    number = text.strip().upper().rstrip("IB") if text.strip().upper().endswith("IB") else text.strip().upper()
    digits = number.rstrip("KMGB")
    unit = number[len(digits):]
    try:
        value = float(digits)
    except ValueError:
        value = -1.0
    if not 0 < value < 2**62 or unit not in _UNITS or value * _UNITS.get(unit, 1) >= 2**62:
        raise SymeligError(f"--memory-limit {text!r} is not a size such as 512MB, 2GB or 100000")
    return int(value * _UNITS[unit])


class Interrupted(BaseException):
    """SIGINT, SIGTERM or SIGHUP stopped a run; its partial outputs are already removed.  A
    BaseException, like KeyboardInterrupt, so that no ``except Exception`` on the way hides it."""

    def __init__(self, signum: int, folder):
        super().__init__(f"interrupted by {signal.Signals(signum).name}; removed the partial outputs in {folder}")
        self.signum = signum


def run(derivation, input_dir, output_dir, memory_limit: int, progress=None) -> dict:
    """Evaluate ``derivation`` over the folder ``input_dir``; returns {output name: path}.
    ``progress(rows)`` makes a context manager with ``update(n)`` (a progress bar), opened only
    once the inputs have been checked."""
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    names = ["x", *derivation.arguments, *derivation.parameters]
    if not input_dir.is_dir():
        raise SymeligError(f"--input {input_dir} is not a folder of .npy files")
    if not output_dir.is_dir():
        raise SymeligError(f"--output {output_dir} is not an existing folder")
    if output_dir.resolve() == input_dir.resolve():
        raise SymeligError("--output must be another folder than --input: the outputs would overwrite the inputs")
    arrays = {}
    for n in names:
        path = input_dir / f"{n}.npy"
        if path.exists() and not path.is_file():
            raise SymeligError(f"{path} is not a regular file (a folder, a pipe or a device cannot be memory-mapped)")
        if not path.is_file():
            raise SymeligError(f"{path} is missing: {derivation.family} param={derivation.param} needs {', '.join(f'{m}.npy' for m in names)}")
        arrays[n] = _open(path)
    event = {n: c.event_dim for n, c in derivation.symbolic.constraints.items()}
    batch_ndim = arrays["x"].ndim - event["x"]
    if batch_ndim < 1 or arrays["x"].shape[0] == 0:
        raise SymeligError("x.npy must hold at least one row (the batch runs along its first axis)")
    length = arrays["x"].shape[0]
    per_row = {}
    for n, a in arrays.items():  # a row per sample, or one value shared by every row
        if a.ndim == batch_ndim + event[n] and a.shape[0] == length:
            per_row[n] = True
        elif a.ndim <= event[n] + batch_ndim - 1 or a.ndim == event[n]:
            per_row[n] = False
        else:
            raise SymeligError(f"{n}.npy has shape {a.shape}; x.npy has {length} rows: give {n} per row or shared")

    def evaluate(start, stop):
        chunk = {n: np.asarray(a[start:stop]) if per_row[n] else np.asarray(a) for n, a in arrays.items()}
        return derivation.log_prob(**chunk), derivation.eligibility(**chunk)

    first_log_prob, probe = evaluate(0, 1)
    outputs = {"log_prob": ((length,) + np.shape(first_log_prob)[1:], None)}
    for name, value in probe.items():
        outputs[name] = ((length,) + value.shape[1:], value.dtype)
    dtype = next(iter(probe.values())).dtype
    row_bytes = sum(a[0].nbytes if per_row[n] else 0 for n, a in arrays.items())
    row_bytes += _WORKING_COPIES * sum(int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize for shape, _ in outputs.values())
    block = max(1, memory_limit // max(row_bytes, 1))
    if block == 1 and row_bytes > memory_limit:
        raise SymeligError(f"--memory-limit {memory_limit} bytes is below one row's working set ({row_bytes} bytes)")
    partial = {}
    with _Signals(lambda: _remove(partial.values()), output_dir) as signals:
        try:
            for n in outputs:
                partial[n] = _temporary(output_dir, n)
            maps = {n: np.lib.format.open_memmap(partial[n], mode="w+", dtype=t or dtype, shape=shape)
                    for n, (shape, t) in outputs.items()}
            with progress(length) if progress is not None else contextlib.nullcontext() as bar:
                for start in range(0, length, block):
                    stop = min(start + block, length)
                    try:
                        maps["log_prob"][start:stop], eligibility = evaluate(start, stop)
                    except SymeligError as err:
                        raise _at_first_bad_row(evaluate, start, stop, err, [n for n in arrays if per_row[n]]) from None
                    for name, value in eligibility.items():
                        maps[name][start:stop] = value
                    if bar is not None:
                        bar.update(stop - start)
            for m in maps.values():
                m.flush()
            del maps
            final = {n: output_dir / f"{n}.npy" for n in outputs}
            with signals.deferred():  # all outputs renamed, or none
                for n in outputs:
                    os.replace(partial[n], final[n])
            return final
        finally:
            _remove(partial.values())


def _open(path: Path) -> np.ndarray:
    """A read-only memory map of the .npy file ``path``, its header checked against the file."""
    def bad(why):
        return SymeligError(f"{path} is not a usable .npy file: {why}")

    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            if size == 0:
                raise bad("it is empty")
            version = np.lib.format.read_magic(handle)
            if version not in ((1, 0), (2, 0)):
                raise bad(f"format version {version[0]}.{version[1]} is not supported (1.0 and 2.0 are)")
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(handle)
            offset = handle.tell()
    except SymeligError:
        raise
    except Exception as err:  # noqa: BLE001 -- numpy's header parser raises ValueError, EOFError, tokenize errors…
        raise bad(f"its header cannot be read ({' '.join(str(err).split())[:120]})") from None
    if dtype.hasobject or dtype.kind not in "biuf":
        raise bad(f"its dtype {dtype} is not a number type (eval-files reads booleans, integers and floats)")
    if any(d < 0 for d in shape):
        raise bad(f"its header gives the negative shape {shape}")
    needed = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if offset + needed > size:
        raise bad(f"its header promises {needed} bytes of data for shape {shape} {dtype}, the file holds "
                  f"{size - offset} (truncated?)")
    if needed == 0:
        return np.empty(shape, dtype)  # nothing to map
    try:
        return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")
    except (OSError, ValueError) as err:
        raise bad(" ".join(str(err).split())[:120]) from None


def _temporary(folder: Path, name: str) -> Path:
    """A fresh file for output ``name``: a name no other run uses, so runs never map one file."""
    try:
        fd, path = tempfile.mkstemp(dir=folder, prefix=f".{name}.npy.", suffix=".partial")
    except OSError as err:
        raise SymeligError(f"cannot write in --output {folder}: {err.strerror}") from None
    os.close(fd)
    return Path(path)


def _remove(paths) -> None:
    for path in list(paths):
        with contextlib.suppress(OSError):
            path.unlink()


def _at_first_bad_row(evaluate, start: int, stop: int, err: SymeligError, per_row: list) -> SymeligError:
    """``err`` (about rows start…stop−1, indexed from the block's start) restated for the first
    bad row in the files.  Rows are independent, so a range fails exactly when one of its rows
    does: bisection finds the first, whose message then names index 0 for the row."""
    start = first_failing(evaluate, start, stop)
    try:
        evaluate(start, start + 1)
        return err  # not a row's fault after all (cannot happen with row-wise checks)
    except SymeligError as one_row:
        message = str(one_row)
    labels = "|".join(re.escape(n) for n in per_row)
    pattern = rf"(\b(?:{labels})\[|at batch index \[)0(?=[,\]])"
    message, count = re.subn(pattern, lambda m: f"{m.group(1)}{start}", message)
    return SymeligError(message if count else f"row {start}: {message}")


_STOPS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class _Signals:
    """While a run writes: SIGINT, SIGTERM and SIGHUP remove the partial outputs and raise Interrupted;
    during ``deferred()`` (the final renames) they wait for it to end.  Handlers can only be set
    in the main thread; elsewhere the signals keep theirs.  The previous handlers come back."""

    def __init__(self, cleanup, folder):
        self.cleanup, self.folder, self.pending, self.deferring, self.previous = cleanup, folder, None, False, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self._stop) for s in _STOPS}
        return self

    def __exit__(self, *exc_info):
        for s, handler in self.previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)

    def _stop(self, signum, frame):
        if self.pending is not None:
            return  # already on the way out
        self.pending = signum
        if not self.deferring:
            self.cleanup()
            raise Interrupted(signum, self.folder)

    @contextlib.contextmanager
    def deferred(self):
        self.deferring = True
        try:
            yield
        finally:
            self.deferring = False
        if self.pending is not None:
            raise Interrupted(self.pending, self.folder)
