"""The same derived kernels for any array library: code written against the array API namespace
of its inputs (array-api-compat's ``array_namespace``), so numpy, PyTorch, JAX and CuPy arrays
go in and arrays of the same library, device and dtype come out — no conversion to numpy.

Differences from the numpy emitter, all for the array API's sake: no ``out=`` (JAX arrays are
immutable, and torch's autograd dislikes in-place writes), the δ_jx term added as
``where(arange(K) == x, c, 0)`` instead of a scatter, no Python branching on array values (so
``jax.jit`` and ``jax.vmap`` trace it), and special functions from the input's own library
(torch.special, jax.scipy.special, cupyx.scipy.special, scipy.special).  ``backend`` pins the
namespace for a module specialised to one library.
"""
from __future__ import annotations

from sympy import cse, numbered_symbols

from . import assemble, second_order
from .kernel import Kernel, eligibility_body, log_prob_body
from .numpy import ArrayPrinter

BACKENDS = ("array-api", "torch", "jax", "numpy-xp")

_HELPERS = {
    "_namespace": '''def _namespace(*arrays):
    """The array API namespace of the array arguments (numpy for plain numbers and lists); where
    numpy arrays are mixed with one other library's, that library's (the numpy ones move to it)."""
    arrays = [a for a in arrays if hasattr(a, "shape") and hasattr(a, "dtype")]
    if not arrays:
        import numpy
        return array_namespace(numpy.asarray(0.0))
    foreign = [a for a in arrays if type(a).__module__.split(".")[0] != "numpy"]
    return array_namespace(*(foreign or arrays))''',
    "_asarray": '''def _asarray(xp, a, device):
    """``a`` itself when it is already an array of ``xp`` (no copy, autograd intact), else
    converted onto ``device``."""
    if hasattr(a, "shape") and hasattr(a, "dtype"):
        try:
            if array_namespace(a) is xp:
                return a
        except TypeError:
            pass
    return xp.asarray(a, device=device)''',
    "_special": '''def _special(xp):
    """The special functions (gammaln, digamma, i0e, i1e) of the namespace's own library."""
    name = xp.__name__
    if "torch" in name:
        import torch
        return torch.special
    if "jax" in name:
        import jax.scipy.special
        return jax.scipy.special
    if "cupy" in name:
        import cupyx.scipy.special
        return cupyx.scipy.special
    from scipy import special
    return special''',
    "_device": '''def _device(*arrays):
    """The device of the first array argument (None: the library's default)."""
    for a in arrays:
        if hasattr(a, "shape") and hasattr(a, "dtype"):
            return device(a)
    return None''',
    "_float_dtype": '''def _float_dtype(xp, *arrays):
    """The floating dtype of the parameters: float32 stays float32, anything else float64."""
    dtypes = [a.dtype for a in arrays]
    if dtypes and all(xp.isdtype(t, "real floating") for t in dtypes):
        return xp.result_type(*dtypes)
    return xp.float64''',
    "_broadcast_shapes": '''def _broadcast_shapes(*shapes):
    """numpy.broadcast_shapes on plain tuples (the array API has none); static under jax.jit."""
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for axis in range(ndim):
        sizes = {s[axis - ndim + len(s)] for s in shapes if axis - ndim + len(s) >= 0} - {1}
        if len(sizes) > 1:
            raise ValueError(f"shapes {shapes} do not broadcast")
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)''',
    "_full": '''def _full(xp, value, shape, dtype, device, copy=False):
    """``value`` broadcast to ``shape`` as an array the caller owns (``value`` itself when it is
    a fresh result of that shape and ``copy`` is false)."""
    # (a Python number has no dtype; numpy would even call dtype("float64") == None true)
    if not copy and hasattr(value, "dtype") and tuple(value.shape) == tuple(shape) and value.dtype == dtype:
        return value
    value = xp.astype(xp.asarray(value, device=device), dtype, copy=False)
    return xp.asarray(xp.broadcast_to(value, tuple(shape)), copy=True)  # one pass: a view, then a copy''',
    "_negated": '''def _negated(xp, a):
    """−a; in place for torch, where ``a`` is the kernel's own array at its last use (unless
    autograd records it: an in-place op would break the backward pass)."""
    if "torch" in xp.__name__ and not a.requires_grad:
        return a.neg_()
    return -a''',
    "_log1mexp": '''def _log1mexp(xp, u):
    """log(1 − e^u) for u < 0: log(−expm1(u)) near 0, where 1 − e^u cancels, log1p(−e^u) below −log 2."""
    near = u > -0.6931471805599453
    return xp.where(near, xp.log(-xp.expm1(xp.where(near, u, -1.0))), xp.log1p(-xp.exp(xp.where(near, -1.0, u))))''',
    "_log1pmx": '''def _log1pmx(xp, z):
    """log(1 + z) − z: the series in s = z/(2 + z) for |z| < 1/4 (where the two cancel to −z²/2),
    the difference itself elsewhere."""
    near = xp.abs(z) < 0.25
    zs = xp.where(near, z, 0.0)
    s = zs / (2 + zs)
    s2 = s * s
    tail = s2 * (1/3 + s2 * (1/5 + s2 * (1/7 + s2 * (1/9 + s2 * (1/11 + s2 * (1/13 + s2 * (1/15 + s2 * (1/17 + s2 * (1/19 + s2 / 21)))))))))
    series = 2 * s * tail - zs * zs / (2 + zs)
    far = xp.where(near, 1.0, z)
    return xp.where(near, series, xp.log1p(far) - far)''',
    "_gamma_difference": '''def _gamma_difference(xp, n, b, d, a, shift):
    """ψ_n(a) − ψ_n(b + shift) (n = −1: log Γ), with a = b + d and shift 0 or 1: the Taylor
    series in d (plus the pole ψ_n(b) − ψ_n(b + 1) if shift is 1) where |d| ≤ 1e-3·|b| (a
    rounds towards b there), the difference itself elsewhere."""
    _sp = _special(xp)

    def f(order, u):
        return _sp.gammaln(u) if order == -1 else _sp.digamma(u) if order == 0 else _sp.polygamma(order, u)

    like = next(v for v in (b, d, a) if hasattr(v, "dtype"))
    b, d, a = (v if hasattr(v, "dtype") else xp.full_like(like, v) for v in (b, d, a))
    small = xp.abs(d) <= 1e-3 * xp.abs(b)
    bs = xp.where(small, b, xp.ones_like(b))
    ds = xp.where(small, d, xp.zeros_like(d))
    t1 = ds
    t2 = t1 * ds / 2
    t3 = t2 * ds / 3
    t4 = t3 * ds / 4
    t5 = t4 * ds / 5
    t6 = t5 * ds / 6
    series = t6 * f(n + 6, bs) + t5 * f(n + 5, bs) + t4 * f(n + 4, bs) + t3 * f(n + 3, bs) + t2 * f(n + 2, bs) + t1 * f(n + 1, bs)
    if shift:
        factorial = 1.0 if n < 2 else float(n * (n - 1)) if n < 4 else 24.0 * (5.0 if n == 5 else 1.0)
        series = series + (-1.0) ** (n + 1) * factorial / bs ** (n + 1)
    return xp.where(small, series, f(n, a) - f(n, b + shift))''',
    "_betaln": '''def _betaln(xp, a, b):
    """log B(a, b) = log Γ(s) − (log Γ(l + s) − log Γ(l)) with l = max(a, b), s = min(a, b): the
    difference by _gamma_difference, exact where l ≫ s."""
    large, small = xp.maximum(a, b), xp.minimum(a, b)
    return _special(xp).gammaln(small) - _gamma_difference(xp, -1, large, small, a + b, 0)''',
    "_bd0": '''def _bd0(xp, a, m, d):
    """Loader's deviance a·log(a/m) + m − a ≥ 0, with d = a − m computed without cancellation:
    the series in v = d/(a + m) where |d| < 0.1(a + m), a·log(a/m) − d elsewhere, m at a = 0, +inf
    at m = 0 < a (see the numpy kernels); each branch at inputs clipped to its own region."""
    near = xp.abs(d) < 0.1 * (a + m)
    xs = xp.where(near, a, 1.0)
    ds = xp.where(near, d, 0.0)
    v = ds / (2 * xs - ds)
    w = v * v
    tail = w * (1 / 3 + w * (1 / 5 + w * (1 / 7 + w * (1 / 9 + w * (1 / 11 + w * (1 / 13 + w * (1 / 15 + w * (1 / 17 + w / 19))))))))
    series = ds * v + 2 * xs * v * tail
    xf = xp.where(near, 2.0, a)
    mf = xp.where(near, 1.0, m)
    both = (xf > 0) & (mf > 0)
    logs = xp.log(xp.where(both, xf, 1.0)) - xp.log(xp.where(both, mf, 1.0))
    inside = both & (xp.abs(logs) < 700)
    ratio = xp.log(xp.where(inside, xf, 1.0) / xp.where(inside, mf, 1.0))
    far = xp.where((mf == 0) & (xf > 0), float("inf"), xf * xp.where(inside, ratio, logs) - d)
    return xp.where(near, series, far)''',
    "_factorial_remainder": '''def _factorial_remainder(xp, a):
    """log a! − (a log a − a) = stirlerr(a) + ½ log(2πa) for a count a ≥ 0, 0 at a = 0: ½ log(2πa)
    and stirlerr's series above 15, the difference itself below (see the numpy kernels)."""
    far = a > 15
    r = 1 / xp.where(far, a, 15.0)
    q = r * r
    series = r * (1 / 12 - q * (1 / 360 - q * (1 / 1260 - q * (1 / 1680 - q * (1 / 1188 - q * (691 / 360360))))))
    series = series + 0.5 * (xp.log(xp.where(far, a, 15.0)) + 1.8378770664093453)
    an = xp.where(far, 1.0, a)
    near = _special(xp).gammaln(an + 1) + an - an * xp.log(xp.where(an > 0, an, 1.0))
    return xp.where(far, series, near)''',
    "_fms": '''def _fms(xp, a, b, c):
    """a − b·c with the product exact: b·c = p + e by Dekker's two-product (factors near the top
    of the range scaled down by a power of 2 first, so that the split does not overflow), a − p
    exact where a ≈ p (Sterbenz), then − e (see the numpy kernels)."""
    p = b * c
    wide = p.dtype == xp.float64
    split, top, down = (134217729.0, 2.0**900, 2.0**-200) if wide else (4097.0, 2.0**100, 2.0**-40)
    big_b, big_c = xp.abs(b) > top, xp.abs(c) > top
    b, c = xp.where(big_b, b * down, b), xp.where(big_c, c * down, c)
    t = split * b
    hb = t - (t - b)
    lb = b - hb
    t = split * c
    hc = t - (t - c)
    lc = c - hc
    e = ((hb * hc - b * c) + hb * lc + lb * hc) + lb * lc
    e = xp.where(big_b, e / down, e)
    e = xp.where(big_c, e / down, e)
    return (a - p) - e''',
    "_stirlerr": '''def _stirlerr(xp, z):
    """Stirling's remainder log Γ(z) − [(z − ½) log z − z + ½ log 2π]: its series in 1/z above
    z = 15, the difference itself below (see the numpy kernels)."""
    far = z > 15
    r = 1 / xp.where(far, z, 15.0)
    q = r * r
    series = r * (1 / 12 - q * (1 / 360 - q * (1 / 1260 - q * (1 / 1680 - q * (1 / 1188 - q * (691 / 360360))))))
    zn = xp.where(far, 1.0, z)
    return xp.where(far, series, _special(xp).gammaln(zn) - (zn - 0.5) * xp.log(zn) + zn - 0.9189385332046728)''',
    "_with_ndim": '''def _with_ndim(xp, a, ndim):
    """``a`` with leading axes of length 1 added up to ``ndim`` axes."""
    return xp.reshape(a, (1,) * (ndim - a.ndim) + tuple(a.shape))''',
    "_xlogy": '''def _xlogy(xp, a, b):
    """a·log(b), 0 where a == 0."""
    zero = a == 0
    return xp.where(zero, 0.0, a * xp.log(xp.where(zero, 1.0, b)))''',
    "_xdivy": '''def _xdivy(xp, a, b):
    """a / b, 0 where a == 0."""
    zero = a == 0
    return xp.where(zero, 0.0, a / xp.where(zero, 1.0, b))''',
    "_sigmoid": '''def _sigmoid(xp, z):
    """1 / (1 + exp(−z)), accurate in both tails."""
    return 1 / (1 + xp.exp(-z))''',
    "_softplus": '''def _softplus(xp, z):
    """log(1 + exp(z)) = max(z, 0) + log1p(exp(−|z|)), stable for any z."""
    return (z + xp.abs(z)) / 2 + xp.log1p(xp.exp(-xp.abs(z)))''',
    "_log_softplus": '''def _log_softplus(xp, z):
    """log softplus(z); z itself below −37, where softplus(z) = exp(z) to machine precision."""
    clipped = xp.where(z < -37, -37.0, z)
    return xp.where(z < -37, z, xp.log(_softplus(xp, clipped)))''',
    "_log_softplus_curvature": '''def _log_softplus_curvature(xp, z):
    """(sigmoid(−z)·softplus(z) − sigmoid(z))/softplus(z)² (→ −1/2 as z → −∞): where z ≤ 0, with
    t = e^z, q(t)·(t/log1p(t))²/(1 + t), q(t) = (log1p(t) − t)/t² by its series where t < 1/16
    and directly above; where z > 0, and nothing cancels, (sigmoid(−z) − sigmoid(z)/softplus(z))/softplus(z)
    (see the numpy kernels)."""
    zn = xp.where(z > 0, 0.0, xp.where(z < -80, -80.0, z))
    t = xp.exp(zn)
    small = t < 0.0625
    ts = xp.where(small, t, 0.0)
    q = (((((((((((((1 / 15) * ts - 1 / 14) * ts + 1 / 13) * ts - 1 / 12) * ts + 1 / 11) * ts - 1 / 10) * ts + 1 / 9) * ts - 1 / 8) * ts + 1 / 7) * ts - 1 / 6) * ts + 1 / 5) * ts - 1 / 4) * ts + 1 / 3) * ts - 1 / 2  # Horner's rule
    tl = xp.where(small, 1.0, t)
    q = xp.where(small, q, (xp.log1p(tl) - tl) / (tl * tl))
    ratio = t / xp.log1p(t)
    below = q * ratio * ratio / (1 + t)
    zp = xp.where(z > 0, z, 0.0)
    s = _softplus(xp, zp)
    above = (_sigmoid(xp, -zp) - _sigmoid(xp, zp) / s) / s
    return xp.where(z > 0, above, below)''',
    "_sigmoid_over_softplus": '''def _sigmoid_over_softplus(xp, z):
    """sigmoid(z)/softplus(z); 1 below z = −37, where both underflow."""
    clipped = xp.where(z < -37, -37.0, z)
    return xp.where(z < -37, 1.0, _sigmoid(xp, clipped) / _softplus(xp, clipped))''',
}
_HELPERS.update({
    "_softmax": '''def _softmax(xp, z):
    """softmax over the last axis: the library's fused kernel where it has one."""
    name = xp.__name__
    if "torch" in name:
        import torch
        return torch.softmax(z, -1)
    if "jax" in name:
        import jax
        return jax.nn.softmax(z, axis=-1)
    e = xp.exp(z - xp.max(z, axis=-1, keepdims=True))
    return e / xp.sum(e, axis=-1, keepdims=True)''',
    "_logsumexp": '''def _logsumexp(xp, z):
    """log Σ exp over the last axis (kept), max-shifted; the library's own where it has one."""
    name = xp.__name__
    if "torch" in name:
        import torch
        return torch.logsumexp(z, -1, keepdim=True)
    if "jax" in name:
        import jax
        return jax.nn.logsumexp(z, axis=-1, keepdims=True)
    top = xp.max(z, axis=-1, keepdims=True)
    return top + xp.log(xp.sum(xp.exp(z - top), axis=-1, keepdims=True))''',
    "_add_at": '''def _add_at(xp, e, index, value):
    """e with ``value`` added at ``index`` along the last axis (index and value are (..., 1)).
    ``e`` is the kernel's own fresh array: torch adds in place (a scatter, O(batch)), JAX and
    numpy-likes put along the axis, anything else uses where() over the whole array."""
    name = xp.__name__
    index = xp.broadcast_to(index, tuple(e.shape[:-1]) + (1,))  # a sample shared by a batch
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
    return xp.where(hit, e + value, e)''',
})
_HELPERS.update({
    "_sum_except": '''def _sum_except(xp, values, total, index):
    """Σ over the last axis without the entry at ``index``, (..., 1): total − values[index], and
    where that entry holds more than 1 − 1e-3 of the total the other entries added up themselves."""
    others = total - xp.take_along_axis(values, index, axis=-1)
    hit = xp.arange(values.shape[-1], device=device(values)) == index
    exact = xp.sum(xp.where(hit, xp.zeros_like(values), values), axis=-1, keepdims=True)
    return xp.where(others < 1e-3 * total, exact, others)''',
    "_put_at": '''def _put_at(xp, e, index, value):
    """e with ``value`` at ``index`` along the last axis (index and value are (..., 1)); ``e`` is the
    kernel's own fresh array: torch writes in place (unless autograd records e), JAX and
    numpy-likes put along the axis, anything else uses where() over the whole array."""
    name = xp.__name__
    index = xp.broadcast_to(index, tuple(e.shape[:-1]) + (1,))
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
    return xp.where(hit, value, e)''',
})
_DEPENDS = {"_log_softplus": {"_softplus"}, "_log_softplus_curvature": {"_sigmoid", "_softplus"}, "_sigmoid_over_softplus": {"_sigmoid", "_softplus"}, "_betaln": {"_gamma_difference"}}


class ArrayApiKernel(Kernel):
    """A function body for any array API library: no in-place updates (JAX arrays are immutable,
    torch's autograd records), the library's own fused softmax and log-sum-exp."""

    dialect = "xp"
    fuses_softmax = True

    def make_printer(self):
        printer = ArrayPrinter("xp")
        printer.helpers.update({"_namespace", "_asarray", "_special", "_device", "_float_dtype", "_broadcast_shapes"})
        return printer

    def prologue(self) -> list:
        d, fam = self.d, self.d.family
        params = list(d.parameters)
        names = self.signature()
        lines = [f"xp = _namespace({', '.join(names)})", "_sp = _special(xp)", f"device = _device({', '.join(params + ['x'] * self.with_x)})"]
        lines += [f"{p} = _asarray(xp, {p}, device)" for p in params]
        lines.append(f"dtype = _float_dtype(xp, {', '.join(params)})")
        lines += [f"{p} = xp.astype({p}, dtype, copy=False)" for p in params]
        is_index = d.sample_index is not None
        if self.with_x:
            lines.append("x = _asarray(xp, x, device)" if is_index else "x = xp.astype(_asarray(xp, x, device), dtype, copy=False)")
        lines += [f"{a} = xp.astype(_asarray(xp, {a}, device), dtype, copy=False)" for a in fam.arguments]
        vectors = [n for n in names if d.constraints[n].event_dim]
        parts = [f"tuple({n}.shape)[:-1]" if n in vectors else f"tuple({n}.shape)" for n in names]
        if vectors:
            lines.append(f"size = {vectors[0]}.shape[-1]")
        lines.append(f"batch = _broadcast_shapes({', '.join(parts)})")
        for n in names:
            if n in vectors:
                lines.append(f"{n} = _with_ndim(xp, {n}, len(batch) + 1)")
            elif n == "x" and is_index:
                lines.append("_x = x if xp.isdtype(x.dtype, 'integral') else xp.astype(x, xp.int64)")
                lines.append("_x = xp.reshape(_x, (1,) * (len(batch) - x.ndim) + tuple(x.shape) + (1,))")
            elif self.vector_family:
                lines.append(f"{n} = {n}[..., None]")
        self.printer.helpers.update({"_with_ndim", "_full"})
        return lines

    def elementwise(self, outputs: dict) -> tuple:
        """(lines, {target: owned?}): one statement per common subexpression and output; an
        output owns its array unless it is an input, a constant or another name."""
        low = self.lowering
        outputs = low.standardize(outputs) if self.with_x else outputs
        lowered = {n: low.lower(e) for n, e in outputs.items()}
        common, reduced = cse(list(lowered.values()), symbols=numbered_symbols("_t"))
        lines = [line for s in low.statements for line in self.statement(s)]
        jobs = [(str(s), e) for s, e in common] + list(zip(lowered, reduced))
        fresh = set(low.owned) | {s for s, _ in common}
        for position, (target, e) in enumerate(jobs):
            later = set().union(*(other.free_symbols for _, other in jobs[position + 1:]))
            negated = None if e.is_Relational or e.is_Boolean else -e  # (CSE may name a condition)
            if negated is not None and negated.is_Symbol and negated in fresh and negated not in later:  # −softmax: no new array
                self.printer.helpers.add("_negated")
                lines.append(f"{target} = _negated(xp, {negated})")
            else:
                lines.append(f"{target} = {self.printer.doprint(e)}")
        return lines, {target: bool(e.free_symbols) and not e.is_Symbol for target, e in zip(lowered, reduced)}

    def output(self, name: str, shape: str, copy) -> str:
        return f"_full(xp, {name}, {shape}, dtype, device, copy={copy})"

    def scatter_at_x(self, out: str, value: str, add: bool = False) -> str:
        return f"{out} = {self.helper('_add_at' if add else '_put_at', out, '_x', value)}"

    def matrix(self, kind: str, size: int, entries: dict) -> list:
        # no item assignment in the array API: stack rows of entries broadcast to the batch
        lines = [f"{name} = _full(xp, {name}, batch, dtype, device)" for name in entries.values()]
        rows = ", ".join("xp.stack([" + ", ".join(entries[min(r, c), max(r, c)] for c in range(size)) + "], axis=-1)"
                         for r in range(size))
        return lines + [f"return xp.stack([{rows}], axis=-2)"]

    def row_max(self, code: str) -> str:
        return f"xp.max({code}, axis=-1, keepdims=True)"

    def row_sum(self, code: str) -> str:
        return f"xp.sum({code}, axis=-1, keepdims=True)"

    def exp_shifted(self, name: str, body: str, top: str) -> list:
        return [f"{name} = xp.exp({body} - {top})"]

    def sum_except(self, values: str, total: str) -> str:
        return self.helper("_sum_except", values, total, "_x")


def _imports(backend: str) -> list:
    if backend == "torch":
        return ["import array_api_compat.torch as _torch_xp",
                "from array_api_compat import device",
                "", "", "def array_namespace(*arrays):", "    return _torch_xp"]
    if backend == "jax":
        return ["import jax.numpy as _jnp", "", "", "def array_namespace(*arrays):", "    return _jnp", "",
                "", "def device(a):", "    return a.device"]
    if backend == "numpy-xp":
        return ["import array_api_compat.numpy as _np_xp", "from array_api_compat import device", "", "",
                "def array_namespace(*arrays):", "    return _np_xp"]
    return [
        "try:  # any array API library: numpy, torch, jax, cupy",
        "    from array_api_compat import array_namespace, device",
        "except ImportError:  # numpy alone: its own namespace is array-API compatible (numpy >= 2)",
        "    import numpy as _numpy",
        "",
        "    def array_namespace(*arrays):",
        "        return _numpy",
        "",
        "    def device(a):",
        '        return getattr(a, "device", None)',
    ]


def module_source(d, backend: str = "array-api", second=None) -> str:
    """A module with ``log_prob`` and ``eligibility`` (and, given the second-order math
    ``second``, ``hessian``, ``fisher``, ``natural_gradient``) for arrays of any array API library."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}")
    sig, lp_lines, lp_printer = log_prob_body(d, ArrayApiKernel)
    _, el_lines, el_printer = eligibility_body(d, ArrayApiKernel)
    helpers = set(lp_printer.helpers | el_printer.helpers)
    extra = {}
    if second is not None:
        extra, more, _ = second_order.functions(second, ArrayApiKernel)
        helpers |= more
    for h in list(helpers):
        helpers |= _DEPENDS.get(h, set())
    header, lp_doc, el_doc = assemble.header_and_docs(d, note=f"Array library: {backend} (array API namespace of the inputs).")
    sources = {**_HELPERS, **second_order.XP_HELPERS}
    return assemble.module(
        d, header=header, imports=_imports(backend), constants=f"\nBACKEND = {backend!r}",
        functions=[assemble.function_source("log_prob", sig, lp_doc, lp_lines),
                   assemble.function_source("eligibility", sig, el_doc, el_lines), *extra.values()],
        helpers=[sources[h] for h in sorted(helpers)], exported=["dense"] if "dense" in helpers else [],
    )
