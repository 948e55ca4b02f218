"""numpy-only helpers of the numpy kernels: their plumbing (dtype, outputs, row reductions,
scatters at the sample) and the numpy forms of special functions that are faster than the
array-API ones of :mod:`~symelig.emit.runtime.special` (in-place updates, and a piece computed
only if some element needs it: Python branching on values, which ``jax.jit`` could not trace).
Each was kept for a measured reason: the shared form's time over this one's, 10⁶ float64 values,
both timed in one run: _sigmoid 1.8; _fms (frexp/ldexp, no rescaling) 1.5; _bd0 2.7 where every
element takes the series, 1.1 mixed; _stirlerr 2.7 where every z > 15; _factorial_remainder 2.5
where every count > 15, 1.1 mixed; _with_ndim 1.2 on a whole kernel (normal scale, a batch of
64).  _softplus is numpy's one-pass logaddexp.  _log_ndtr_difference and _normal_pdf_over_mass
compute in float64 and round once, as scipy's special functions and the numba helpers do for
float32 (the shared form in float32 arithmetic differed from the numba kernels by 1e-4 in a
truncated normal's Fisher information).
"""
from __future__ import annotations

import numpy as np


def _special():
    """scipy.special, imported when first needed: a module whose kernels use none imports
    without scipy."""
    from scipy import special
    return special


def _sigmoid(z):
    """1 / (1 + exp(−z)) in four in-place passes, accurate in both tails: as z → −∞ the result
    keeps a relative error of a few ulp, and where exp(−z) overflows it is the limit 0."""
    e = np.asarray(np.negative(z))
    with np.errstate(over="ignore"):
        np.exp(e, out=e)
    e += 1
    return np.reciprocal(e, out=e)


def _softplus(z):
    """log(1 + exp(z)), stable for any z: numpy's logaddexp(0, z), one pass."""
    return np.logaddexp(0, z)


def _bd0(a, m, d):
    """Loader's deviance a·log(a/m) + m − a ≥ 0, with d = a − m computed without cancellation.
    Where |d| < 0.1(a + m) the two terms cancel: there the series in v = d/(a + m), d·v +
    2a·v(v²/3 + v⁴/5 + …), nine terms (v² < 0.01: exact to 1e-19); elsewhere a·log(a/m) − d, with
    log(a/m) as log a − log m where a/m would leave the floats; m at a = 0 (0·log 0 = 0), +inf
    at m = 0 < a.  Each branch is taken at inputs clipped to its own region, and only if some
    element needs it."""
    near = np.abs(d) < 0.1 * (a + m)
    out = None
    if not np.all(near):
        xf = np.where(near, 2.0, a)
        mf = np.where(near, 1.0, m)
        both = (xf > 0) & (mf > 0)
        logs = np.log(np.where(both, xf, 1.0)) - np.log(np.where(both, mf, 1.0))
        inside = both & (np.abs(logs) < 700)
        out = np.log(np.where(inside, xf, 1.0) / np.where(inside, mf, 1.0))
        np.copyto(out, logs, where=~inside)
        out *= xf
        out -= d
        np.copyto(out, np.inf, where=(mf == 0) & (xf > 0))
    if np.any(near):
        xs = np.where(near, a, 1.0)
        ds = np.where(near, d, 0.0)
        v = ds / (2 * xs - ds)
        w = v * v
        series = w * (1 / 3 + w * (1 / 5 + w * (1 / 7 + w * (1 / 9 + w * (1 / 11 + w * (1 / 13 + w * (1 / 15 + w * (1 / 17 + w / 19))))))))
        series *= 2 * xs
        series += ds
        series *= v
        if out is None:
            return series
        np.copyto(out, series, where=near)
    return out


def _stirlerr(z):
    """Stirling's remainder log Γ(z) − [(z − ½) log z − z + ½ log 2π]: above z = 15 its series
    1/(12z) − 1/(360z³) + … (six terms, exact to 4e-18 there; the difference would cancel from
    terms of 40 to 0.006), below it the difference itself; each only if some element needs it."""
    far = z > 15
    out = None
    if not np.all(far):
        zn = np.where(far, 1.0, z)
        out = _special().gammaln(zn) - (zn - 0.5) * np.log(zn) + zn - 0.9189385332046728
    if np.any(far):
        r = np.where(far, z, 15.0)
        np.reciprocal(r, out=r)
        q = r * r
        series = 1 / 12 - q * (1 / 360 - q * (1 / 1260 - q * (1 / 1680 - q * (1 / 1188 - q * (691 / 360360)))))
        series *= r
        if out is None:
            return series
        np.copyto(out, series, where=far)
    return out


def _factorial_remainder(a):
    """log a! − (a log a − a) = stirlerr(a) + ½ log(2πa) for a count a ≥ 0, 0 at a = 0: above 15
    ½ log(2πa) and stirlerr's series (see _stirlerr), below the difference itself; each only
    if some element needs it."""
    far = a > 15
    out = None
    if not np.all(far):
        an = np.where(far, 1.0, a)
        out = _special().gammaln(an + 1) + an
        out -= an * np.log(np.where(an > 0, an, 1.0))
    if np.any(far):
        r = np.where(far, a, 15.0)
        half = np.log(r)
        half += 1.8378770664093453
        half *= 0.5
        np.reciprocal(r, out=r)
        q = r * r
        series = 1 / 12 - q * (1 / 360 - q * (1 / 1260 - q * (1 / 1680 - q * (1 / 1188 - q * (691 / 360360)))))
        series *= r
        series += half
        if out is None:
            return series
        np.copyto(out, series, where=far)
    return out


def _fms(a, b, c):
    """a − b·c with the product exact: b·c = p + e (Dekker's two-product on the mantissas, so
    that nothing overflows, e scaled back exactly), a − p exact where a ≈ p (Sterbenz), then − e."""
    p = b * c
    mb, eb = np.frexp(b)
    mc, ec = np.frexp(c)
    split = 134217729.0 if p.dtype == np.float64 else 4097.0  # 2^⌈t/2⌉ + 1, t the mantissa bits
    t = split * mb
    hb = t - (t - mb)
    lb = mb - hb
    t = split * mc
    hc = t - (t - mc)
    lc = mc - hc
    pm = mb * mc
    e = ((hb * hc - pm) + hb * lc + lb * hc) + lb * lc  # mb·mc − pm, exactly
    out = a - p
    out -= np.ldexp(e, eb + ec)
    return out


def _log_ndtr_difference(a, b, w):
    """log(Φ(b) − Φ(a)) for a ≤ b, w = b − a (runtime.special._normal_mass), in float64, rounded
    once to the inputs' floating type."""
    dtype = np.result_type(a, b, w)
    log_mass = _normal_mass(np.asarray(a, np.float64), np.asarray(b, np.float64), np.asarray(w, np.float64))[0]
    return np.asarray(log_mass).astype(dtype, copy=False)


def _normal_pdf_over_mass(a, b, w):
    """φ(a)/(Φ(b) − Φ(a)), w = b − a, either order (runtime.special._normal_mass), in float64,
    rounded once to the inputs' floating type."""
    dtype = np.result_type(a, b, w)
    a, b, w = np.asarray(a, np.float64), np.asarray(b, np.float64), np.asarray(w, np.float64)
    flip = w < 0
    _, at_lower, at_upper = _normal_mass(np.where(flip, b, a), np.where(flip, a, b), np.abs(w))
    return np.asarray(np.where(flip, -at_upper, at_lower)).astype(dtype, copy=False)


def _with_ndim(a, ndim):
    """``a`` with leading axes of length 1 added up to ``ndim`` axes (a view): the array's own
    reshape, 1 µs a call cheaper than np.reshape (the array API's form), on every argument of
    every call."""
    return a.reshape((1,) * (ndim - a.ndim) + a.shape)


def _select(need, then, then_args, otherwise, otherwise_args):
    """then(*then_args) where ``need`` holds and otherwise(*otherwise_args) elsewhere, each
    computed only at the elements that take it (both are elementwise in their arguments):
    np.where would compute both everywhere, and a saddle-point form costs several times the
    form as derived.  A new array of the arguments' floating dtype."""
    args = then_args + otherwise_args
    shape = np.broadcast_shapes(np.shape(need), *map(np.shape, args))
    dtype = np.result_type(*args, 0.0)
    if not np.any(need) or np.all(need):
        function, args = (then, then_args) if np.any(need) else (otherwise, otherwise_args)
        out = function(*args)
        if np.shape(out) == shape and getattr(out, "dtype", None) == dtype and not any(map(lambda a: a is out, args)):
            return out
        return np.array(np.broadcast_to(out, shape), dtype)
    need = np.broadcast_to(need, shape)
    out = np.empty(shape, dtype)
    out[need] = then(*map(lambda a: np.broadcast_to(a, shape)[need], then_args))
    need = ~need
    out[need] = otherwise(*map(lambda a: np.broadcast_to(a, shape)[need], otherwise_args))
    return out


def _into(buffer, other):
    """``buffer`` as the out= of ``buffer op other`` when ``other`` broadcasts into it, else None
    (the ufunc then returns a new array of the broadcast shape)."""
    return buffer if np.broadcast_shapes(buffer.shape, np.shape(other)) == buffer.shape else None


def _float_dtype(*arrays):
    """The floating dtype of the parameters: float32 stays float32, integers become float64."""
    dtype = np.result_type(*arrays)
    return dtype if dtype.kind == "f" else np.dtype(np.float64)


def _output(value, shape, dtype, copy):
    """``value`` as an array of ``shape`` and ``dtype`` that the caller owns; ``value`` itself
    when it is already one (a freshly computed array of that shape) and ``copy`` is false.

    Adding +0.0 turns −0.0 into +0.0 and leaves every other value as it is (IEEE round to
    nearest): a zero, masked or underflowed, is returned as +0.0, whatever sign the product
    that made it had (−π·c with π = 0)."""
    if not copy and isinstance(value, np.ndarray) and value.shape == shape and value.dtype == dtype:
        return np.add(value, 0.0, out=value)
    out = np.empty(shape, dtype)
    out[...] = value  # (assignment also drops leading axes of length 1, which a ufunc's out= refuses)
    return np.add(out, 0.0, out=out)


def _positive_zero(value):
    """``value`` + 0.0: −0.0 becomes +0.0, every other value stays (see ``_output``)."""
    return value + 0.0


def _row_sum(a):
    """Σ over the last axis, kept as an axis of length 1: for a contiguous float array a product
    with a vector of ones, which BLAS runs several times faster than np.sum's per-row loop (and
    as accurately, blocked); strided, broadcast or integer arrays go to np.sum, which numpy's own
    matmul would add up one element at a time."""
    a = np.asarray(a)
    if a.flags.c_contiguous and a.dtype in (np.float32, np.float64) and a.shape[-1] > 0:
        return np.matmul(a, np.ones(a.shape[-1], a.dtype))[..., None]
    return np.sum(a, axis=-1, keepdims=True)


def _row_max(a):
    """max over the last axis, kept as an axis of length 1.  np.max pays a per-row cost on short
    rows; with K ≤ 64 the maximum of two overlapping halves (max is idempotent) is taken
    ⌈log2 K⌉ times instead: whole-array ufunc calls, 2–3× faster there."""
    k = a.shape[-1]
    if k > 64 or k == 0:  # (an empty axis: np.max's own error)
        return np.max(a, axis=-1, keepdims=True)
    if k == 1:
        return a
    h = (k + 1) // 2
    return _row_max(np.maximum(a[..., :h], a[..., k - h:]))


def _sum_except(values, total, index):
    """Σ over the last axis without the entry at ``index``, kept as an axis of length 1: total −
    values[index], except in rows where that entry holds more than 1 − 1e-3 of the total and the
    difference cancels; there (those rows only) the other entries are added up themselves."""
    others = total - np.take_along_axis(values, index, axis=-1)
    close = others < 1e-3 * total
    if not np.any(close):
        return others
    shape = np.broadcast_shapes(values.shape[:-1], index.shape[:-1], np.shape(total)[:-1])
    rows = np.broadcast_to(close, shape + (1,))[..., 0]
    full = np.broadcast_to(values, shape + values.shape[-1:])[rows]
    at = np.broadcast_to(index, shape + (1,))[rows]
    others = np.array(np.broadcast_to(others, shape + (1,)))
    others[rows] = np.sum(np.where(np.arange(full.shape[-1]) == at, 0, full), axis=-1, keepdims=True)
    return others


def _put_at(out, index, value):
    """out[..., index] = value along the last axis, in place; index and value are (..., 1)."""
    value = np.add(value, 0.0)  # no −0.0 (see _output)
    np.put_along_axis(out, index, np.broadcast_to(value, np.broadcast_shapes(np.shape(value), index.shape)), axis=-1)


def _add_at(out, index, value):
    """out[..., index] += value along the last axis, in place; index and value are (..., 1)."""
    # out holds no −0.0 (_output) and value none: their sum is not −0.0 either
    np.put_along_axis(out, index, np.take_along_axis(out, index, axis=-1) + np.add(value, 0.0), axis=-1)


def dense(block):
    """The (..., K, K) matrix diag(d) + c·u·uᵀ of a structured block (K² memory: for small K)."""
    d, c, u = block["diagonal"], block["scale"], block["vector"]
    out = c[..., None, None] * u[..., :, None] * u[..., None, :]
    out[..., range(d.shape[-1]), range(d.shape[-1])] += d
    return out



def _cumulative_logsumexp(a):
    """log Σ_{l≤r} e^{a_l} along the last axis (a forward cumulative log-sum-exp), in ``a``'s dtype.
    As exp, cumsum and log in float64 shifted by the row max, where that is exact: a sum of
    positive terms has no cancellation, and only a term below the float64 normal range would
    lose digits; the prefix maxima stay within 650 of the row max there (then every prefix's
    largest term, and so the prefix sum, is a normal float64).  The smallest prefix max that is
    not −inf (a term −inf adds exactly 0) is the row's first finite entry.  Rows that leave it
    take np.logaddexp.accumulate (about 10× slower)."""
    top = np.max(a, axis=-1, keepdims=True)
    finite = np.isfinite(top)
    shift = np.where(finite, top, 0).astype(np.float64)
    with np.errstate(divide="ignore"):  # a prefix of −inf only (nothing left): log 0 = −inf
        out = np.log(np.cumsum(np.exp(a - shift), axis=-1)) + shift
    first = np.take_along_axis(a, np.argmax(np.isfinite(a), axis=-1)[..., None], axis=-1)
    wide = (finite & (first < top - 650))[..., 0]
    if np.any(wide):
        out[wide] = np.logaddexp.accumulate(a[wide].astype(np.float64), axis=-1)
    return out.astype(a.dtype, copy=False)


def _remaining_logsumexp(values, order):
    """Λ (..., k + 1) of an ordering ``order`` (..., k) of categories of ``values`` (..., K): Λ_r =
    log Σ over the categories not among order_0, …, order_{r−1}, so Λ_0 is the log-sum-exp of the
    row and Λ_k that of the categories never placed (−inf after a full permutation).  From the end:
    Λ_k, then the placed ones in reverse order (a reverse cumulative log-sum-exp, O(K) per row,
    no K × k array; the difference Σ_i − Σ_placed would cancel)."""
    shape = np.broadcast_shapes(values.shape[:-1], order.shape[:-1])
    order = np.broadcast_to(order, shape + order.shape[-1:])
    placed = np.take_along_axis(values, order, axis=-1)
    if order.shape[-1] == values.shape[-1]:  # a full permutation: nothing is left after it
        never = np.full(shape + (1,), -np.inf, placed.dtype)
        return _cumulative_logsumexp(np.concatenate([never, placed[..., ::-1]], axis=-1))[..., ::-1]
    rest = np.array(np.broadcast_to(values, shape + values.shape[-1:]))
    np.put_along_axis(rest, order, -np.inf, axis=-1)
    top = np.max(rest, axis=-1, keepdims=True)
    finite = np.isfinite(top)
    np.subtract(rest, np.where(finite, top, 0), out=rest)
    np.exp(rest, out=rest)
    with np.errstate(divide="ignore"):  # a full permutation leaves nothing: log 0 = −inf
        never = np.where(finite, top, -np.inf) + np.log(np.sum(rest, axis=-1, keepdims=True))
    backwards = np.concatenate([never, placed[..., ::-1]], axis=-1)
    return _cumulative_logsumexp(backwards)[..., ::-1]


def _remaining_steps(remaining):
    """Λ_0, …, Λ_{k−1}: the log-sum-exp at each step of the ordering (without the never placed)."""
    return remaining[..., :-1]


def _remaining_score(values, order, remaining):
    """Σ_{r<k} (δ(j, order_r) − softmax of ``values`` over the categories remaining at step r, at j),
    (..., K), from Λ = _remaining_logsumexp(values, order).  With C_r = log Σ_{r'≤r} e^{−Λ_r'}: a
    category never placed gets −e^{v_j + C_{k−1}}; the one placed at step ρ gets e^{Λ_{ρ+1} − Λ_ρ} −
    e^{v_j + C_{ρ−1}}, where e^{Λ_{ρ+1} − Λ_ρ} is 1 − its softmax at its own step computed without
    the cancellation of 1 − softmax (its softmax is 1 − 1e-300 when it dominates)."""
    shape = np.broadcast_shapes(values.shape[:-1], order.shape[:-1], remaining.shape[:-1])
    order = np.broadcast_to(order, shape + order.shape[-1:])
    steps = remaining[..., :-1]
    cumulative = _cumulative_logsumexp(-steps)
    out = np.exp(values + cumulative[..., -1:])
    np.negative(out, out=out)
    out = out if out.shape == shape + values.shape[-1:] else np.array(np.broadcast_to(out, shape + values.shape[-1:]))
    placed = np.take_along_axis(values, order, axis=-1)
    before = np.concatenate([np.full(cumulative.shape[:-1] + (1,), -np.inf, cumulative.dtype), cumulative[..., :-1]], axis=-1)
    at = np.exp(remaining[..., 1:] - steps)
    at -= np.exp(placed + before)
    np.put_along_axis(out, order, np.broadcast_to(at, order.shape), axis=-1)
    return out


def _at_ordering(values, order):
    """The entries of ``values`` (..., K) at the categories of the ordering ``order``: (..., k)."""
    return np.take_along_axis(values, order, axis=-1)


def _remaining_log_softmax(values, order, remaining):
    """log of each step's softmax at the category placed, (..., k): v_{x_r} − Λ_r written as
    −softplus(Λ_{r+1} − v_{x_r}) (Λ_r = logaddexp(v_{x_r}, Λ_{r+1})), exact where x_r holds almost
    all the remaining mass and v_{x_r} − Λ_r would cancel to 0."""
    placed = np.take_along_axis(values, order, axis=-1)
    out = np.subtract(remaining[..., 1:], placed)
    np.logaddexp(0, out, out=out)
    np.negative(out, out=out)
    return out


def _blocks(values, sizes, order):
    """The pieces shared by the block kernels, along the category axis split into blocks of
    ``sizes``: (starts, each block's max (..., B), exp(v − its block's max) (..., K), the entry of
    x_b's category, the other categories' sum, both shifted (..., B)).  Segment reductions
    (np.maximum.reduceat / np.add.reduceat): a fixed number of whole-array calls whatever B."""
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
    shape = np.broadcast_shapes(values.shape[:-1], order.shape[:-1])
    values = np.broadcast_to(values, shape + values.shape[-1:])
    top = np.maximum.reduceat(values, starts, axis=-1)
    shifted = values - np.repeat(top, sizes, axis=-1)
    np.exp(shifted, out=shifted)
    at = np.broadcast_to(order, shape + order.shape[-1:]) + starts
    chosen = np.take_along_axis(shifted, at, axis=-1)
    others = shifted.copy()  # the other categories added up themselves: total − chosen cancels where x_b dominates
    np.put_along_axis(others, at, 0, axis=-1)
    return starts, top, shifted, at, chosen, np.add.reduceat(others, starts, axis=-1)


def _block_log_softmax(values, sizes, order):
    """log softmax of each block at its x_b, (..., B): −log1p(others/chosen) where x_b's term is the
    larger (exact when it holds almost all its block's mass), else (v_x − max) − log Σ."""
    _, top, shifted, at, chosen, others = _blocks(values, sizes, order)
    with np.errstate(divide="ignore"):
        near = -np.log1p(others / np.where(chosen >= others, chosen, 1))
        far = np.take_along_axis(np.broadcast_to(values, shifted.shape), at, axis=-1) - top - np.log(chosen + others)
    return np.where(chosen >= others, near, far)


def _block_score(values, sizes, order):
    """δ(j, o_b + x_b) − softmax of j's block at j, (..., K): −softmax everywhere, and at x_b's
    category 1 − softmax written as the other categories' share (no 1 − 1 cancellation)."""
    _, _, shifted, at, chosen, others = _blocks(values, sizes, order)
    total = chosen + others
    out = shifted
    np.divide(out, -np.repeat(total, sizes, axis=-1), out=out)
    np.put_along_axis(out, at, others / total, axis=-1)
    return out
