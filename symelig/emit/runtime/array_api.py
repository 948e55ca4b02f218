"""The plumbing of the array-API kernels: the namespace, device and dtype of the inputs, outputs
the caller owns, the library's fused softmax and log-sum-exp, and the δ_jx scatter at the
sample.  The generated modules bind ``array_namespace`` and ``device`` themselves (from
array-api-compat, or pinned to one library); so does this module, for its tests."""
from __future__ import annotations

from array_api_compat import array_namespace, device


def _namespace(*arrays):
    """The array API namespace of the array arguments (numpy for plain numbers and lists); where
    numpy arrays are mixed with one other library's, that library's (the numpy ones move to it)."""
    arrays = [a for a in arrays if hasattr(a, "shape") and hasattr(a, "dtype")]
    if not arrays:
        import numpy
        return array_namespace(numpy.asarray(0.0))
    foreign = [a for a in arrays if type(a).__module__.split(".")[0] != "numpy"]
    return array_namespace(*(foreign or arrays))


def _asarray(xp, a, device):
    """``a`` itself when it is already an array of ``xp`` (no copy, autograd intact), else
    converted onto ``device``."""
    if hasattr(a, "shape") and hasattr(a, "dtype"):
        try:
            if array_namespace(a) is xp:
                return a
        except TypeError:
            pass
    return xp.asarray(a, device=device)


def _device(*arrays):
    """The device of the first array argument (None: the library's default)."""
    for a in arrays:
        if hasattr(a, "shape") and hasattr(a, "dtype"):
            return device(a)
    return None


def _float_dtype(xp, *arrays):
    """The floating dtype of the parameters: float32 stays float32, anything else float64."""
    dtypes = [a.dtype for a in arrays]
    if dtypes and all(xp.isdtype(t, "real floating") for t in dtypes):
        return xp.result_type(*dtypes)
    return xp.float64


def _broadcast_shapes(*shapes):
    """numpy.broadcast_shapes on plain tuples (the array API has none); static under jax.jit."""
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for axis in range(ndim):
        sizes = {s[axis - ndim + len(s)] for s in shapes if axis - ndim + len(s) >= 0} - {1}
        if len(sizes) > 1:
            raise ValueError(f"shapes {shapes} do not broadcast")
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def _full(xp, value, shape, dtype, device, copy=False):
    """``value`` broadcast to ``shape`` as an array the caller owns (``value`` itself when it is
    a fresh result of that shape and ``copy`` is false), with no −0.0: adding +0.0 turns −0.0
    into +0.0 and leaves every other value (IEEE round to nearest), so a zero that a product
    with a negative factor made (−π·c at π = 0) is returned as +0.0."""
    # (a Python number has no dtype; numpy would even call dtype("float64") == None true)
    if not copy and hasattr(value, "dtype") and tuple(value.shape) == tuple(shape) and value.dtype == dtype:
        return _positive_zero(xp, value, in_place=True)
    value = _positive_zero(xp, xp.astype(xp.asarray(value, device=device), dtype, copy=False))
    return xp.asarray(xp.broadcast_to(value, tuple(shape)), copy=True)  # one pass: a view, then a copy


def _positive_zero(xp, a, in_place=False):
    """a + 0.0 (−0.0 becomes +0.0); in place where ``a`` is the kernel's own array and the library
    writes in place (torch unless autograd records ``a``, numpy, CuPy)."""
    if in_place and "torch" in xp.__name__ and not a.requires_grad:
        return a.add_(0.0)
    if in_place and ("numpy" in xp.__name__ or "cupy" in xp.__name__) and hasattr(a, "__iadd__"):
        a += 0.0
        return a
    return a + 0.0


def _negated(xp, a):
    """−a; in place for torch, where ``a`` is the kernel's own array at its last use (unless
    autograd records it: an in-place op would break the backward pass)."""
    if "torch" in xp.__name__ and not a.requires_grad:
        return a.neg_()
    return -a


def _softmax(xp, z):
    """softmax over the last axis: the library's fused kernel where it has one."""
    name = xp.__name__
    if "torch" in name:
        import torch
        return torch.softmax(z, -1)
    if "jax" in name:
        import jax
        return jax.nn.softmax(z, axis=-1)
    e = xp.exp(z - xp.max(z, axis=-1, keepdims=True))
    return e / xp.sum(e, axis=-1, keepdims=True)


def _logsumexp(xp, z):
    """log Σ exp over the last axis (kept), max-shifted; the library's own where it has one."""
    name = xp.__name__
    if "torch" in name:
        import torch
        return torch.logsumexp(z, -1, keepdim=True)
    if "jax" in name:
        import jax
        return jax.nn.logsumexp(z, axis=-1, keepdims=True)
    top = xp.max(z, axis=-1, keepdims=True)
    return top + xp.log(xp.sum(xp.exp(z - top), axis=-1, keepdims=True))


def _add_at(xp, e, index, value):
    """e with ``value`` added at ``index`` along the last axis (index and value are (..., 1)).
    ``e`` is the kernel's own fresh array: torch adds in place (a scatter, O(batch)), JAX and
    numpy-likes put along the axis, anything else uses where() over the whole array."""
    name = xp.__name__
    index = xp.broadcast_to(index, tuple(e.shape[:-1]) + (1,))  # a sample shared by a batch
    value = value + 0.0  # e holds no −0.0 (_full) and value none: neither does their sum
    if "jax" in name:
        import jax.numpy as jnp
        value = jnp.broadcast_to(jnp.asarray(value, dtype=e.dtype), index.shape)
        return jnp.put_along_axis(e, index, jnp.take_along_axis(e, index, axis=-1) + value, axis=-1, inplace=False)
    value = xp.broadcast_to(xp.asarray(value, dtype=e.dtype, device=device(e)), tuple(index.shape))
    if "torch" in name:  # out of place where autograd records e
        return e.scatter_add(-1, index, value) if e.requires_grad else e.scatter_add_(-1, index, value)
    if hasattr(xp, "put_along_axis") or "numpy" in name or "cupy" in name:
        import importlib
        library = importlib.import_module("cupy" if "cupy" in name else "numpy")
        library.put_along_axis(e, index, library.take_along_axis(e, index, axis=-1) + value, axis=-1)
        return e
    hit = xp.arange(e.shape[-1], device=device(e)) == index
    return xp.where(hit, e + value, e)


def _put_at(xp, e, index, value):
    """e with ``value`` at ``index`` along the last axis (index and value are (..., 1)); ``e`` is the
    kernel's own fresh array: torch writes in place (unless autograd records e), JAX and
    numpy-likes put along the axis, anything else uses where() over the whole array."""
    name = xp.__name__
    index = xp.broadcast_to(index, tuple(e.shape[:-1]) + (1,))
    value = value + 0.0  # no −0.0 (see _full)
    if "jax" in name:
        import jax.numpy as jnp
        value = jnp.broadcast_to(jnp.asarray(value, dtype=e.dtype), index.shape)
        return jnp.put_along_axis(e, index, value, axis=-1, inplace=False)
    value = xp.broadcast_to(xp.asarray(value, dtype=e.dtype, device=device(e)), tuple(index.shape))
    if "torch" in name:
        return e.scatter(-1, index, value) if e.requires_grad else e.scatter_(-1, index, value)
    if hasattr(xp, "put_along_axis") or "numpy" in name or "cupy" in name:
        import importlib
        library = importlib.import_module("cupy" if "cupy" in name else "numpy")
        library.put_along_axis(e, index, value, axis=-1)
        return e
    hit = xp.arange(e.shape[-1], device=device(e)) == index
    return xp.where(hit, value, e)


def _sum_except(xp, values, total, index):
    """Σ over the last axis without the entry at ``index``, (..., 1): total − values[index], and
    where that entry holds more than 1 − 1e-3 of the total the other entries added up themselves."""
    others = total - xp.take_along_axis(values, index, axis=-1)
    hit = xp.arange(values.shape[-1], device=device(values)) == index
    exact = xp.sum(xp.where(hit, xp.zeros_like(values), values), axis=-1, keepdims=True)
    return xp.where(others < 1e-3 * total, exact, others)


def _select(xp, need, then, then_args, otherwise, otherwise_args):
    """then(*then_args) where ``need`` holds and otherwise(*otherwise_args) elsewhere (both are
    elementwise in their arguments), as a new array of the arguments' floating dtype.  numpy,
    torch and CuPy compute each piece only at the elements that take it (a saddle-point form
    costs several times the form as derived), or one piece alone where every element takes it;
    JAX, whose shapes may not depend on values under jit, and other libraries compute both
    everywhere and pick."""
    name = xp.__name__
    if "jax" in name or not ("numpy" in name or "torch" in name or "cupy" in name):  # (jax.numpy)
        return xp.where(need, then(*then_args), otherwise(*otherwise_args))
    arrays = [a for a in (need, *then_args, *otherwise_args) if hasattr(a, "shape")]
    shape = _broadcast_shapes(*(tuple(a.shape) for a in arrays))
    floats = [a.dtype for a in arrays if xp.isdtype(a.dtype, "real floating")]
    dtype = xp.result_type(*floats) if floats else xp.float64
    where = device(need)

    def full(a):
        return xp.broadcast_to(xp.astype(xp.asarray(a, device=where), dtype, copy=False), shape)

    some = bool(xp.any(need))
    if not some or bool(xp.all(need)):
        args = then_args if some else otherwise_args
        out = (then if some else otherwise)(*args)
        if hasattr(out, "shape") and tuple(out.shape) == shape and out.dtype == dtype and not any(a is out for a in args):
            return out
        return xp.asarray(full(out), copy=True)
    need = xp.broadcast_to(need, shape)
    out = xp.empty(shape, dtype=dtype, device=where)
    out[need] = then(*(full(a)[need] for a in then_args))
    need = ~need
    out[need] = otherwise(*(full(a)[need] for a in otherwise_args))
    return out


def dense(block):
    """The (..., K, K) matrix diag(d) + c·u·uᵀ of a structured block (K² memory: for small K)."""
    d, c, u = block["diagonal"], block["scale"], block["vector"]
    xp = _namespace(d)
    eye = xp.eye(d.shape[-1], dtype=d.dtype, device=device(d))
    return c[..., None, None] * u[..., :, None] * u[..., None, :] + eye * d[..., None, :]


def _at_ordering(xp, values, order):
    """The entries of ``values`` (..., K) at the categories of the ordering ``order``: (..., k)."""
    shape = _broadcast_shapes(tuple(values.shape)[:-1], tuple(order.shape)[:-1])
    return xp.take_along_axis(xp.broadcast_to(values, shape + tuple(values.shape)[-1:]),
                              xp.broadcast_to(order, shape + tuple(order.shape)[-1:]), axis=-1)


def _cumulative_logsumexp(xp, a):
    """log Σ_{l≤r} e^{a_l} along the last axis: the library's own where it has one (torch, JAX),
    numpy's logaddexp.accumulate, else a cumulative sum shifted by the row max."""
    name = xp.__name__
    if "torch" in name:
        import torch
        return torch.logcumsumexp(a, dim=-1)
    if "jax" in name:
        import jax
        return jax.lax.cumlogsumexp(a, axis=a.ndim - 1)
    if "numpy" in name or "cupy" in name:
        import importlib
        return importlib.import_module("cupy" if "cupy" in name else "numpy").logaddexp.accumulate(a, axis=-1)
    top = xp.max(a, axis=-1, keepdims=True)
    top = xp.where(xp.isfinite(top), top, xp.zeros_like(top))
    return xp.log(xp.cumulative_sum(xp.exp(a - top), axis=-1)) + top


def _put_along(xp, e, index, value):
    """``e`` (the kernel's own fresh array) with ``value`` put at ``index`` along the last axis
    (index and value of one shape (..., k), distinct indices per row)."""
    name = xp.__name__
    if "torch" in name:
        return e.scatter(-1, index, value) if e.requires_grad or value.requires_grad else e.scatter_(-1, index, value)
    if "jax" in name:
        import jax.numpy as jnp
        return jnp.put_along_axis(e, index, value, axis=-1, inplace=False)
    if "numpy" in name or "cupy" in name:
        import importlib
        importlib.import_module("cupy" if "cupy" in name else "numpy").put_along_axis(e, index, value, axis=-1)
        return e
    hit = xp.arange(e.shape[-1], device=device(e)) == index[..., None]  # (..., k, K): other libraries only
    return xp.where(xp.any(hit, axis=-2), xp.sum(xp.where(hit, value[..., None], xp.zeros_like(value[..., None])), axis=-2), e)


def _remaining_logsumexp(xp, values, order):
    """Λ (..., k + 1): the log-sum-exp over the categories not yet placed at each step of the
    ordering, and last over those never placed (−inf for a full permutation); see the numpy
    helper of the same name."""
    shape = _broadcast_shapes(tuple(values.shape)[:-1], tuple(order.shape)[:-1])
    values = xp.broadcast_to(values, shape + tuple(values.shape)[-1:])
    order = xp.broadcast_to(order, shape + tuple(order.shape)[-1:])
    placed = xp.take_along_axis(values, order, axis=-1)
    taken = _put_along(xp, xp.zeros_like(values), order, xp.ones_like(placed)) > 0
    rest = xp.where(taken, xp.full_like(values, -float("inf")), values)
    top = xp.max(rest, axis=-1, keepdims=True)
    top = xp.where(xp.isfinite(top), top, xp.zeros_like(top))
    total = xp.sum(xp.exp(rest - top), axis=-1, keepdims=True)
    left = total > 0  # a full permutation leaves nothing: −inf, without log(0)'s warning
    never = xp.where(left, xp.log(xp.where(left, total, xp.ones_like(total))) + top, xp.full_like(total, -float("inf")))
    backwards = xp.concat([never, xp.flip(placed, axis=-1)], axis=-1)
    return xp.flip(_cumulative_logsumexp(xp, backwards), axis=-1)


def _remaining_steps(xp, remaining):
    """Λ_0, …, Λ_{k−1}: the log-sum-exp at each step of the ordering."""
    return remaining[..., :-1]


def _remaining_score(xp, values, order, remaining):
    """Σ_{r<k} (δ(j, order_r) − softmax over the categories remaining at step r, at j), (..., K);
    see the numpy helper of the same name."""
    shape = _broadcast_shapes(tuple(values.shape)[:-1], tuple(order.shape)[:-1], tuple(remaining.shape)[:-1])
    values = xp.broadcast_to(values, shape + tuple(values.shape)[-1:])
    order = xp.broadcast_to(order, shape + tuple(order.shape)[-1:])
    steps = remaining[..., :-1]
    cumulative = _cumulative_logsumexp(xp, -steps)
    out = -xp.exp(values + cumulative[..., -1:])
    placed = xp.take_along_axis(values, order, axis=-1)
    before = xp.concat([xp.full_like(cumulative[..., :1], -float("inf")), cumulative[..., :-1]], axis=-1)
    at = xp.exp(remaining[..., 1:] - steps) - xp.exp(placed + before)
    return _put_along(xp, out, order, xp.broadcast_to(at, tuple(order.shape)))


def _remaining_log_softmax(xp, values, order, remaining):
    """log of each step's softmax at the category placed, (..., k): −softplus(Λ_{r+1} − v_{x_r});
    see the numpy helper of the same name."""
    t = remaining[..., 1:] - _at_ordering(xp, values, order)
    return -(xp.maximum(t, xp.zeros_like(t)) + xp.log1p(xp.exp(-xp.abs(t))))


def _block_layout(xp, values, sizes, order):
    """The category axis as a padded (..., B, max n) array (−inf past a block's end), and x_b's
    position in it: segment reductions as reductions along the last axis, for any library."""
    import numpy as np

    counts = np.asarray(sizes.cpu() if hasattr(sizes, "cpu") else sizes).astype(np.int64)  # the layout is static: host
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    width = int(counts.max())
    columns = np.arange(width)
    inside = columns < counts[:, None]
    index = xp.asarray(np.where(inside, starts[:, None] + columns, 0).reshape(-1), device=device(values))
    shape = _broadcast_shapes(tuple(values.shape)[:-1], tuple(order.shape)[:-1])
    values = xp.broadcast_to(values, shape + tuple(values.shape)[-1:])
    padded = xp.reshape(xp.take(values, index, axis=-1), shape + (len(counts), width))
    mask = xp.asarray(inside, device=device(values))
    padded = xp.where(mask, padded, xp.full_like(padded, -float("inf")))
    at = xp.broadcast_to(order, shape + tuple(order.shape)[-1:])[..., None]
    return padded, at, counts, starts


def _block_shifted(xp, padded, at):
    """exp(v − each block's max) (..., B, n), x_b's term and the other terms' sum (..., B)."""
    top = xp.max(padded, axis=-1, keepdims=True)
    shifted = xp.exp(padded - top)
    hit = xp.arange(padded.shape[-1], device=device(padded)) == at
    chosen = xp.sum(xp.where(hit, shifted, xp.zeros_like(shifted)), axis=-1)
    others = xp.sum(xp.where(hit, xp.zeros_like(shifted), shifted), axis=-1)
    return top[..., 0], shifted, chosen, others


def _block_log_softmax(xp, values, sizes, order):
    """log softmax of each block at its x_b, (..., B); see the numpy helper of the same name."""
    padded, at, _, _ = _block_layout(xp, values, sizes, order)
    top, shifted, chosen, others = _block_shifted(xp, padded, at)
    big = chosen >= others
    near = -xp.log1p(others / xp.where(big, chosen, xp.ones_like(chosen)))
    value = xp.take_along_axis(padded, at, axis=-1)[..., 0]
    far = value - top - xp.log(chosen + others)
    return xp.where(big, near, far)


def _block_score(xp, values, sizes, order):
    """δ(j, o_b + x_b) − softmax of j's block at j, (..., K); see the numpy helper of the same name."""
    import numpy as np

    padded, at, counts, starts = _block_layout(xp, values, sizes, order)
    _, shifted, chosen, others = _block_shifted(xp, padded, at)
    total = (chosen + others)[..., None]
    hit = xp.arange(padded.shape[-1], device=device(padded)) == at
    score = xp.where(hit, (others[..., None] / total), -shifted / total)
    flat = xp.reshape(score, tuple(score.shape)[:-2] + (score.shape[-2] * score.shape[-1],))
    keep = np.flatnonzero((np.arange(score.shape[-1]) < counts[:, None]).reshape(-1))  # back to the flat axis
    return xp.take(flat, xp.asarray(keep, device=device(flat)), axis=-1)
