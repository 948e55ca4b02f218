"""Lowering: the index structure of the math becomes array axes, for every array backend.

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

The statements are records (:class:`Statement`: a name, an elementwise expression or a
:class:`Reduction`, and whether it has the category axis); each backend writes them in its
array library (:meth:`symelig.emit.kernel.Kernel.statement`).

Per-sample quantities keep a trailing axis of size 1 so they broadcast against the category
axis; ``log_prob`` drops it at the end.  The dtype is that of the floating-point parameters
(float32 stays float32).  Reductions live in statements, so the elementwise printer never sees
a Sum: an array library is one choice here, never part of the derivation.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sympy import Add, Float, Function, Indexed, IndexedBase, KroneckerDelta, Pow, Sum, Symbol, count_ops, exp, log, together

from .. import constraints
from ..family import K
from ..functions import LogSumExp, Softmax, SoftmaxExcept, SumExcept, added_first, select
from .asymptotic import asymptotic
from .stable import bound_arguments, offsets, stable
from .standardize import standardized, standardized_vector


@dataclass(frozen=True)
class Reduction:
    """A value along the category axis, written by the backend: ``kind`` is "max" or "sum" (of
    the row), "sum_except" (Σ_{i≠x}: values, total), "at_x" (the sample's entry of an array),
    "exp_shifted" (exp(f − max): f, max), or the fused library calls "logsumexp" and "softmax";
    ``operands`` are expressions over array names.  A row sum only a select's piece needs is
    computed only where its ``gate`` holds somewhere."""
    kind: str
    operands: tuple
    gate: object = None


@dataclass(frozen=True)
class Statement:
    """``name = value``, where value is an elementwise expression or a :class:`Reduction`;
    ``vector``: the value has the category axis (..., K), else it is per sample (..., 1)."""
    name: Symbol
    value: object
    vector: bool


class Lowering:
    """Rewrites indexed math into expressions over array names and :class:`Statement` records
    (reductions, materialized temporaries) that ``kernel``, the backend, writes."""

    def __init__(self, derivation, kernel):
        self.kernel = kernel
        self.statements: list = []  # Statement records, in order
        self.memo: dict = {}
        self.counts: Counter = Counter()
        self.derivation = derivation
        self.aliases: dict = {}  # symbols standing for a computed array (w)
        self.names = {s: n for n, s in derivation.symbols.items()}
        self.parameters = [derivation.symbols[n] for n in derivation.parameters]
        self.unit_interval = [derivation.symbols[n] for n in derivation.parameters
                              if derivation.constraints[n] is constraints.unit_interval]
        self.sample_index = derivation.sample_index
        self.bounds = bound_arguments(derivation)
        self.identities = derivation.family.identities(**derivation.symbols)
        self.axis_names = {n for n, s in derivation.symbols.items() if isinstance(s, IndexedBase)}
        self.vectors: set = {Symbol(n) for n in self.axis_names}   # names of shape (..., K)
        # what each name depends on, so the buffer compiler knows which operands fit a buffer
        self.symbol_deps: dict = {Symbol(n): frozenset({n}) for n in derivation.symbols}
        self.symbol_deps[Symbol("_x")] = frozenset({"x"})
        self.owned: set = set()  # temporaries that are fresh output-sized buffers
        self.gate = None         # the condition of the select piece being lowered (its sums' gate)

    def _temp(self, prefix, value, key, vector, depends_on=None):
        """The name of a statement computing ``value`` (an expression or a Reduction), once per ``key``."""
        if key not in self.memo:
            name = Symbol(f"_{prefix}{self.counts[prefix]}")
            self.counts[prefix] += 1
            self.statements.append(Statement(name, value, vector))
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

    def _materialize(self, expr, prefix):
        if isinstance(expr, Symbol):
            return expr
        return self._temp(prefix, expr, ("materialize", expr), self.is_vector(expr))

    def _shifted_exp(self, reduction):
        """max_i f, exp(f − max) and Σ_i exp(f − max), computed once per f: the stable pieces of
        both log-sum-exp (max + log Σ) and softmax (exp(f − max) / Σ), which is exact at ±1e4."""
        body = self._materialize(self._lower(reduction.body), "shifted")
        top = self._temp("max", Reduction("max", (body,)), ("max", body), vector=False)
        shifted = self._temp("exp", Reduction("exp_shifted", (body, top)), ("exp", body), vector=True)
        total = self._temp("sumexp", Reduction("sum", (shifted,)), ("sumexp", body), vector=False)
        return top, shifted, total

    def _except(self, values, total, e):
        """Σ_{i≠x} of ``values`` (the other categories' share), per sample."""
        return self._temp("others", Reduction("sum_except", (values, total)), ("except", e), vector=False,
                          depends_on=values + total + Symbol("_x"))

    def _fused(self, e):
        """A backend that fuses them: the library's own softmax / logsumexp over the whole axis
        (one kernel in torch and JAX instead of max, subtract, exp, sum, divide)."""
        body = self._materialize(self._lower(e.body), "shifted")
        if isinstance(e, LogSumExp):
            return self._temp("logsumexp", Reduction("logsumexp", (body,)), e, vector=False, depends_on=body)
        if self._lower(e.body.subs(e.index, e.at)) != body:
            return None  # softmax at one index: the shifted pieces below
        name = self._temp("softmax", Reduction("softmax", (body,)), ("softmax", body), vector=True, depends_on=body)
        self.owned.add(name)  # a fresh array: the xp emitter may negate it in place
        return name

    def lower(self, e):
        """Array form of ``e`` in its floating-point-stable form (:mod:`symelig.emit.asymptotic`,
        :mod:`symelig.emit.stable`);
        constants become Python floats, which keep float32 float32 (np.log(2) would be a
        float64 scalar and promote the result)."""
        e = stable(asymptotic(offsets(e, self.bounds), self.parameters), self.parameters, self.unit_interval, self.sample_index, self.identities)
        e = e.replace(lambda c: c.is_number and not c.is_Rational and not c.is_Float, lambda c: Float(c.evalf(17), 17))
        return self._fixed_first(e)

    def _fixed_first(self, e, piece=False):
        """``e`` lowered, its terms free of θ added up first (log n! − log x! − log (n − x)!): where
        they cancel exactly, a small θ-term added afterwards keeps its digits (log(1 − p) at
        p = 1e-150).  A statement of their own, or, in a ``piece`` of a select (which the numpy
        kernels compute only where it is taken), a parenthesized sum."""
        fixed = [t for t in Add.make_args(e) if t.free_symbols and not t.has(*self.parameters)]
        if e.is_Add and 1 < len(fixed) < len(e.args):
            rest = [t for t in e.args if t not in fixed]
            first = added_first(self._lower(Add(*fixed))) if piece else self._materialize(self._lower(Add(*fixed)), "fixed")
            return first + self._lower(Add(*rest))
        return self._lower(e)

    def standardize(self, outputs: dict) -> dict:
        """``outputs`` through w = (u − μ)/σ where the family is location–scale; w is computed
        once, before everything else."""
        if self.derivation.is_vector:
            computed, outputs = standardized_vector(self.derivation, outputs)
            for symbol, expression in computed or ():  # w_j and w_i: the same array, made once
                self.aliases[symbol] = self._materialize(self.lower(expression), "w")
            return outputs
        computed, outputs = standardized(self.derivation, outputs)
        for symbol, expression in (computed or ())[:1]:  # w = βx: the saddle-point form's m
            self.identities = {**self.identities, symbol: expression}
        for symbol, expression in computed or ():
            self.aliases[symbol] = self._materialize(self.lower(expression), "w")
        return outputs

    def _lower(self, e):
        if e in self.aliases:
            return self.aliases[e]
        if isinstance(e, Indexed):
            name = self.names[e.base]
            if e.indices[0] == self.sample_index:
                value = Reduction("at_x", (Symbol(name),))
                return self._temp(f"{name}_at_x", value, e, vector=False, depends_on=Symbol(name) + Symbol("_x"))
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
            if self.gate is not None and e not in self.memo:  # a sum only a select's piece needs: only if some row takes it
                return self._temp("sum", Reduction("sum", (body,), self.gate), (e, self.gate), vector=False, depends_on=body)
            return self._temp("sum", Reduction("sum", (body,)), e, vector=False, depends_on=body)
        if isinstance(e, (LogSumExp, Softmax)) and self.kernel.fuses_softmax:
            fused = self._fused(e)
            if fused is not None:
                return fused
        if isinstance(e, LogSumExp):
            top, _, total = self._shifted_exp(e)
            return self._temp("logsumexp", top + log(total), e, vector=False, depends_on=top + total)
        if isinstance(e, Softmax):
            top, shifted, total = self._shifted_exp(e)
            at = self._lower(e.body.subs(e.index, e.at))
            if at == self._lower(e.body):  # softmax of the whole axis: reuse exp(f - max)
                return shifted / total
            return self._temp("softmax", exp(at - top) / total, e, vector=self.is_vector(at), depends_on=at + total)
        if isinstance(e, SumExcept) and e.at == self.sample_index:
            values = self._materialize(self._lower(e.body), "summed")
            total = self._lower(Sum(e.body, (e.index, 0, e.size - 1)))
            return self._except(values, total, e)
        if isinstance(e, SoftmaxExcept) and e.at == self.sample_index:
            top, shifted, total = self._shifted_exp(e)
            return self._except(shifted, total, e) / total
        if isinstance(e, select):
            condition, then, otherwise = e.args
            need = self._lower(condition)
            otherwise = self._fixed_first(otherwise, True)  # first: a sum both pieces use is not gated
            outer, self.gate = self.gate, need
            try:
                then = self._fixed_first(then, True)
            finally:
                self.gate = outer
            return select(need, then, otherwise)
        if isinstance(e, KroneckerDelta):
            raise NotImplementedError(f"{e} is only vectorized as a term δ_jx·c of an eligibility")
        if e.args:
            return e.func(*[self._lower(a) for a in e.args])
        return e


def reuse_squares(common: list, reduced: list) -> tuple:
    """Where CSE named b², write later powers b^n (|n| ≥ 3) through it: σ³ = σ²·σ is one
    multiplication, not two."""
    squares = {e.base: name for name, e in common if e.is_Pow and e.exp == 2}
    if not squares:
        return common, reduced

    def rewrite(expr, defined):
        def split(p):
            n = int(p.exp)
            sign = 1 if n > 0 else -1
            square = squares[p.base]
            return Pow(square, sign * (abs(n) // 2)) * Pow(p.base, sign * (abs(n) % 2))

        return expr.replace(
            lambda p: p.is_Pow and p.base in squares and p.exp.is_Integer and abs(p.exp) >= 3 and squares[p.base] in defined,
            split,
        )

    # only through a square already computed: CSE may list ν³ before ν² (which a later
    # temporary needs), and reading ν² there was an UnboundLocalError
    out, defined = [], set()
    for name, e in common:
        out.append((name, rewrite(e, defined)))
        defined.add(name)
    return out, [rewrite(e, defined) for e in reduced]


def one_denominator(expr):
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
