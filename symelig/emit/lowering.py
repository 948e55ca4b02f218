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

from sympy import Add, Float, Function, Indexed, IndexedBase, KroneckerDelta, Mul, Pow, S, Sum, Symbol, count_ops, exp, log, together

from .. import constraints
from ..family import K, j, n_blocks, n_placed
from ..functions import (
    LogSumExp, LogSumExpBlock, LogSumExpRemaining, Softmax, SoftmaxBlock, SoftmaxExcept, SoftmaxRemaining, SumExcept, added_first, select,
)
from .asymptotic import asymptotic
from .stable import bound_arguments, offsets, stable
from .standardize import standardized, standardized_vector


@dataclass(frozen=True)
class Reduction:
    """A value along the category axis, written by the backend: ``kind`` is "max" or "sum" (of
    the row), "sum_except" (Σ_{i≠x}: values, total), "at_x" (the sample's entry of an array),
    "exp_shifted" (exp(f − max): f, max), or the fused library calls "logsumexp" and "softmax";
    ``operands`` are expressions over array names.  A row sum only a select's piece needs is
    computed only where its ``gate`` holds somewhere.

    Along an ordering x (..., k) of k ≤ K categories (Plackett–Luce), whose steps are an axis of
    their own: "at_ordering" (an array's entries at x_0, …, x_{k−1}: values, order),
    "remaining_logsumexp" (Λ (..., k + 1), the log-sum-exp over the categories not yet placed at
    each step and, last, over those never placed: values, order), "remaining_steps" (Λ_0, …,
    Λ_{k−1}: Λ) and "remaining_score" (Σ_r δ(j, x_r) − softmax over the remaining at step r, on
    the category axis: values, order, Λ), "remaining_log_softmax" (log of each step's softmax at
    the category placed: values, order, Λ).  Over the blocks of sizes n of a multi-discrete action:
    "block_log_softmax" (each block's log-softmax at its x_b, (..., B): values, n, x) and
    "block_score" (δ(j, o_b + x_b) − softmax over j's block, (..., K): values, n, x)."""
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

    def _remaining(self, e):
        """Λ of the reduction ``e`` over the categories its ordering has not placed, once per body."""
        body = self._materialize(self._lower(e.body), "shifted")
        order = Symbol("_order")
        value = Reduction("remaining_logsumexp", (body, order))
        return body, self._temp("remaining", value, ("remaining", body), vector=False, depends_on=body + order)

    def _ordering_sum(self, e):
        """Σ_{r<k} f(r) over the steps of an ordering: f's per-step terms (entries at x_r, the
        log-sum-exp over the remaining) as arrays along the ordering's axis, added up; c·δ(j, x_r) −
        c·softmax over the remaining at step r, at j, as one "remaining_score" on the category axis."""
        (step, _, _), = e.limits
        order = Symbol("_order")
        per_step, scores, deltas = [], {}, {}
        for term in Add.make_args(e.function):
            coefficient, factors = S.One, []
            for factor in Mul.make_args(term):
                if factor.has(step):
                    factors.append(factor)
                else:
                    coefficient *= factor
            (factor,) = factors if len(factors) == 1 else (None,)
            if isinstance(factor, KroneckerDelta) and j in factor.args:
                deltas[coefficient] = deltas.get(coefficient, 0) + 1
            elif isinstance(factor, SoftmaxRemaining) and factor.step == step and factor.at == j:
                scores[-coefficient] = factor
            else:
                per_step.append(term)
        if set(deltas) != set(scores) or any(n != 1 for n in deltas.values()):
            raise NotImplementedError(f"{e}: δ(j, x_r) and the softmax over the remaining are vectorized only as a pair c·(δ − softmax)")
        total = S.Zero
        for coefficient, softmax in scores.items():
            body, remaining = self._remaining(softmax)
            score = self._temp("score", Reduction("remaining_score", (body, order, remaining)), ("score", body), vector=True,
                               depends_on=body + order)
            self.owned.add(score)
            total += coefficient * score
        per_step = self._log_softmax_steps(per_step, step)
        if per_step:
            def at_steps(a):
                if isinstance(a, LogSumExpRemaining) and a.step == step:
                    _, remaining = self._remaining(a)
                    return self._temp("steps", Reduction("remaining_steps", (remaining,)), ("steps", remaining), vector=False,
                                      depends_on=remaining)
                name = Symbol(self.names[a.base])
                return self._temp(f"{name}_at_order", Reduction("at_ordering", (name, order)), ("at_ordering", name), vector=False,
                                  depends_on=name + order)

            ordering = self.names_of_ordering
            steps = Add(*per_step).replace(
                lambda a: isinstance(a, LogSumExpRemaining) or isinstance(a, Indexed) and a.indices[0] == ordering[step], at_steps)
            if steps.has(step) or steps.has(LogSumExpRemaining):
                raise NotImplementedError(f"{e}: the step r enters otherwise than through x_r")
            body = self._materialize(self._lower(steps), "step")
            total += self._temp("sum", Reduction("sum", (body,)), ("ordering_sum", body), vector=False, depends_on=body)
        return total

    def _log_softmax_steps(self, terms: list, step) -> list:
        """``terms`` with each pair c·f(x_r) − c·log Σ_{i remaining} e^{f(i)} as c times one
        "remaining_log_softmax" array: the log of step r's softmax at the category placed,
        −softplus(Λ_{r+1} − f(x_r)), keeps the digits that f(x_r) − Λ_r cancels where x_r holds
        almost all the remaining mass (log p = −1e-150, not 0)."""
        out = list(terms)
        for term in terms:
            coefficient, reductions = S.One, []
            for factor in Mul.make_args(term):
                if isinstance(factor, LogSumExpRemaining):
                    reductions.append(factor)
                else:
                    coefficient *= factor
            if len(reductions) != 1 or reductions[0].step != step:
                continue
            reduction = reductions[0]
            placed = -coefficient * reduction.body.subs(reduction.index, reduction.ordering[step])
            if placed in out and term in out:
                out.remove(placed)
                out.remove(term)
                body, remaining = self._remaining(reduction)
                value = Reduction("remaining_log_softmax", (body, Symbol("_order"), remaining))
                out.append(-coefficient * self._temp("log_softmax", value, ("log_softmax", body), vector=False,
                                                     depends_on=body + Symbol("_order")))
        return out

    def _blocks_sum(self, e):
        """Σ_{b<B} f(b) over the blocks of a multi-discrete action (block b: categories o_b, …,
        o_b + n_b − 1): c·z_{o_b + x_b} − c·log Σ_{block} e^z as c times one "block_log_softmax"
        array along the blocks, added up; c·δ(j, o_b + x_b) − c·softmax over j's block as one
        "block_score" on the category axis.  Segment reductions, no loop over blocks."""
        (block, _, _), = e.limits
        order = Symbol("_order")
        terms = {"delta": {}, "softmax": {}, "logsumexp": {}, "placed": {}}
        for term in Add.make_args(e.function):
            coefficient, factors = S.One, []
            for factor in Mul.make_args(term):
                if factor.has(block):
                    factors.append(factor)
                else:
                    coefficient *= factor
            kind = None
            if len(factors) == 1:
                (factor,) = factors
                kind = ("delta" if isinstance(factor, KroneckerDelta) and j in factor.args
                        else "softmax" if isinstance(factor, SoftmaxBlock) and factor.at == j
                        else "logsumexp" if isinstance(factor, LogSumExpBlock)
                        else "placed" if isinstance(factor, Indexed) else None)
            if kind is None:
                raise NotImplementedError(f"{e}: {term} is not a term the blocks' kernels lower")
            terms[kind][coefficient if kind in ("delta", "placed") else -coefficient] = factor
        if set(terms["delta"]) != set(terms["softmax"]) or set(terms["placed"]) != set(terms["logsumexp"]):
            raise NotImplementedError(f"{e}: the blocks' terms are vectorized only as pairs c·(δ − softmax), c·(z_x − log Σ e^z)")
        total = S.Zero
        for kind, reduction_kind, vector in (("softmax", "block_score", True), ("logsumexp", "block_log_softmax", False)):
            for coefficient, reduction in terms[kind].items():
                body = self._materialize(self._lower(reduction.body), "shifted")
                sizes = Symbol(self.names[reduction.lower.function.base])  # o_b = Σ_{c<b} n_c: the sizes n
                name = self._temp(reduction_kind, Reduction(reduction_kind, (body, sizes, order)), (reduction_kind, body),
                                  vector=vector, depends_on=body + order)
                if vector:
                    self.owned.add(name)
                else:
                    name = self._temp("sum", Reduction("sum", (name,)), ("blocks_sum", name), vector=False, depends_on=name)
                total += coefficient * name
        return total

    @property
    def names_of_ordering(self):
        """The sample x, an ordering (its entries x_r index the category axis)."""
        return self.derivation.symbols["x"]

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
        if isinstance(e, Sum) and e.limits[0][2] == n_placed - 1:
            return self._ordering_sum(e)
        if isinstance(e, Sum) and e.limits[0][2] == n_blocks - 1:
            return self._blocks_sum(e)
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
