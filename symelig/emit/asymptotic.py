"""Sums whose terms cancel as a parameter grows, evaluated by their asymptotic series there.

Student's t F_νν = ¼[ψ₁(ν/2) − ψ₁((ν+1)/2)] − (ν+5)/(2ν(ν+1)(ν+3)) is 7/(2ν⁴) + …, while its terms
are of order 1/ν: evaluated as written it keeps 16 − 3·log₁₀ν digits (relative error 1e-5 at
ν = 1e4).  The von Mises 1 − A(κ)² − A(κ)/κ, A = I₁/I₀, is 1/(2κ²) + … from terms of order 1
(F = −1e20 instead of 0.5 at κ = 1e20).  For a special-function argument u that grows with a
parameter (ν, e^s, softplus(r)), :func:`asymptotic` compares the order of the sum as u → ∞ with
the orders of its terms; where they differ by g, the kernel takes the series (derived by SymPy,
enough terms for 1e-16 at the threshold) for u above T = (1e-12/ε)^(1/g), where the direct form
still has 12 digits, and the form as derived below it.
"""
from __future__ import annotations

import functools

from sympy import (
    Add, Dummy, Float, Integer, Max, Mul, Piecewise, cos, sin, Rational, S, count_ops, exp, expand_mul, factorial, loggamma, polygamma,
)

from ..functions import bessel_i1_i0, sigmoid, sigmoid_over_softplus, softplus

_EPS = 2.0**-52
_TERMS = 12          # series terms past the leading one
_MAX_OPS = 400       # larger expressions are left as they are (SymPy's series would take too long)


def asymptotic(expr, parameters):
    """``expr`` with Piecewise(series above T, expr below) for each growing argument whose
    terms cancel; ``parameters`` are the differentiated symbols."""
    if not expr.has(polygamma, loggamma, bessel_i1_i0) or count_ops(expr) > _MAX_OPS:
        return expr
    for u in _growing_arguments(expr, parameters):
        rewritten = _asymptotic_in(expr, u)
        if rewritten is not None:
            return rewritten
        # the terms of a sum in u alone, apart from the rest (Student's t ∂/∂ν: ψ((ν+1)/2) −
        # ψ(ν/2) − 1/ν is O(1/ν²) beside terms in w = (x − μ)/σ that cancel on their own)
        alone = [t for t in Add.make_args(expr) if t.free_symbols and t.free_symbols <= u.free_symbols]
        if expr.is_Add and 1 < len(alone) < len(expr.args):
            rewritten = _asymptotic_in(Add(*alone), u)
            if rewritten is not None:
                return rewritten + Add(*[t for t in expr.args if t not in alone])
    return expr


def _growing_arguments(expr, parameters):
    """Positive quantities that a special function of ``expr`` takes (up to a constant factor
    and shift): a positive parameter symbol, e^s or softplus(r) of a parameter."""
    found = []
    for f in expr.atoms(polygamma, loggamma, bessel_i1_i0):
        arg = f.args[-1]
        for candidate in [a for a in arg.atoms(exp, softplus) if a.free_symbols & set(parameters)] + [
            p for p in parameters if getattr(p, "is_positive", False) and p in arg.free_symbols
        ]:
            if candidate not in found:
                found.append(candidate)
    return found


def _asymptotic_in(expr, u):
    v = Dummy("v", positive=True)
    s = Dummy("s", positive=True)
    body = expr.replace(lambda a: isinstance(a, sigmoid_over_softplus) and softplus(a.args[0]) == u,
                        lambda a: sigmoid(a.args[0]) / softplus(a.args[0]))
    if isinstance(u, softplus):  # softplus(r) > 37 means r > 37: sigmoid(r) is 1 to double precision
        body = body.subs({sigmoid(u.args[0]): 1, sigmoid(-u.args[0]): 0})
    body = body.subs(u, v)
    if body.has(*u.free_symbols) and not isinstance(u, softplus):
        return None  # the parameter appears other than through u
    if isinstance(u, softplus) and body.has(softplus(u.args[0])):
        return None
    bounded = body.atoms(cos, sin, sigmoid)
    stand_ins = {b: Dummy() for b in bounded}
    if body.xreplace(stand_ins).free_symbols - {v} - set(stand_ins.values()):
        return None  # another unbounded quantity: a series in 1/u alone would assume it small beside u
    if any(b.has(v) for b in bounded) or not _cancels(body, v):
        return None
    terms = [t for t in Add.make_args(expand_mul(body.subs(v, 1 / s))) if t.has(s)]
    body = body.replace(lambda a: isinstance(a, bessel_i1_i0) and a.args[0].has(v), lambda a: _bessel_ratio(a.args[0], _TERMS + 6))
    at_zero = body.subs(v, 1 / s)
    try:
        orders = [_order(t, s) for t in terms]
        cut = max(orders) + _TERMS + 4
        shift = -min(orders)
        expanded = (at_zero * s**shift).expand()
        if expanded.is_polynomial(s):  # (Bessel ratios: a polynomial in 1/u, cut by hand)
            total = Add(*[t / s**shift for t in Add.make_args(expanded) if _order(t, s) - shift < cut])
        else:
            total = at_zero.series(s, 0, cut).removeO()
    except Exception:  # noqa: BLE001 -- no series: the form as derived
        return None
    if not orders or total == 0:
        return None
    lead = _order(total, s)
    gap = lead - min(orders)
    if gap < 1:
        return None
    total = Add(*[t for t in Add.make_args(expand_mul(total)) if _order(t, s) <= lead + _TERMS])
    threshold = _threshold(total, s, lead, gap)
    if threshold is None:
        return None
    if isinstance(u, softplus):
        threshold = max(threshold, 40)
    # the series taken at u ≥ T only: both branches of the where() are computed, and 1/u^14 at
    # u = 1e-150 would overflow (harmlessly, but with a warning)
    series = total.subs(s, 1 / Max(u, threshold))
    return Piecewise((series, u > threshold), (expr, True))


def _cancels(body, v) -> bool:
    """Whether the terms of ``body`` cancel to 1e-4 of the largest at v = 1e6 (the other symbols
    at 0.3): the cheap test before SymPy's series."""
    terms = Add.make_args(expand_mul(body))
    if len(terms) < 2:
        return False
    values = {v: Float(1e6, 30), **{x: Float(0.3, 30) for x in body.free_symbols if x != v}}
    try:  # (floats: an exact 10**6 would make SymPy sum ψ₁(500000) exactly)
        numbers = [complex(t.xreplace(values).replace(lambda a: isinstance(a, bessel_i1_i0), lambda a: a.doit()).evalf(30))
                   for t in terms]
        total = abs(sum(numbers))
        return total < 1e-4 * max(abs(n) for n in numbers)
    except (TypeError, ValueError):
        return False


def _order(term, s) -> int:
    """The exponent of the leading power of s (as s → 0+)."""
    leading = term.as_leading_term(s)
    exponent = S.Zero
    for f in Mul.make_args(leading):
        base, power = f.as_base_exp()
        if base == s:
            exponent += power
    return int(exponent)


def _threshold(series, s, lead, gap):
    """The smallest u (a power of 10 times 1, 2 or 5) above which the series is exact to 1e-16
    and below which the direct form keeps 1e-12, or None."""
    direct = (1e-12 / _EPS) ** (1.0 / gap)
    coefficients = {}
    others = {x: Rational(3 + 4 * n, 10) for n, x in enumerate(sorted(series.free_symbols - {s}, key=str))}
    for t in Add.make_args(series):
        order = _order(t, s)
        coefficients[order] = coefficients.get(order, 0) + abs(complex(t.subs(others).subs(s, 1)))
    last = max(coefficients)
    for u in (direct, direct * 2, direct * 5, direct * 10, direct * 100):
        head = coefficients.get(lead, 0) * u ** -lead
        if head and coefficients[last] * u ** -(last + 1) * 10 <= 1e-16 * head:
            return Rational(round(u, 0)) if u > 1 else Rational(u)
    return None


@functools.lru_cache(maxsize=None)
def _ratio_coefficients(terms: int):
    """Coefficients c_k of I₁(z)/I₀(z) ~ Σ c_k z^(−k): Hankel's expansions of I₁ and I₀ (the
    common e^z/√(2πz) cancels), divided as power series in 1/z with exact rationals."""
    def hankel(nu):
        out = []
        for k in range(terms + 1):
            a = Integer(1)
            for m in range(1, k + 1):
                a *= 4 * nu**2 - (2 * m - 1) ** 2
            out.append((-1) ** k * a / (factorial(k) * 8**k))
        return out

    top, bottom = hankel(1), hankel(0)
    ratio = []
    for n in range(terms + 1):
        ratio.append((top[n] - sum(bottom[k] * ratio[n - k] for k in range(1, n + 1))) / bottom[0])
    return tuple(ratio)


def _bessel_ratio(z, terms):
    return Add(*[c * z**-k for k, c in enumerate(_ratio_coefficients(terms))])


__all__ = ["asymptotic"]
