"""The numpy backend: kernels of in-place ufuncs (``out=``) that recycle their buffers.

The lowering (:mod:`symelig.emit.lowering`) turns the indexed math into array expressions;
this module writes them for numpy: elementwise expressions as ufunc calls planned onto buffers
(:mod:`symelig.emit.buffers`), the row max and row sum of a category axis through ``_row_max``
and ``_row_sum`` (a product with a vector of ones: BLAS, 4–8× faster than ``np.sum`` over rows
of 16 and 2–6× over rows of 10⁵), the δ_jx term as one ``put_along_axis`` at the sample, and
the special functions as small stable helpers (``_HELPERS``) or ``scipy.special``.
"""
from __future__ import annotations

from sympy import Symbol, cse, numbered_symbols
from sympy.printing.numpy import SciPyPrinter
from sympy.printing.precedence import PRECEDENCE, precedence

from . import assemble, second_order
from .buffers import Buffers, render
from .kernel import Kernel, eligibility_body, log_prob_body
from .lowering import Reduction, reuse_squares
from ..functions import select
from .text import PositiveFirst

_HELPERS = {
    "_xlogy": '''def _xlogy(a, b):
    """a·log(b), 0 where a == 0 (an empty category of probability 0 contributes nothing)."""
    return np.where(a == 0, 0, a * np.log(np.where(a == 0, 1, b)))''',
    "_xdivy": '''def _xdivy(a, b):
    """a / b, 0 where a == 0."""
    return np.where(a == 0, 0, a / np.where(a == 0, 1, b))''',
    "_sigmoid": '''def _sigmoid(z):
    """1 / (1 + exp(−z)) in four in-place passes, accurate in both tails: as z → −∞ the result
    keeps a relative error of a few ulp, and where exp(−z) overflows it is the limit 0."""
    e = np.asarray(np.negative(z))
    with np.errstate(over="ignore"):
        np.exp(e, out=e)
    e += 1
    return np.reciprocal(e, out=e)''',
    "_log_softplus": '''def _log_softplus(z):
    """log softplus(z); below z = −37, softplus(z) = exp(z) to machine precision, so log softplus(z) = z
    (softplus itself would underflow to 0 there)."""
    return np.where(z < -37, z, np.log(np.logaddexp(0, np.maximum(z, -37))))''',
    "_sigmoid_over_softplus": '''def _sigmoid_over_softplus(z):
    """sigmoid(z)/softplus(z) = d log softplus(z)/dz; it is 1 to machine precision below z = −37,
    where both would underflow."""
    clipped = np.maximum(z, -37)
    return np.where(z < -37, 1, _sigmoid(clipped) / np.logaddexp(0, clipped))''',
    "_log_softplus_curvature": '''def _log_softplus_curvature(z):
    """(sigmoid(−z)·softplus(z) − sigmoid(z))/softplus(z)², which tends to −1/2 as z → −∞ while its
    two terms grow as e^(−z) and cancel.  Where z ≤ 0, with t = e^z: q(t)·(t/log1p(t))²/(1 + t),
    q(t) = (log1p(t) − t)/t² = Σ_k (−1)^(k+1) t^k/(k + 2), summed (14 terms, exact to 1e-17) where
    t < 1/16 and taken directly above (log1p(t) − t then loses at most 32 ulp); t stops at e^−80,
    below which the value is −1/2 in float32 and float64.  Where z > 0 nothing cancels
    (sigmoid(−z)·softplus(z) < 0.7·sigmoid(z)): (sigmoid(−z) − sigmoid(z)/softplus(z))/softplus(z)."""
    t = np.exp(np.clip(z, -80, 0))
    small = t < 0.0625
    ts = np.where(small, t, 0)
    q = (((((((((((((1 / 15) * ts - 1 / 14) * ts + 1 / 13) * ts - 1 / 12) * ts + 1 / 11) * ts - 1 / 10) * ts + 1 / 9) * ts - 1 / 8) * ts + 1 / 7) * ts - 1 / 6) * ts + 1 / 5) * ts - 1 / 4) * ts + 1 / 3) * ts - 1 / 2  # Horner's rule
    tl = np.where(small, 1, t)
    q = np.where(small, q, (np.log1p(tl) - tl) / tl**2)
    ratio = t / np.log1p(t)
    below = q * ratio * ratio / (1 + t)
    zp = np.maximum(z, 0)
    s = np.logaddexp(0, zp)
    above = (_sigmoid(-zp) - _sigmoid(zp) / s) / s
    return np.where(z > 0, above, below)''',
    "_log1mexp": '''def _log1mexp(u):
    """log(1 − e^u) for u < 0: log(−expm1(u)) near 0, where 1 − e^u cancels, log1p(−e^u) below −log 2."""
    near = u > -0.6931471805599453
    return np.where(near, np.log(-np.expm1(np.where(near, u, -1.0))), np.log1p(-np.exp(np.where(near, -1.0, u))))''',
    "_log1pmx": '''def _log1pmx(z):
    """log(1 + z) − z: the series in s = z/(2 + z) for |z| < 1/4 (where the two cancel to −z²/2),
    the difference itself elsewhere."""
    near = np.abs(z) < 0.25
    zs = np.where(near, z, 0.0)
    s = zs / (2 + zs)
    s2 = s * s
    tail = s2 * (1/3 + s2 * (1/5 + s2 * (1/7 + s2 * (1/9 + s2 * (1/11 + s2 * (1/13 + s2 * (1/15 + s2 * (1/17 + s2 * (1/19 + s2 / 21)))))))))
    series = 2 * s * tail - zs * zs / (2 + zs)
    far = np.where(near, 1.0, z)
    return np.where(near, series, np.log1p(far) - far)''',
    "_gamma_difference": '''def _gamma_difference(n, b, d, a, shift):
    """ψ_n(a) − ψ_n(b + shift) (n = −1: log Γ), with a = b + d and shift 0 or 1.  Where
    |d| ≤ 1e-3·|b|, a rounds towards b and the difference cancels: there the Taylor series
    Σ_k d^k/k! ψ_(n+k)(b), whose terms fall by 1e-3 each (six of them), plus the pole
    ψ_n(b) − ψ_n(b + 1) if shift is 1; elsewhere the difference itself."""
    def f(order, u):
        return special.gammaln(u) if order == -1 else special.digamma(u) if order == 0 else special.polygamma(order, u)

    b, d, a = np.broadcast_arrays(b, d, a)
    small = np.abs(d) <= 1e-3 * np.abs(b)
    bs = np.where(small, b, 1.0)
    ds = np.where(small, d, 0.0)
    t1 = ds
    t2 = t1 * ds / 2
    t3 = t2 * ds / 3
    t4 = t3 * ds / 4
    t5 = t4 * ds / 5
    t6 = t5 * ds / 6
    series = t6 * f(n + 6, bs) + t5 * f(n + 5, bs) + t4 * f(n + 4, bs) + t3 * f(n + 3, bs) + t2 * f(n + 2, bs) + t1 * f(n + 1, bs)
    if shift:
        series = series + (-1.0) ** (n + 1) * float(np.prod(np.arange(1, n + 1))) / bs ** (n + 1)
    return np.where(small, series, f(n, a) - f(n, b + shift))''',
    "_bd0": '''def _bd0(a, m, d):
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
    return out''',
    "_stirlerr": '''def _stirlerr(z):
    """Stirling's remainder log Γ(z) − [(z − ½) log z − z + ½ log 2π]: above z = 15 its series
    1/(12z) − 1/(360z³) + … (six terms, exact to 4e-18 there; the difference would cancel from
    terms of 40 to 0.006), below it the difference itself; each only if some element needs it."""
    far = z > 15
    out = None
    if not np.all(far):
        zn = np.where(far, 1.0, z)
        out = special.gammaln(zn) - (zn - 0.5) * np.log(zn) + zn - 0.9189385332046728
    if np.any(far):
        r = np.where(far, z, 15.0)
        np.reciprocal(r, out=r)
        q = r * r
        series = 1 / 12 - q * (1 / 360 - q * (1 / 1260 - q * (1 / 1680 - q * (1 / 1188 - q * (691 / 360360)))))
        series *= r
        if out is None:
            return series
        np.copyto(out, series, where=far)
    return out''',
    "_factorial_remainder": '''def _factorial_remainder(a):
    """log a! − (a log a − a) = stirlerr(a) + ½ log(2πa) for a count a ≥ 0, 0 at a = 0: above 15
    ½ log(2πa) and stirlerr's series (see _stirlerr), below the difference itself; each only
    if some element needs it."""
    far = a > 15
    out = None
    if not np.all(far):
        an = np.where(far, 1.0, a)
        out = special.gammaln(an + 1) + an
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
    return out''',
    "_fms": '''def _fms(a, b, c):
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
    return out''',
    "_select": '''def _select(need, then, then_args, otherwise, otherwise_args):
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
    return out''',
    "_with_ndim": '''def _with_ndim(a, ndim):
    """``a`` with leading axes of length 1 added up to ``ndim`` axes (a view)."""
    return a.reshape((1,) * (ndim - a.ndim) + a.shape)''',
    "_into": '''def _into(buffer, other):
    """``buffer`` as the out= of ``buffer op other`` when ``other`` broadcasts into it, else None
    (the ufunc then returns a new array of the broadcast shape)."""
    return buffer if np.broadcast_shapes(buffer.shape, np.shape(other)) == buffer.shape else None''',
    "_float_dtype": '''def _float_dtype(*arrays):
    """The floating dtype of the parameters: float32 stays float32, integers become float64."""
    dtype = np.result_type(*arrays)
    return dtype if dtype.kind == "f" else np.dtype(np.float64)''',
    "_output": '''def _output(value, shape, dtype, copy):
    """``value`` as an array of ``shape`` and ``dtype`` that the caller owns; ``value`` itself
    when it is already one (a freshly computed array of that shape) and ``copy`` is false."""
    if not copy and isinstance(value, np.ndarray) and value.shape == shape and value.dtype == dtype:
        return value
    out = np.empty(shape, dtype)
    out[...] = value
    return out''',
    "_row_sum": '''def _row_sum(a):
    """Σ over the last axis, kept as an axis of length 1: for a contiguous float array a product
    with a vector of ones, which BLAS runs several times faster than np.sum's per-row loop (and
    as accurately, blocked); strided, broadcast or integer arrays go to np.sum, which numpy's own
    matmul would add up one element at a time."""
    a = np.asarray(a)
    if a.flags.c_contiguous and a.dtype in (np.float32, np.float64) and a.shape[-1] > 0:
        return np.matmul(a, np.ones(a.shape[-1], a.dtype))[..., None]
    return np.sum(a, axis=-1, keepdims=True)''',
    "_row_max": '''def _row_max(a):
    """max over the last axis, kept as an axis of length 1.  np.max pays a per-row cost on short
    rows; with K ≤ 64 the maximum of two overlapping halves (max is idempotent) is taken
    ⌈log2 K⌉ times instead: whole-array ufunc calls, 2–3× faster there."""
    k = a.shape[-1]
    if k > 64 or k == 0:  # (an empty axis: np.max's own error)
        return np.max(a, axis=-1, keepdims=True)
    if k == 1:
        return a
    h = (k + 1) // 2
    return _row_max(np.maximum(a[..., :h], a[..., k - h:]))''',
    "_sum_except": '''def _sum_except(values, total, index):
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
    return others''',
    "_put_at": '''def _put_at(out, index, value):
    """out[..., index] = value along the last axis, in place; index and value are (..., 1)."""
    np.put_along_axis(out, index, np.broadcast_to(value, np.broadcast_shapes(np.shape(value), index.shape)), axis=-1)''',
    "_add_at": '''def _add_at(out, index, value):
    """out[..., index] += value along the last axis, in place; index and value are (..., 1)."""
    np.put_along_axis(out, index, np.take_along_axis(out, index, axis=-1) + value, axis=-1)''',
}


class ArrayPrinter(PositiveFirst, SciPyPrinter):
    """Elementwise expressions over array names; writes ``np.f``/``special.f`` and records helpers.

    The ``xp`` dialect writes ``xp.f``/``_sp.f`` instead: the array API namespace of the inputs
    and that library's special functions (see :mod:`symelig.emit.xp`), and passes ``xp`` to its
    helpers, which are written without in-place updates.
    """

    def __init__(self, dialect: str = "numpy"):
        super().__init__({"fully_qualified_modules": True})
        self.helpers: set = set()
        self.pieces: dict = {}  # {name: expression} of select pieces kept out of the kernel's CSE
        self.dialect = dialect
        self.ns = "np" if dialect == "numpy" else "xp"
        self._aliases = {"numpy": self.ns, "scipy.special": "special" if dialect == "numpy" else "_sp"}

    def _module_format(self, fqn, register=True):
        """Short aliases (np., special.) instead of fully qualified names; imports still recorded."""
        module, _, name = fqn.rpartition(".")
        if register and module:
            self.module_imports[module].add(name)
        return f"{self._aliases.get(module, module)}.{name}" if module else name

    def _print_Pow(self, expr, rational=False):
        """1/x and x**2, not x**(-1.0): readable, and integer powers keep the dtype."""
        base = self.parenthesize(expr.base, precedence(expr))
        if expr.exp == -1:
            return f"1/{base}"
        if expr.exp.is_Integer and expr.exp > 0:
            return f"{base}**{expr.exp}"
        return super()._print_Pow(expr, rational=rational)

    def _helper(self, name, args):
        self.helpers.add(name)
        return self.call(name, [self._print(a) for a in args])

    def call(self, name: str, args) -> str:
        """``name(args)``, with the namespace first for the array API dialect's helpers."""
        prefix = "" if self.dialect == "numpy" else "xp, "
        return f"{name}({prefix}{', '.join(args)})"

    def _print_xlogy(self, expr):
        return self._helper("_xlogy", expr.args)

    def _print_xdivy(self, expr):
        return self._helper("_xdivy", expr.args)

    def _print_Pi(self, expr):
        """np.pi: SciPyPrinter would import scipy.constants for it."""
        return "np.pi" if self.dialect == "numpy" else repr(float(expr))

    def _print_sigmoid(self, expr):
        return self._helper("_sigmoid", expr.args)

    def _print_gamma_difference(self, expr):
        self._module_format("scipy.special.polygamma")  # the helper uses scipy.special
        return self._helper("_gamma_difference", expr.args)

    def _print_betaln(self, expr):
        if self.dialect == "numpy":
            return f"{self._module_format('scipy.special.betaln')}({self._print(expr.args[0])}, {self._print(expr.args[1])})"
        self.helpers.add("_gamma_difference")
        return self._helper("_betaln", expr.args)

    def _print_bd0(self, expr):
        return self._helper("_bd0", expr.args)

    def _print_quotient(self, expr):
        """(a/b): one division (CSE would have made a·(1/b) of a/b beside c/b)."""
        a, b = expr.args
        return f"({self.parenthesize(a, PRECEDENCE['Mul'], strict=True)}/{self.parenthesize(b, PRECEDENCE['Mul'])})"

    def _print_factorial_remainder(self, expr):
        self._module_format("scipy.special.gammaln")  # the helper uses scipy.special
        return self._helper("_factorial_remainder", expr.args)

    def _print_stirlerr(self, expr):
        self._module_format("scipy.special.gammaln")  # the helper uses scipy.special
        return self._helper("_stirlerr", expr.args)

    def _print_log_abs(self, expr):
        return f"{self.ns}.log({self.ns}.abs({self._print(expr.args[0])}))"

    def _print_log1pmx(self, expr):
        return self._helper("_log1pmx", expr.args)

    def _print_log1mexp(self, expr):
        return self._helper("_log1mexp", expr.args)

    def _print_added_first(self, expr):
        return f"({self._print(expr.args[0])})"

    def _print_fms(self, expr):
        return self._helper("_fms", expr.args)

    def _print_select(self, expr):
        """numpy: _select(condition, lambda names: then, (names,), lambda …: otherwise, (…,)),
        each piece computed only at the elements that take it; the array API: a where()."""
        condition, then, otherwise = expr.args
        if self.dialect != "numpy":
            return f"{self.ns}.where({self._print(condition)}, {self._print(then)}, {self._print(otherwise)})"
        self.helpers.add("_select")
        pieces = []
        for piece in (then, otherwise):
            piece = self.pieces.get(piece, piece)
            names = sorted(str(s) for s in piece.free_symbols)
            # the piece's own common subexpressions, each bound by a lambda of its own (evaluated
            # first, on the piece's elements only)
            common, (body,) = cse([piece], symbols=numbered_symbols("_s"))
            code = self._print(body)
            for name, value in reversed(common):
                code = f"(lambda {name}: {code})({self._print(value)})"
            pieces.append(f"lambda {', '.join(names)}: {code}, ({''.join(n + ', ' for n in names)})")
        return f"_select({self._print(condition)}, {', '.join(pieces)})"

    def _print_Piecewise(self, expr):
        """Nested where(cond, a, b): both sides are computed (vectorized), the condition picks."""
        *pieces, (last, _) = expr.args
        code = self._print(last)
        for value, condition in reversed(pieces):
            code = f"{self.ns}.where({self._print(condition)}, {self._print(value)}, {code})"
        return code

    def _print_And(self, expr):
        *first, last = expr.args
        code = self._print(last)
        for a in reversed(first):
            code = f"{self.ns}.logical_and({self._print(a)}, {code})"
        return code

    def _print_Max(self, expr):
        """Elementwise maximum, nested: max(a, b, c) = maximum(a, maximum(b, c))."""
        *first, last = expr.args
        code = self._print(last)
        for a in reversed(first):
            code = f"{self.ns}.maximum({self._print(a)}, {code})"
        return code

    def _print_log_softplus(self, expr):
        return self._helper("_log_softplus", expr.args)

    def _print_log_softplus_curvature(self, expr):
        self.helpers.add("_sigmoid")  # the helper calls _sigmoid (and the xp one _softplus)
        if self.dialect != "numpy":
            self.helpers.add("_softplus")
        return self._helper("_log_softplus_curvature", expr.args)

    def _print_sigmoid_over_softplus(self, expr):
        self.helpers.add("_sigmoid")  # the helper calls _sigmoid
        return self._helper("_sigmoid_over_softplus", expr.args)

    def _print_softplus(self, expr):
        if self.dialect != "numpy":
            return self._helper("_softplus", expr.args)
        return f"np.logaddexp(0, {self._print(expr.args[0])})"

    def _print_polygamma(self, expr):
        """digamma for order 0 (faster and clearer than polygamma(0, ·))."""
        n, a = expr.args
        if n == 0:
            return f"{self._module_format('scipy.special.digamma')}({self._print(a)})"
        return f"{self._module_format('scipy.special.polygamma')}({self._print(n)}, {self._print(a)})"

    def _print_log_bessel_i0(self, expr):
        a = self._print(expr.args[0])
        return f"({self.ns}.log({self._module_format('scipy.special.i0e')}({a})) + {self.ns}.abs({a}))"

    def _print_bessel_i1_i0(self, expr):
        a = self._print(expr.args[0])
        return f"({self._module_format('scipy.special.i1e')}({a})/{self._module_format('scipy.special.i0e')}({a}))"

    def _print_logfactorial(self, expr):
        return f"{self._module_format('scipy.special.gammaln')}({self._print(expr.args[0])} + 1)"

    def _print_KroneckerDelta(self, expr):
        raise NotImplementedError(f"{expr} outside a linear term cannot be vectorized")

    def _print_Sum(self, expr):
        raise NotImplementedError("sums are lowered to reductions before printing")


class NumpyKernel(Kernel):
    """A numpy function body: in-place ufuncs, buffers recycled."""

    dialect = "numpy"

    def make_printer(self):
        return ArrayPrinter()

    def prologue(self) -> list:
        """Convert the inputs, find the batch shape, and align axes without broadcasting.

        Reductions then run over the parameters as given (a (K,) parameter shared by a batch of
        samples is reduced once), and only the outputs take the full batch shape.
        """
        d, fam = self.d, self.d.family
        params = list(d.parameters)
        lines = [f"{p} = np.asarray({p})" for p in params]
        lines.append(f"dtype = _float_dtype({', '.join(params)})")
        lines += [f"{p} = {p}.astype(dtype, copy=False)" for p in params]
        constraint_of = d.constraints
        is_index = d.sample_index is not None
        if self.with_x:
            lines.append("x = np.asarray(x)" if is_index else "x = np.asarray(x, dtype)")
        lines += [f"{a} = np.asarray({a}, dtype)" for a in fam.arguments]
        names = self.signature()
        vectors = [n for n in names if constraint_of[n].event_dim]
        batch_parts = [f"{n}.shape[:-1]" if n in vectors else f"{n}.shape" for n in names]
        if vectors:
            lines.append(f"size = {vectors[0]}.shape[-1]")
        lines.append(f"batch = np.broadcast_shapes({', '.join(batch_parts)})")
        for n in names:
            if n in vectors:  # same number of axes as the batch, for take_along_axis
                lines.append(f"{n} = {n}.reshape((1,) * (len(batch) + 1 - {n}.ndim) + {n}.shape)")
            elif n == "x" and is_index:
                lines.append("_x = x.astype(np.intp).reshape((1,) * (len(batch) - x.ndim) + x.shape + (1,))")
            elif self.vector_family:
                lines.append(f"{n} = {n}[..., None]")
            else:  # at least 1-d: ufuncs return scalars, not writable buffers, for 0-d inputs
                lines.append(f"{n} = _with_ndim({n}, max(len(batch), 1))")
                self.printer.helpers.add("_with_ndim")
        self.printer.helpers.update({"_float_dtype", "_output"})
        return lines

    def is_big(self, expr) -> bool:
        """Output-sized: carries the category axis, or, without one, depends on any array."""
        if self.vector_family:
            return self.lowering.is_vector(expr)
        return bool(self.lowering.deps(expr))

    def elementwise(self, outputs: dict) -> tuple:
        """CSE over the lowered ``outputs`` {target name: expression}, compiled into ufunc
        statements that recycle buffers; returns (lines, {target: owned?}).  Location–scale
        families are written through w = (u − μ)/σ first (:mod:`symelig.emit.standardize`)."""
        low = self.lowering
        outputs = low.standardize(outputs) if self.with_x else outputs
        lowered = {n: self._pieces_apart(low.lower(e)) for n, e in outputs.items()}
        common, reduced = cse(list(lowered.values()), symbols=numbered_symbols("_t"))
        common, reduced = reuse_squares(common, reduced)
        for s, e in common:
            if low.is_vector(e):
                low.vectors.add(s)
            low.symbol_deps[s] = low.deps(e)
        buffers = Buffers(self.printer, self.is_big, low.deps)
        # exp(f − max) is a new array of the kernel's own (see exp_shifted): its buffer is recycled
        shifted = {s.name for s in low.statements if isinstance(s.value, Reduction) and s.value.kind == "exp_shifted"}
        for name in low.owned | shifted:
            buffers.owned(str(name), name)
        jobs = [(str(s), e) for s, e in common] + list(zip(lowered, reduced))
        owned, aliased = {}, set()
        for i, (target, e) in enumerate(jobs):
            later = set().union(*(later_e.free_symbols for _, later_e in jobs[i + 1:]))
            # a target that is just another name (an output equal to a common subexpression)
            # shares its buffer: that buffer must not be overwritten in place afterwards
            owned[target] = buffers.assign(target, e, consumable=e.free_symbols - later - aliased)
            if isinstance(e, Symbol):
                aliased.add(e)
        lines = [line for s in low.statements for line in self.statement(s)] + render(buffers.statements, self.printer)
        return lines, owned

    def _pieces_apart(self, e):
        """``e`` with the pieces of each select standing as names, so that the common
        subexpressions of a piece are not taken out of it (they would be computed for every
        element, where the piece is computed only for those that take it); the printer writes
        each piece with common subexpressions of its own."""
        low = self.lowering

        def apart(s):
            condition, *pieces = s.args
            names = []
            for piece in pieces:
                name = Symbol(f"_piece{len(self.printer.pieces)}")
                self.printer.pieces[name] = piece
                low.symbol_deps[name] = low.deps(piece)
                if low.is_vector(piece):
                    low.vectors.add(name)
                names.append(name)
            return select(condition, *names)

        return e.replace(lambda s: isinstance(s, select), apart)

    def output(self, name: str, shape: str, copy) -> str:
        return f"_output({name}, {shape}, dtype, copy={copy})"

    def scatter_at_x(self, out: str, value: str, add: bool = False) -> str:
        return self.helper("_add_at" if add else "_put_at", out, "_x", value)

    def matrix(self, kind: str, size: int, entries: dict) -> list:
        lines = [f"out = np.empty(batch + ({size}, {size}), dtype)"]
        for (ia, ib), name in entries.items():
            target = f"out[..., {ia}, {ib}]" + (f" = out[..., {ib}, {ia}]" if ia != ib else "")
            lines.append(f"{target} = {name}")
        return lines + ["return out"]

    def row_max(self, code: str) -> str:
        return self.helper("_row_max", code)

    def row_sum(self, code: str) -> str:
        return self.helper("_row_sum", code)

    def gated(self, code: str, need: str) -> str:
        """Only if some row needs it (a saddle-point form's sums at ordinary parameters: none)."""
        return f"({code} if np.any({need}) else 0)"

    def exp_shifted(self, name: str, body: str, top: str) -> list:
        # z − max in a new buffer, exp in place: one allocation
        return [f"{name} = np.subtract({body}, {top})", f"np.exp({name}, out={name})"]

    def sum_except(self, values: str, total: str) -> str:
        return self.helper("_sum_except", values, total, "_x")


def module_source(d, second=None) -> str:
    """A standalone module with ``log_prob`` and ``eligibility`` (and, given the second-order math
    ``second``, ``hessian``, ``fisher``, ``natural_gradient``); imports numpy (and scipy.special
    only when a special function is used), never SymPy."""
    sig, lp_lines, lp_printer = log_prob_body(d, NumpyKernel)
    _, el_lines, el_printer = eligibility_body(d, NumpyKernel)
    helpers = lp_printer.helpers | el_printer.helpers
    modules = set(lp_printer.module_imports) | set(el_printer.module_imports)
    extra = {}
    if second is not None:
        extra, more_helpers, more_modules = second_order.functions(second, NumpyKernel)
        helpers |= more_helpers
        modules |= more_modules
    unknown = modules - {"numpy", "scipy.special"}
    if unknown:
        raise NotImplementedError(f"generated code would need {sorted(unknown)}; add a printer method")
    imports = ["import numpy as np"] + (["from scipy import special"] if "scipy.special" in modules else [])
    header, lp_doc, el_doc = assemble.header_and_docs(d)
    sources = {**_HELPERS, **second_order.HELPERS}
    return assemble.module(
        d, header=header, imports=imports, constants="",
        functions=[assemble.function_source("log_prob", sig, lp_doc, lp_lines),
                   assemble.function_source("eligibility", sig, el_doc, el_lines), *extra.values()],
        helpers=[sources[h] for h in sorted(helpers)], exported=["dense"] if "dense" in helpers else [],
    )


def helper_source(name: str) -> str:
    """The source of the numpy helper ``name`` (``_sigmoid``, …), for code generated elsewhere."""
    return _HELPERS[name]
