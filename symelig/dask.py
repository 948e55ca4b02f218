"""Eligibilities of data larger than one machine: the numpy kernels mapped over Dask chunks.

``eligibility(derivation, x, **params)`` takes dask (or numpy) arrays and returns dask arrays;
each block runs the generated numpy kernel on one chunk of the batch axes, with the category
axis whole in every block (a category axis split into several chunks is joined once, since a
softmax needs all K entries).  The blocks carry the kernel's *source text*, not Python objects:
workers of a ``dask.distributed`` cluster compile it once each and need neither SymPy nor
symelig's derivation engine.

The arguments are checked as the numpy API checks them: dtypes and shapes when the graph is
built, values in every block against the constraints each argument declares (the same
:mod:`symelig.constraints` checks), so a category index of −1, a count of 2.5 or a negative
probability is a one-line :class:`SymeligError` naming the argument, the value and its index in
the whole array (the row of the batch, not of the block), raised by ``compute()``.  With
``validate=True`` (the default) a result that is not finite is an error too, as in
``Derivation.eligibility`` and ``Derivation.log_prob``; ``validate=False`` skips every value check.
"""
from __future__ import annotations

import functools

import numpy as np

from .errors import SymeligError, first_failing


def eligibility(derivation, x, *, validate: bool = True, **params) -> dict:
    """{parameter: dask array of ∂ log p/∂parameter}, lazily, chunked like the batch of ``x``."""
    return {name: _map(derivation, "eligibility", name, x, params, validate) for name in derivation.parameters}


def log_prob(derivation, x, *, validate: bool = True, **params):
    """log p(x | θ) as a dask array, chunked like the batch."""
    return _map(derivation, "log_prob", None, x, params, validate)


def _map(derivation, function: str, output, x, params: dict, validate: bool = True):
    import dask.array as da

    from .derivation import as_array

    constraint_of = derivation.symbolic.constraints
    params = derivation.defaulted(x, params)
    derivation.check_names(params)
    arrays = {n: da.asarray(v) for n, v in {"x": x, **params}.items()}
    for n, a in arrays.items():
        as_array(n, np.empty((0,), a.dtype))  # numeric, at most float64: the numpy API's dtype check
    batch_ndim = max(a.ndim - constraint_of[n].event_dim for n, a in arrays.items())
    batch_shape = _check_shapes(arrays, constraint_of, batch_ndim)
    batch = tuple(f"b{i}" for i in range(batch_ndim))
    args = []
    for n, a in arrays.items():
        event = constraint_of[n].event_dim
        if event and a.numblocks[-1] > 1:
            a = a.rechunk({a.ndim - 1: -1})  # a softmax needs the whole category axis
        # an ordering or block sizes carry an axis of their own length: an index of their own
        axis = (f"k_{n}",) if event and constraint_of[n].own_axis else ("k",) if event else ()
        args += [a, batch[batch_ndim - (a.ndim - event):] + axis]
    rows = 0
    if validate and batch_shape is not None:
        # the position of each block in the whole batch, for errors that name the global row
        for axis, extent in enumerate(batch_shape):
            args += [da.arange(extent, chunks=(_chunks_along(arrays, constraint_of, batch_ndim, axis, extent),)), (batch[axis],)]
            rows += 1
    vector_out = output is not None and constraint_of[output].event_dim
    out_index = batch + (("k",) if vector_out else ())
    floats = [a.dtype for n, a in arrays.items() if n in derivation.parameters]
    dtype = np.result_type(*floats) if all(np.dtype(t).kind == "f" for t in floats) else np.dtype(np.float64)
    # x last, as the numpy API checks it: its constraint reads the others (category count, total_count);
    # with each, which of its batch axes span the whole batch (a global row) and which broadcast
    checks = ()
    if validate:
        order = [n for n in constraint_of if n != "x"] + ["x"]
        checks = tuple((n, constraint_of[n], _spans(arrays[n], constraint_of[n], batch_shape)) for n in order)
    finite = validate  # results that are not finite are errors, as in the numpy API
    return da.blockwise(
        _block, out_index, *args,
        source=derivation.numpy_source, function=function, selected=output, names=tuple(arrays),
        checks=checks, rows=rows, batch_ndim=batch_ndim, finite=finite, discrete=derivation.symbolic.discrete,
        arguments=tuple(derivation.symbolic.family.arguments),
        value_checks=tuple(derivation.value_checks) if validate else (), dtype=dtype, concatenate=True, meta=np.empty((0,) * len(out_index), dtype),
    )


def _check_shapes(arrays: dict, constraint_of: dict, batch_ndim: int):
    """The numpy API's shape checks on the graph's shapes; the broadcast batch shape, or None
    where a chunk size is unknown (nan)."""
    sizes = {}
    for n, a in arrays.items():
        if constraint_of[n].event_dim:
            if a.ndim == 0 or a.shape[-1] == 0:
                raise SymeligError(f"{n} must have a non-empty category axis (last axis); got shape {a.shape}")
            if not constraint_of[n].own_axis:  # an ordering, block sizes: an axis of their own length
                sizes[n] = a.shape[-1]
    known = {n: s for n, s in sizes.items() if not np.isnan(s)}
    if len(set(known.values())) > 1:
        listed = ", ".join(f"{n} has {s}" for n, s in known.items())
        raise SymeligError(f"the category axes (last axes) disagree: {listed} categories")
    shapes = {n: a.shape[: a.ndim - constraint_of[n].event_dim] for n, a in arrays.items()}
    if any(np.isnan(d) for s in shapes.values() for d in s):
        return None
    try:
        return tuple(int(d) for d in np.broadcast_shapes(*shapes.values()))
    except ValueError:
        listed = ", ".join(f"{n} {a.shape}" for n, a in arrays.items())
        raise SymeligError(f"batch shapes do not broadcast: {listed} (the last axis of vectors is the category axis)") from None


def _spans(a, constraint, batch_shape) -> tuple:
    own = a.shape[: a.ndim - constraint.event_dim]
    if batch_shape is None:
        return (False,) * len(own)
    return tuple(extent == full for extent, full in zip(own, batch_shape[len(batch_shape) - len(own):]))


def _chunks_along(arrays: dict, constraint_of: dict, batch_ndim: int, axis: int, extent: int) -> tuple:
    """The chunks of batch axis ``axis`` of an argument that spans it (the row numbers are cut
    like the data, so blockwise needs no rechunking of its own)."""
    for n, a in arrays.items():
        own = a.ndim - constraint_of[n].event_dim
        k = axis - (batch_ndim - own)
        if k >= 0 and a.shape[k] == extent:
            return a.chunks[k]
    return (extent,)


def _block(*blocks, source, function, selected, names, checks, rows, batch_ndim, finite, discrete, value_checks=(), arguments=()):
    arrays = dict(zip(names, blocks))
    positions = blocks[len(names):len(names) + rows] if rows else None
    if checks:
        _check_block(arrays, checks, positions, batch_ndim, arguments)
    for check in value_checks:  # across arguments (a --via right side against its left side's constraint)
        check(arrays, locate=lambda local: _global((0,) * (batch_ndim - len(local)) + tuple(local), positions))
    kernels = _compiled(source)
    with np.errstate(all="ignore"):
        result = getattr(kernels, function)(**arrays)
    if selected is not None:
        result = result[selected]
        if finite and not np.all(np.isfinite(result)):
            _non_finite(kernels, arrays, selected, result, positions, batch_ndim, discrete)
    elif finite:
        # log p: −inf is the answer for a discrete sample of probability 0; nothing else non-finite
        bad = ~np.isfinite(result) & ~(np.isneginf(result) if discrete else False)
        if np.any(bad):
            local = tuple(int(w) for w in np.argwhere(bad)[0])
            at = f" at batch index {_global(local, positions)}" if local else ""
            hint = "" if result.dtype == np.float64 else "; float64 has more range"
            raise SymeligError(f"log p(x | θ){at} is not finite in {result.dtype} ({result[local].item()}): x and the "
                               f"parameters are too extreme for this precision{hint}")
    return result


def _global(local: tuple, positions) -> list:
    """A batch index within the block as an index in the whole batch."""
    return [int(positions[k][at]) if positions is not None else at for k, at in enumerate(local)]


# checks ---------------------------------------------------------------------------------------

def _check_block(arrays: dict, checks: tuple, positions, batch_ndim: int, argument_names=()) -> None:
    """The declared constraint of every argument, on this block; a failure names the first bad
    element by its index in the whole array."""
    size = next((np.shape(arrays[n])[-1] for n, c, _ in checks if c.event_dim and not c.own_axis), None)
    # the family's arguments, which a check may read (x ≤ total_count, x in [low, high], a mask, nvec)
    arguments = {n: c.event_dim for n, c, _ in checks if n != "x" and n in argument_names}
    context = {"size": size, **{n: arrays.get(n) for n in arguments}}
    # the ones with rows of their own, which the bisection cuts with the checked rows (nvec is
    # one vector for the whole batch: it is passed whole)
    per_row = {n: event for n, event in arguments.items() if not next(c for m, c, _ in checks if m == n).own_axis}
    for name, constraint, spans in checks:
        values = np.asarray(arrays[name])
        try:
            constraint.check(name, values, **context)
        except SymeligError as err:
            raise _located(name, constraint, values, context, per_row, err, positions, batch_ndim, spans) from None


def _located(name, constraint, values, context, arguments, err, positions, batch_ndim, spans) -> SymeligError:
    """``err`` restated for the first bad element of ``values`` by bisection over its batch
    positions (each check of a range is the constraint's own check), with its index in the whole
    array: global along the batch axes the argument spans (``spans``), its own where it is
    broadcast."""
    event = constraint.event_dim
    shape = values.shape[: values.ndim - event]
    if not shape:  # no batch axes: shared by every row, the message already names its elements
        return err
    flat = values.reshape((-1,) + values.shape[values.ndim - event:])
    # the arguments a check reads alongside (total_count, mask, low), cut to the same rows
    rows = {}
    for key, event_ in arguments.items():
        other = context.get(key)
        if other is not None and np.broadcast_shapes(np.shape(other)[: np.ndim(other) - event_], shape) == shape:
            tail = np.shape(other)[np.ndim(other) - event_:]
            rows[key] = np.broadcast_to(other, shape + tail).reshape((-1,) + tail)

    def check(start, stop, one=False):
        part = flat[start] if one else flat[start:stop]
        cut = {key: v[start] if one else v[start:stop] for key, v in rows.items()}
        constraint.check(name, part, **{**context, **cut})

    start = first_failing(check, 0, flat.shape[0])
    try:
        check(start, start + 1, one=True)
        return err  # not one row's fault (cannot happen with element-wise and row-wise checks)
    except SymeligError as one:
        message = str(one)
    local = np.unravel_index(start, shape)
    index = []
    for k, at in enumerate(local):
        axis = batch_ndim - len(shape) + k
        index.append(str(int(positions[axis][at])) if positions is not None and spans[k] else str(int(at)))
    where = ", ".join(index)
    if message.startswith(f"{name}["):
        return SymeligError(f"{name}[{where}, {message[len(name) + 1:]}")
    if message.startswith(name):
        return SymeligError(f"{name}[{where}]{message[len(name):]}")
    return SymeligError(f"{name}[{where}]: {message}")


def _non_finite(kernels, arrays, name, value, positions, batch_ndim, discrete) -> None:
    """A non-finite eligibility, explained as ``Derivation.eligibility`` does, at its global index."""
    bad = ~np.isfinite(value)
    vector = value.ndim > batch_ndim
    if vector:
        bad = bad.any(-1)
    local = tuple(int(w) for w in np.argwhere(bad)[0])
    at = f" at batch index {_global(local, positions)}" if local else ""
    with np.errstate(all="ignore"):
        log_p = np.broadcast_to(kernels.log_prob(**arrays), bad.shape)[local]
    if discrete and log_p == -np.inf:
        raise SymeligError(f"the sample x{at} has probability 0 under the given parameters (log p = -inf): its eligibility is undefined")
    hint = "" if value.dtype == np.float64 else "; float64 has more range"
    raise SymeligError(
        f"∂ log p/∂{name}{at} is not finite in {value.dtype}: x and the parameters are too extreme for this "
        f"precision (log p = {log_p.item()}){hint}"
    )


@functools.lru_cache(maxsize=64)
def _compiled(source: str):
    """The generated module from its source (our printer's output, never user text)."""
    import types

    module = types.ModuleType("symelig_generated_dask")
    exec(compile(source, "<symelig dask kernel>", "exec"), module.__dict__)
    return module
