"""``symelig eval-files``: eligibilities of logged data larger than memory, block by block.

Input: a folder with one ``.npy`` file per argument (``x.npy``, ``logits.npy``, …), the batch
along the first axis; they are memory-mapped, never loaded whole.  Output: a folder with
``log_prob.npy`` and one ``<parameter>.npy`` per eligibility, written through memory maps block
by block.  Each block holds as many rows as fit ``memory_limit`` with the kernel's working
copies counted (inputs, outputs and up to three output-sized temporaries).  Outputs are written
under temporary names and renamed when complete, so an error leaves nothing half-written.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from .errors import SymeligError

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
        if not path.is_file():
            raise SymeligError(f"{path} is missing: {derivation.family} param={derivation.param} needs {', '.join(f'{m}.npy' for m in names)}")
        try:
            arrays[n] = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as err:
            raise SymeligError(f"{path} is not a readable .npy file ({err})") from None
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
    first = {n: np.asarray(a[:1] if per_row[n] else a) for n, a in arrays.items()}
    probe = derivation.eligibility(**first)
    outputs = {"log_prob": ((length,) + np.shape(derivation.log_prob(**first))[1:], None)}
    for name, value in probe.items():
        outputs[name] = ((length,) + value.shape[1:], value.dtype)
    dtype = next(iter(probe.values())).dtype
    row_bytes = sum(a[0].nbytes if per_row[n] else 0 for n, a in arrays.items())
    row_bytes += _WORKING_COPIES * sum(int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize for shape, _ in outputs.values())
    block = max(1, memory_limit // max(row_bytes, 1))
    if block == 1 and row_bytes > memory_limit:
        raise SymeligError(f"--memory-limit {memory_limit} bytes is below one row's working set ({row_bytes} bytes)")
    temporary = {n: output_dir / f".{n}.npy.partial" for n in outputs}
    try:
        maps = {n: np.lib.format.open_memmap(temporary[n], mode="w+", dtype=t or dtype, shape=shape)
                for n, (shape, t) in outputs.items()}
        with progress(length) if progress is not None else contextlib.nullcontext() as bar:
            for start in range(0, length, block):
                stop = min(start + block, length)
                chunk = {n: np.asarray(a[start:stop]) if per_row[n] else np.asarray(a) for n, a in arrays.items()}
                maps["log_prob"][start:stop] = derivation.log_prob(**chunk)
                for name, value in derivation.eligibility(**chunk).items():
                    maps[name][start:stop] = value
                if bar is not None:
                    bar.update(stop - start)
        for m in maps.values():
            m.flush()
        del maps
        final = {n: output_dir / f"{n}.npy" for n in outputs}
        for n in outputs:
            os.replace(temporary[n], final[n])
        return final
    finally:
        for path in temporary.values():
            if path.exists():
                path.unlink()
