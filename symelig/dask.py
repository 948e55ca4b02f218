"""Eligibilities of data larger than one machine: the numpy kernels mapped over Dask chunks.

``eligibility(derivation, x, **params)`` takes dask (or numpy) arrays and returns dask arrays;
each block runs the generated numpy kernel on one chunk of the batch axes, with the category
axis whole in every block (a category axis split into several chunks is joined once, since a
softmax needs all K entries).  The blocks carry the kernel's *source text*, not Python objects:
workers of a ``dask.distributed`` cluster compile it once each and need neither SymPy nor
symelig's derivation engine.
"""
from __future__ import annotations

import functools

import numpy as np

from .errors import SymeligError


def eligibility(derivation, x, **params) -> dict:
    """{parameter: dask array of ∂ log p/∂parameter}, lazily, chunked like the batch of ``x``."""
    return {name: _map(derivation, "eligibility", name, x, params) for name in derivation.parameters}


def log_prob(derivation, x, **params):
    """log p(x | θ) as a dask array, chunked like the batch."""
    return _map(derivation, "log_prob", None, x, params)


def _map(derivation, function: str, output, x, params: dict):
    import dask.array as da

    constraint_of = derivation.symbolic.constraints
    derivation.check_names(params)
    arrays = {n: da.asarray(v) for n, v in {"x": x, **params}.items()}
    batch_ndim = max(a.ndim - constraint_of[n].event_dim for n, a in arrays.items())
    batch = tuple(f"b{i}" for i in range(batch_ndim))
    args = []
    for n, a in arrays.items():
        event = constraint_of[n].event_dim
        if event and a.numblocks[-1] > 1:
            a = a.rechunk({a.ndim - 1: -1})  # a softmax needs the whole category axis
        args += [a, batch[batch_ndim - (a.ndim - event):] + (("k",) if event else ())]
    vector_out = output is not None and constraint_of[output].event_dim
    out_index = batch + (("k",) if vector_out else ())
    floats = [a.dtype for n, a in arrays.items() if n in derivation.parameters]
    dtype = np.result_type(*floats) if all(np.dtype(t).kind == "f" for t in floats) else np.dtype(np.float64)
    return da.blockwise(
        _block, out_index, *args,
        source=derivation.numpy_source, function=function, selected=output, names=tuple(arrays),
        dtype=dtype, concatenate=True, meta=np.empty((0,) * len(out_index), dtype),
    )


def _block(*blocks, source, function, selected, names):
    kernels = _compiled(source)
    with np.errstate(all="ignore"):
        result = getattr(kernels, function)(**dict(zip(names, blocks)))
    return result if selected is None else result[selected]


@functools.lru_cache(maxsize=64)
def _compiled(source: str):
    """The generated module from its source (our printer's output, never user text)."""
    import types

    module = types.ModuleType("symelig_generated_dask")
    exec(compile(source, "<symelig dask kernel>", "exec"), module.__dict__)
    return module
