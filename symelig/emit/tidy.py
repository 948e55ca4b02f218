"""Formulas as a paper prints them: the same value, written the way a reader expects.

The engine's expressions are right but not always in print form: SymPy may hold (μ − x) in one
factor and (x − μ) in the next, expand μ² + νσ² + x² − 2μx where a reader sees νσ² + (x − μ)²,
and write softplus(r) again and again where the reparametrization named it β.  ``tidy`` rewrites
for reading only (kernels are generated from the engine's expressions, never from these):

* one orientation of a difference with the sample: (x − μ), the sign moved in front;
* a sum whose terms shrink when the sample is shifted by a parameter (x = μ + d) is written
  in x − μ, and then like terms combine;
* a scalar reparametrization's right side (softplus(r), e^s) is written as the quantity it
  defines (β, σ), next to a "where β = softplus(r)".
"""
from __future__ import annotations

from sympy import Add, Dummy, Indexed, Mul, Pow, Symbol, exp, expand, factor_terms, log

from ..functions import log_softplus, log_softplus_curvature, sigmoid, sigmoid_over_softplus, softplus

# functions kept whole for the kernels' stability, printed as what they are
_UNFOLD = {
    sigmoid_over_softplus: lambda z: sigmoid(z) / softplus(z),
    log_softplus: lambda z: log(softplus(z)),
    log_softplus_curvature: lambda z: (sigmoid(-z) * softplus(z) - sigmoid(z)) / softplus(z) ** 2,
}


def tidy(expr, sample=None, definitions=()):
    """``expr`` rewritten for print (equal in value); ``sample`` is the symbol x, ``definitions``
    [(target, value)] of scalar reparametrizations."""
    expr = expr.replace(lambda a: isinstance(a, tuple(_UNFOLD)), lambda a: _UNFOLD[type(a)](a.args[0]))
    for target, value in definitions:
        if not isinstance(target, Symbol) or value.is_Symbol:
            continue
        if isinstance(value, exp) and value.args[0].is_Symbol:  # σ = e^s: e^(−2s) = σ^(−2)
            expr = expr.subs(value.args[0], log(target))
        else:
            expr = expr.xreplace({value: target})
    if isinstance(sample, Symbol) and expr.has(sample):  # a scalar sample (categories are indices)
        expr = _oriented(_shifted(expr, sample), sample)
    return _common_denominator(expr)


def _common_denominator(expr):
    """A sum whose terms all divide by the same d, written (a − b)/d where that prints narrower:
    (Σ_i softmax(z/τ)_i z_i − z_x)/τ² rather than two fractions over τ²."""
    if not expr.is_Add:
        return expr
    from .breaking import width
    from .latex import tex

    pulled = factor_terms(expr)
    number, rest = pulled.as_coeff_Mul()
    sums = [f for f in Mul.make_args(rest) if f.is_Add]
    common = Mul(*(f for f in Mul.make_args(rest) if not f.is_Add))
    if len(sums) != 1 or not common.free_symbols or not all(
            f.is_Pow and f.exp.is_negative for f in Mul.make_args(common)):
        return expr
    if any(term.as_numer_denom()[1] != 1 for term in sums[0].args):  # no fraction inside a fraction
        return expr
    candidate = Mul(number * sums[0], common, evaluate=False) if number != 1 else Mul(sums[0], common)
    return candidate if width(tex(candidate)) < width(tex(expr)) else expr


def _shifted(expr, x):
    """Sums in x written through x − c where that has fewer terms: μ² + νσ² + x² − 2μx → νσ² + (x − μ)²."""
    if expr.is_Atom:
        return expr
    args = [_shifted(a, x) for a in expr.args]
    expr = expr.func(*args) if args != list(expr.args) else expr
    if not (expr.is_Add and expr.has(x)) or len(expr.args) < 3:
        return expr
    d = Dummy("d")
    best, size = expr, len(expr.args)
    for c in sorted(expr.free_symbols - {x}, key=str):
        if expr.has(Indexed) or not isinstance(c, Symbol):
            continue
        shifted = expand(expr.xreplace({x: d + c}))
        if len(Add.make_args(shifted)) < size and not shifted.has(c) or len(Add.make_args(shifted)) < size - 1:
            written = shifted.xreplace({d: x - c})
            best, size = written, len(Add.make_args(shifted))
    return best


def _difference_sign(term, x) -> int:
    """−1 for a sum in which x appears with a negative coefficient (μ − x), else 1."""
    if not term.is_Add or not term.has(x):
        return 1
    for a in term.args:
        if a == -x:
            return -1
        if a == x:
            return 1
    return 1


def _oriented(expr, x):
    """Every (c − x) factor flipped to (x − c), the sign collected in front; even powers flip freely."""
    if expr.is_Atom:
        return expr
    args = [_oriented(a, x) for a in expr.args]
    if expr.is_Mul:
        sign, factors = 1, []
        for f in args:
            base, power = (f.base, f.exp) if f.is_Pow else (f, 1)
            if _difference_sign(base, x) < 0 and (power == 1 or (power.is_Integer)):
                flipped = -base
                factors.append(Pow(flipped, power) if power != 1 else flipped)
                sign *= (-1) ** int(power)
            else:
                factors.append(f)
        return Mul(sign, *factors)
    if expr.is_Pow and expr.exp.is_Integer and expr.exp.is_even and _difference_sign(expr.base, x) < 0:
        return Pow(-args[0], args[1])
    return expr.func(*args) if args != list(expr.args) else expr
