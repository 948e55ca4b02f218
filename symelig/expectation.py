"""Symbolic expectations over the sample: E_{x ~ p(x | θ)}[f(x, θ)] in closed form.

The Fisher information needs E[H] (or E[e eᵀ]).  No general integrator is trusted here: SymPy's
``integrate`` answers E[z² e^{−z}] under a Gumbel density with an imaginary part, and times out
on Weibull and von Mises moments (SymPy 1.14).  Instead the expectation is taken by one of
three exact routes, tried in order:

1. f does not depend on x: E[f] = f.
2. x is a category index: E[f] = Σ_m π_m f(m), an exact sum whose Kronecker deltas the rules
   collapse (Σ_m π_m δ_jm δ_lm / π_m² = δ_jl / π_j).
3. f is affine in statistics whose expectations the family declares (``Family.moments``, e.g.
   E[x] = λ for the Poisson, E[log x_i] = ψ(α_i) − ψ(Σα) for the Dirichlet): linearity.
4. the family writes x through a base variable t with a known Mellin transform M(s) = E[t^s]
   (``Family.standard``): after substituting x, f is a sum of c·t^a·(log t)^b, and
   E[t^a (log t)^b] = M⁽ᵇ⁾(a).  A symmetric representation averages the sign ε = ±1.

Anything else raises :class:`NoClosedForm` naming the part that could not be averaged.
"""
from __future__ import annotations

from itertools import product

from sympy import Add, Indexed, IndexedBase, Lambda, Mul, Sum, diff, exp, expand, expand_func, expand_mul, log, numbered_symbols, sympify

from . import rules
from .engine import substitute, rewrite
from .family import EPSILON, Internal, K, i, k, s as mellin_argument, t
from .functions import xdivy, xlogy

m = Internal("m", integer=True, nonnegative=True)  # the category a categorical expectation sums over


class NoClosedForm(Exception):
    """The expectation is not available in closed form from what the family declares."""


def expectation(expr, first, ctx) -> tuple:
    """(E[expr] over x, how it was taken) for the derivation ``first``; raises NoClosedForm."""
    family, symbols = first.family, first.symbols
    x = symbols["x"]
    # 0·log 0 = 0 and 0/0 = 0 only matter on a set of probability zero
    expr = expr.replace(lambda e: isinstance(e, (xlogy, xdivy)), lambda e: e.doit())
    if not expr.has(x):
        return expr, "free of x"
    if first.sample_index is not None:
        return _category(expr, first, ctx), "an exact sum over the K categories"
    substitution = first.substitution
    moments = family.moments(**symbols)
    declared = {
        substitute(sympify(s), substitution, symbols): substitute(sympify(v), substitution, symbols)
        for s, v in moments.items()
    }
    if declared:
        used: set = set()
        value = _affine(expr, x, declared, used)
        if value is None and any(_is_power(s, x) for s in declared):
            # declared powers x^k (the Poisson's E[x²], E[x³]…) are found once the polynomial in
            # x is multiplied out: ½(x log(λ/λ_ref) + λ_ref − λ)², an estimator k2, holds x² and x
            used = set()
            value = _affine(expand(expr, log=False, power_exp=False), x, declared, used)
        if value is not None:
            from .emit.text import readable  # prose: E[(x − μ)²] = σ², not SymPy's (-mu + x)**2

            # the powers x^k a moment generating function gives only where this average used them:
            # E[x] = λ for a Poisson KL, not E[x⁴] as well
            listed = "; ".join(f"E[{readable(s)}] = {readable(v)}" for (s, v), at in zip(moments.items(), declared)
                               if at in used or not _is_power(at, x))
            return value, f"linearity and the moments {listed}"
    standard = family.standard(**symbols)
    if standard is not None:
        return _mellin(expr, x, standard, substitution, symbols), f"x written through t, {standard.law}"
    if any(s.has(x) for s in expr.atoms(Sum)):
        # x inside a sum over the categories or components: a mixture's responsibilities
        # e^(f_i(x)) / Σ_k e^(f_k(x)), a ranking's sums over the categories it has not placed; no
        # statistic of x a family could declare makes such a ratio's mean a finite expression
        raise NoClosedForm("x enters through a ratio of sums over K terms (a mixture's responsibilities, a ranking's "
                           "unplaced categories): its mean is no finite combination of moments")
    from .emit.text import readable

    raise NoClosedForm(f"{family.name} declares no moments for the statistics of x in {readable(expr)}")


def _category(expr, first, ctx):
    """Σ_m π_m f(m), with π the family's normalized probabilities written in θ."""
    x = first.symbols["x"]
    (canonical,) = first.family.parameters  # the categorical's one canonical parameter, π
    value = first.substitution.get(canonical)
    weight = value(m) if isinstance(value, Lambda) else first.symbols[canonical][m]
    total = Sum(weight * expr.subs(x, m), (m, 0, K - 1))
    total = rewrite(total, rules.ALGEBRA, rules.Context(ctx.category_indices - {x}, ctx.free_index, ctx.identities))
    if total.has(m) or total.has(x):
        raise NoClosedForm(f"the sum over categories of {expr} did not collapse")
    return total


def _affine(expr, x, declared: dict, used: set | None = None):
    """expr with each declared statistic replaced by its expectation, when expr is affine in
    them and has no other dependence on x; else None.  The statistics found go into ``used``."""
    names = numbered_symbols("S", cls=Internal, real=True)
    # a product statistic x_j·x_l is found in a product of sums only once it is multiplied out:
    # (x_j/w_j − x_j/(w_j + 1))·(x_l/w_l − x_l/(w_l + 1)) holds it four times
    replaced = expand_mul(expr) if any(s.is_Mul for s in declared) else expr
    values = {}
    # longest statistic first, so that (x − μ)² is taken whole before a bare x
    for statistic, value in sorted(declared.items(), key=lambda kv: -kv[0].count_ops()):
        for at in _instances((statistic, value), replaced, x):
            if used is not None and replaced.has(at[0]):
                used.add(statistic)
            name = next(names)
            values[name] = at[1]
            # subs, not xreplace: a product statistic x_j·x_l sits inside a larger product
            replaced = replaced.subs(at[0], name) if at[0].is_Mul else replaced.xreplace({at[0]: name})
    if replaced.has(x) or not values:
        return None
    polynomial = expand(replaced)
    for term in Add.make_args(polynomial):
        degree = 0
        for factor in Mul.make_args(term):
            base, exponent = factor.as_base_exp()
            if base in values and exponent.is_Integer and exponent > 0:
                degree += int(exponent)
            elif factor.free_symbols & set(values):
                return None  # a statistic inside a function or under a negative power: E[f(s)] ≠ f(E[s])
        if degree > 1:
            return None
    return polynomial.xreplace(values)


def _is_power(statistic, x) -> bool:
    """x^k with k ≥ 2: a moment a family derives from its moment generating function."""
    return statistic.is_Pow and statistic.base == x and statistic.exp.is_Integer and statistic.exp >= 2


def _instances(statistic, expr, x) -> list:
    """[(statistic at indices, expectation at indices)]: a vector statistic is declared at the
    bound indices i (and k, for a product x_i x_k) and applies at every combination of the
    indices x appears with in ``expr``."""
    statistic, value = statistic
    if not isinstance(x, IndexedBase):
        return [(statistic, value)]
    indices = sorted({a.indices[0] for a in expr.atoms(Indexed) if a.base == x}, key=str)
    bound = [b for b in (i, k) if statistic.has(b)]
    out = []
    for chosen in product(indices, repeat=len(bound)):
        at = dict(zip(bound, chosen))
        out.append((statistic.subs(at, simultaneous=True), value.subs(at, simultaneous=True)))
    return out


def _mellin(expr, x, standard, substitution, symbols):
    s = mellin_argument
    mellin = substitute(standard.mellin(s), substitution, symbols)
    representation = substitute(standard.x, substitution, symbols)
    signs = (1, -1) if standard.symmetric else (1,)
    # with a fair sign, the odd powers of ε cancel in the average before anything is expanded
    averaged = Add(*[expr.subs(x, representation.subs(EPSILON, sign)) for sign in signs]) / len(signs)
    # exp(c log t + d) = t^c e^d (a Gumbel density evaluated at another Gumbel's sample)
    averaged = averaged.replace(lambda e: isinstance(e, exp) and e.has(t), _exp_of_log)
    total = 0
    for term in Add.make_args(expand(averaged, force=True)):
        coefficient, power, logs = 1, 0, 0
        for factor in Mul.make_args(term):
            base, exponent = factor.as_base_exp()
            if not factor.has(t):
                coefficient *= factor
            elif base == t and not exponent.has(t):
                power += exponent
            elif isinstance(base, log) and base.args[0] == t and exponent.is_Integer and exponent > 0:
                logs += exponent
            else:
                raise NoClosedForm(f"after x = {representation}, the factor {factor} is not a power of t or log t")
        total += coefficient * diff(mellin, s, logs).subs(s, power)
    return expand_func(total)  # Γ(a + n)/Γ(a) as a polynomial in a: rational results


def _exp_of_log(e):
    """exp(Σ c_k log t + rest) as t^(Σ c_k)·exp(rest) where the c_k are free of t; else e."""
    power, rest = 0, []
    for term in Add.make_args(expand(e.args[0])):
        c = term / log(t)
        if term.has(log(t)) and not c.has(t):
            power += c
        else:
            rest.append(term)
    if power == 0 or any(r.has(t) for r in rest):
        return e
    return t**power * exp(Add(*rest))
