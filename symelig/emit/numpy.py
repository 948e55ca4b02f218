"""Numpy source from a derivation: the index structure of the math becomes array axes.

``lambdify`` would turn Σ_i p_i into a Python loop over categories (shared/design-notes.md).
This emitter lowers the indexed expression instead:

* the component index j, and the bound index i inside a sum, become the last axis: p_j → ``p``;
* an entry at the sample, p_x, becomes a gather ``take_along_axis(p, _x, -1)`` of shape (..., 1);
* Σ_i f(i) becomes a reduction over the last axis, computed once per distinct sum: in numpy
  ``_row_sum`` (a product with a vector of ones: BLAS, 4–8× faster than ``np.sum`` over rows
  of 16 and 2–6× over rows of 10⁵), and the row max of a softmax ``_row_max`` (halving for
  short rows, where ``np.max`` pays per row);
* log-sum-exp and softmax share one max-shifted exp(f − max), so logits of ±1e4 stay finite
  and softmax = exp(f − max)/Σ is as accurate as torch.softmax;
* a term δ_jx·c is not a dense one-hot: the rest of the eligibility is materialized once and
  c is added in place at x;
* what remains is elementwise; ``sympy.cse`` names its common subexpressions.

Per-sample quantities keep a trailing axis of size 1 so they broadcast against the category
axis; ``log_prob`` drops it at the end.  The dtype is that of the floating-point parameters
(float32 stays float32).  Reductions live in statements, so the elementwise printer never sees
a Sum: an array library is one choice here, never part of the derivation.
"""
from __future__ import annotations

import ast
import keyword
import re
from collections import Counter

from sympy import (
    Add, Float, Function, Indexed, IndexedBase, KroneckerDelta, Mul, Pow, S, Sum, Symbol, cancel, count_ops, cse, log,
    numbered_symbols, preorder_traversal, together,
)
from sympy.printing.numpy import SciPyPrinter
from sympy.printing.precedence import precedence

from .. import __version__, constraints
from ..family import K, j
from ..functions import LogSumExp, Softmax, SoftmaxExcept, SumExcept
from .buffers import Buffers
from .asymptotic import asymptotic
from .stable import stable
from .standardize import standardized
from .text import PositiveFirst, formula, letter, where

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
        prefix = "" if self.dialect == "numpy" else "xp, "
        return f"{name}({prefix}{', '.join(self._print(a) for a in args)})"

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

    def _print_log_abs(self, expr):
        return f"{self.ns}.log({self.ns}.abs({self._print(expr.args[0])}))"

    def _print_log1mexp(self, expr):
        return self._helper("_log1mexp", expr.args)

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


class _Lowering:
    """Rewrites indexed math into expressions over array names, emitting reduction statements."""

    def __init__(self, derivation, printer: ArrayPrinter):
        self.printer = printer
        self.statements: list = []
        self.memo: dict = {}
        self.counts: Counter = Counter()
        self.derivation = derivation
        self.aliases: dict = {}  # symbols standing for a computed array (w)
        self.names = {s: n for n, s in derivation.symbols.items()}
        self.parameters = [derivation.symbols[n] for n in derivation.parameters]
        self.unit_interval = [derivation.symbols[n] for n in derivation.parameters
                              if derivation.constraints[n] is constraints.unit_interval]
        x = derivation.symbols["x"]
        self.sample_index = x if derivation.family.value is constraints.category else None
        self.axis_names = {n for n, s in derivation.symbols.items() if isinstance(s, IndexedBase)}
        self.vectors: set = {Symbol(n) for n in self.axis_names}   # names of shape (..., K)
        # what each name depends on, so the buffer compiler knows which operands fit a buffer
        self.symbol_deps: dict = {Symbol(n): frozenset({n}) for n in derivation.symbols}
        self.symbol_deps[Symbol("_x")] = frozenset({"x"})
        self.owned: set = set()  # temporaries that are fresh output-sized buffers
        self.ns = printer.ns
        self.inplace = printer.dialect == "numpy"  # the array API has no out=

    def _temp(self, prefix, code, key, vector, depends_on=None):
        if key not in self.memo:
            name = Symbol(f"_{prefix}{self.counts[prefix]}")
            self.counts[prefix] += 1
            self.statements.append((str(name), code))
            self.memo[key] = name
            if vector:
                self.vectors.add(name)
            self.symbol_deps[name] = self.deps(depends_on if depends_on is not None else _first_expr(key))
        return self.memo[key]

    def deps(self, expr) -> frozenset:
        """The arguments (x, parameters) an expression over array names depends on."""
        if not hasattr(expr, "free_symbols"):
            return frozenset()
        return frozenset().union(*(self.symbol_deps.get(s, frozenset()) for s in expr.free_symbols))

    def is_vector(self, expr) -> bool:
        return bool(expr.free_symbols & self.vectors)

    def _print(self, expr) -> str:
        return self.printer.doprint(expr)

    def _materialize(self, expr, prefix):
        if isinstance(expr, Symbol):
            return expr
        return self._temp(prefix, self._print(expr), ("materialize", expr), self.is_vector(expr))

    def _shifted_exp(self, reduction):
        """max_i f, exp(f − max) and Σ_i exp(f − max), computed once per f: the stable pieces of
        both log-sum-exp (max + log Σ) and softmax (exp(f − max) / Σ), which is exact at ±1e4."""
        body = self._materialize(self._lower(reduction.body), "shifted")
        ns = self.ns
        if self.inplace:
            self.printer.helpers.add("_row_max")
        top_code = f"_row_max({body})" if self.inplace else f"{ns}.max({body}, axis=-1, keepdims=True)"
        top = self._temp("max", top_code, ("max", body), vector=False)
        if not self.inplace:
            self._temp("exp", f"{ns}.exp({body} - {top})", ("exp", body), vector=True)
        if ("exp", body) not in self.memo:  # z − max in a new buffer, exp in place: one allocation
            shifted = self._temp("exp", f"np.subtract({body}, {top})", ("exp", body), vector=True)
            self.statements.append((None, f"np.exp({shifted}, out={shifted})"))
            self.owned.add(shifted)
        shifted = self.memo[("exp", body)]
        total = self._temp("sumexp", self._row_sum(str(shifted)), ("sumexp", body), vector=False)
        return top, shifted, total

    def _except(self, values, total, e):
        """Σ_{i≠x} of ``values`` (the other categories' share), per sample."""
        self.printer.helpers.add("_sum_except")
        prefix = "" if self.inplace else "xp, "
        return self._temp("others", f"_sum_except({prefix}{values}, {total}, _x)", ("except", e), vector=False,
                          depends_on=values + total + Symbol("_x"))

    def _row_sum(self, code: str) -> str:
        """Σ over the last axis, kept as an axis of length 1."""
        if self.inplace:
            self.printer.helpers.add("_row_sum")
            return f"_row_sum({code})"
        return f"{self.ns}.sum({code}, axis=-1, keepdims=True)"

    def _fused(self, e):
        """The array API dialect: the library's own fused softmax / logsumexp over the whole axis
        (one kernel in torch and JAX instead of max, subtract, exp, sum, divide)."""
        body = self._materialize(self._lower(e.body), "shifted")
        if isinstance(e, LogSumExp):
            self.printer.helpers.add("_logsumexp")
            return self._temp("logsumexp", f"_logsumexp(xp, {body})", e, vector=False, depends_on=body)
        if self._lower(e.body.subs(e.index, e.at)) != body:
            return None  # softmax at one index: the shifted pieces below
        self.printer.helpers.add("_softmax")
        name = self._temp("softmax", f"_softmax(xp, {body})", ("softmax", body), vector=True, depends_on=body)
        self.owned.add(name)  # a fresh array: the xp emitter may negate it in place
        return name

    def lower(self, e):
        """Array form of ``e`` in its floating-point-stable form (:mod:`symelig.emit.asymptotic`,
        :mod:`symelig.emit.stable`);
        constants become Python floats, which keep float32 float32 (np.log(2) would be a
        float64 scalar and promote the result)."""
        e = stable(asymptotic(e, self.parameters), self.parameters, self.unit_interval, self.sample_index)
        e = e.replace(lambda c: c.is_number and not c.is_Rational and not c.is_Float, lambda c: Float(c.evalf(17), 17))
        fixed = [t for t in Add.make_args(e) if t.free_symbols and not t.has(*self.parameters)]
        if e.is_Add and 1 < len(fixed) < len(e.args):
            # terms free of θ first (log n! − log x! − log (n − x)!): where they cancel exactly,
            # a small θ-term added afterwards keeps its digits (log(1 − p) at p = 1e-150)
            rest = [t for t in e.args if t not in fixed]
            return self._materialize(self._lower(Add(*fixed)), "fixed") + self._lower(Add(*rest))
        return self._lower(e)

    def standardize(self, outputs: dict) -> dict:
        """``outputs`` through w = (u − μ)/σ where the family is location–scale; w is computed
        once, before everything else."""
        computed, outputs = standardized(self.derivation, outputs)
        for symbol, expression in computed or ():
            self.aliases[symbol] = self._materialize(self.lower(expression), "w")
        return outputs

    def _lower(self, e):
        if e in self.aliases:
            return self.aliases[e]
        if isinstance(e, Indexed):
            name = self.names[e.base]
            if e.indices[0] == self.sample_index:
                code = f"{self.ns}.take_along_axis({name}, _x, axis=-1)"
                return self._temp(f"{name}_at_x", code, e, vector=False, depends_on=Symbol(name) + Symbol("_x"))
            return Symbol(name)  # j, or the bound index of an enclosing sum: the whole axis
        if e == K:
            return Symbol("size")
        if e in self.names:
            return Symbol(self.names[e])
        if isinstance(e, Sum):
            (index, _, _), = e.limits
            if index not in e.function.free_symbols:
                return Symbol("size") * self._lower(e.function)
            body = self._lower(e.function)
            code = self._row_sum(self._print(body))
            return self._temp("sum", code, e, vector=False, depends_on=body)
        if isinstance(e, (LogSumExp, Softmax)) and not self.inplace:
            fused = self._fused(e)
            if fused is not None:
                return fused
        if isinstance(e, LogSumExp):
            top, _, total = self._shifted_exp(e)
            return self._temp("logsumexp", f"{top} + {self.ns}.log({total})", e, vector=False, depends_on=top + total)
        if isinstance(e, Softmax):
            top, shifted, total = self._shifted_exp(e)
            at = self._lower(e.body.subs(e.index, e.at))
            if at == self._lower(e.body):  # softmax of the whole axis: reuse exp(f - max)
                return shifted / total
            code = f"{self.ns}.exp({self._print(at - top)})/{total}"
            return self._temp("softmax", code, e, vector=self.is_vector(at), depends_on=at + total)
        if isinstance(e, SumExcept) and e.at == self.sample_index:
            values = self._materialize(self._lower(e.body), "summed")
            total = self._lower(Sum(e.body, (e.index, 0, e.size - 1)))
            return self._except(values, total, e)
        if isinstance(e, SoftmaxExcept) and e.at == self.sample_index:
            top, shifted, total = self._shifted_exp(e)
            return self._except(shifted, total, e) / total
        if isinstance(e, KroneckerDelta):
            raise NotImplementedError(f"{e} is only vectorized as a term δ_jx·c of an eligibility")
        if e.args:
            return e.func(*[self._lower(a) for a in e.args])
        return e


def _reuse_squares(common: list, reduced: list) -> tuple:
    """Where CSE named b², write later powers b^n (|n| ≥ 3) through it: σ³ = σ²·σ is one
    multiplication, not two."""
    squares = {e.base: name for name, e in common if e.is_Pow and e.exp == 2}
    if not squares:
        return common, reduced

    def rewrite(expr, own=None):
        def split(p):
            n = int(p.exp)
            sign = 1 if n > 0 else -1
            square = squares[p.base]
            return Pow(square, sign * (abs(n) // 2)) * Pow(p.base, sign * (abs(n) % 2))

        return expr.replace(
            lambda p: p.is_Pow and p.base in squares and p.exp.is_Integer and abs(p.exp) >= 3 and squares[p.base] != own,
            split,
        )

    return [(name, rewrite(e, own=name)) for name, e in common], [rewrite(e) for e in reduced]


def _one_denominator(expr):
    """A rational expression over one denominator when that costs no extra operation: one
    division instead of several, and common factors (σ² in the normal's two eligibilities)
    that CSE then shares.  Only for plain rational expressions: with functions such as
    sigmoid/softplus a common denominator could bring back the underflow they were kept apart
    to avoid."""
    if expr.atoms(Function, Sum, Indexed) or not expr.is_Add:
        return expr
    combined = together(expr)
    return combined if count_ops(combined) <= count_ops(expr) else expr


def _first_expr(key):
    return key[1] if isinstance(key, tuple) else key


def _split_delta(expr, sample):
    """expr = rest + δ(j, x)·coefficient, with the delta linear; returns (rest, coefficient)."""
    delta = KroneckerDelta(j, sample)
    rest, coefficient = [], []
    for term in Add.make_args(expr):
        factors = Mul.make_args(term)
        if delta in factors:
            coefficient.append(Mul(*[f for f in factors if f != delta]))
        else:
            rest.append(term)
    rest, coefficient = Add(*rest), Add(*coefficient)
    if rest.has(KroneckerDelta) or coefficient.has(KroneckerDelta) or coefficient.has(j):
        raise NotImplementedError(f"cannot vectorize {expr}: δ(j,x) must appear as a linear factor")
    return rest, coefficient


def _check_identifier(name: str) -> str:
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ValueError(f"{name!r} cannot be a Python name in generated code")
    return name


class _Function:
    """The body of one generated function: prologue, statements, outputs."""

    def __init__(self, derivation, with_x: bool = True):
        self.d = derivation
        self.with_x = with_x  # the Fisher information is a function of θ alone
        self.printer = ArrayPrinter()
        self.lowering = _Lowering(derivation, self.printer)
        self.vector_family = derivation.is_vector

    def signature(self):
        fam = self.d.family
        return ["x"] * self.with_x + [*fam.arguments, *self.d.parameters]

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
        is_index = fam.value is constraints.category
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
        lowered = {n: low.lower(e) for n, e in outputs.items()}
        common, reduced = cse(list(lowered.values()), symbols=numbered_symbols("_t"))
        common, reduced = _reuse_squares(common, reduced)
        for s, e in common:
            if low.is_vector(e):
                low.vectors.add(s)
            low.symbol_deps[s] = low.deps(e)
        buffers = Buffers(self.printer, self.is_big, low.deps)
        for name in low.owned:
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
        lines = [f"{n} = {c}" if n else c for n, c in low.statements] + buffers.lines
        return lines, owned


def split_outputs(d) -> tuple:
    """({e_name: the eligibility without its δ_jx term}, {name: its value at j = x}): the dense
    part becomes an array, and the sample's category gets the whole value there, computed as one
    expression (1 − softmax_x is the other categories' share, not 1 plus the dense −softmax_x)."""
    sample = d.symbols["x"] if d.family.value is constraints.category else None
    parts, deltas = {}, {}
    for name, e in d.eligibility.items():
        rest, coefficient = _split_delta(e, sample) if sample is not None else (e, 0)
        parts[f"e_{_check_identifier(name)}"] = _one_denominator(rest)
        if coefficient != 0:
            at_x = (rest + coefficient).subs(j, sample)
            deltas[name] = together(at_x) if at_x.has(Sum) and not at_x.has(Function) else at_x
    return parts, deltas


def _log_prob_body(d) -> tuple:
    f = _Function(d)
    lines = f.prologue()
    body, _ = f.elementwise({"_log_prob": d.log_prob})
    lines += body
    value = "_log_prob[..., 0]" if f.vector_family else "_log_prob"
    lines.append(f"return _output({value}, batch, dtype, copy=False)")
    return f.signature(), lines, f.printer


def _eligibility_body(d) -> tuple:
    parts, deltas = split_outputs(d)
    outputs = {**parts, **{f"_at_x_{n}": c for n, c in deltas.items()}}
    f = _Function(d)
    body, owned = f.elementwise(outputs)
    lines = f.prologue() + body
    for name in d.eligibility:
        out = f"e_{name}"
        vector = isinstance(d.symbols[name], IndexedBase)
        # An owned buffer is returned as it is (and the δ term added into it); an input or a
        # per-sample quantity is copied into a new array of the output's shape.
        shape = "batch + (size,)" if vector else "batch + (1,)" if f.vector_family else "batch"
        lines.append(f"{out} = _output({out}, {shape}, dtype, copy={not owned[out]})")
        if name in deltas:
            f.printer.helpers.add("_put_at")
            lines.append(f"_put_at({out}, _x, _at_x_{name})")
        if f.vector_family and not vector:
            lines.append(f"{out} = {out}[..., 0]")
    lines.append("return {" + ", ".join(f'"{n}": e_{n}' for n in d.eligibility) + "}")
    return f.signature(), lines, f.printer


def _function(name, signature, doc, lines) -> str:
    body = "\n".join("    " + line for line in lines)
    return f'def {name}({", ".join(map(_check_identifier, signature))}):\n    """{doc}"""\n{body}\n'


def module_source(d, second=None) -> str:
    """A standalone module with ``log_prob`` and ``eligibility`` (and, given the second-order math
    ``second``, ``hessian``, ``fisher``, ``natural_gradient``); imports numpy (and scipy.special
    only when a special function is used), never SymPy."""
    from .. import __version__ as version
    from . import second_order

    sig, lp_lines, lp_printer = _log_prob_body(d)
    _, el_lines, el_printer = _eligibility_body(d)
    helpers = lp_printer.helpers | el_printer.helpers
    modules = set(lp_printer.module_imports) | set(el_printer.module_imports)
    extra, names = {}, ["log_prob", "eligibility"]
    if second is not None:
        extra, more_helpers, more_modules = second_order.functions(second)
        helpers |= more_helpers
        modules |= more_modules
        names += [*extra] + (["dense"] if "dense" in more_helpers else [])
    unknown = modules - {"numpy", "scipy.special"}
    if unknown:
        raise NotImplementedError(f"generated code would need {sorted(unknown)}; add a printer method")
    imports = ["import numpy as np"] + (["from scipy import special"] if "scipy.special" in modules else [])
    header, lp_doc, el_doc = _header_and_docs(d, version)
    sources = {**_HELPERS, **second_order.HELPERS}
    return "\n\n".join([
        header + "\n".join(imports),
        f"__all__ = [{', '.join(chr(34) + n + chr(34) for n in names)}]\nFAMILY = {d.family.name!r}\nPARAM = {d.param!r}\n"
        f"PARAMETERS = {tuple(d.parameters)!r}",
        _function("log_prob", sig, lp_doc, lp_lines),
        _function("eligibility", sig, el_doc, el_lines),
        *extra.values(),
        *(sources[h] + "\n" for h in sorted(helpers)),
    ]).rstrip() + "\n"


def _header_and_docs(d, version, note: str = "") -> tuple:
    """The module docstring and the two functions' docstrings, with the formulas."""
    import sympy

    theta = ", ".join(formula(d.symbols[n]) for n in d.parameters)
    P = letter(d)
    formulas = "\n".join(
        f"    ∂ log {P} / ∂{formula(d.wrt(n))} = {formula(e)}" for n, e in d.eligibility.items()
    ) + (f"\n    where {where(d)}" if d.definitions() else "")
    args_doc = _arguments_doc(d)
    header = (
        f'"""Eligibility of the {d.family.name} distribution, parametrization {d.param!r}.\n\n'
        f"Generated by symelig {version} (SymPy {sympy.__version__}); do not edit, regenerate with\n"
        f"``{d.parametrization.command or f'symelig export {d.family.name} --param {d.param}'}``.\n\n"
        f"{d.parametrization.doc}\n\n"
        f"    log {P}(x | {theta}) = {formula(d.log_prob)}\n{formulas}\n\n"
        "Sign convention: eligibility = ∇θ log p(x | θ) (Williams 1992), not the gradient of a loss.\n"
        'The category axis is the last one; all other axes broadcast as batch axes.\n'
        + (f"{note}\n" if note else "") + '"""\n'
    )
    lp_doc = f"log {P}(x | {theta}) = {formula(d.log_prob)}, shaped like the batch.\n\n{args_doc}\n    "
    el_doc = (
        "Eligibilities {parameter: ∂ log p(x | θ)/∂parameter}, each shaped like its parameter\n"
        f"    broadcast over the batch.\n\n{formulas}\n\n{args_doc}\n    "
    )
    return header, lp_doc, el_doc


def _arguments_doc(d) -> str:
    rows = []
    for name, c in d.constraints.items():
        shape = "(..., K)" if c.event_dim else "(...)"
        rows.append(f"    {name}: {shape}, {c.allowed}")
    return "\n".join(rows)
