"""The multivariate normal with a Cholesky factor, derived in matrix form.

    log p(x | μ, L) = −½ zᵀz − log det L − (d/2) log 2π,   z = L⁻¹(x − μ),

for ``loc`` μ ∈ ℝ^d and ``scale_tril`` L lower triangular with a positive diagonal (Σ = LLᵀ,
log det L = Σ_i log L_ii), as ``torch.distributions.MultivariateNormal(loc, scale_tril=L)``.

The engine takes SymPy's matrix calculus for the quadratic term, Jacobi's formula for the log
determinant, then rewrites with the rules of :mod:`symelig.matrix.calculus`, each application a
recorded step:

    ∂/∂μ = L⁻ᵀz,   ∂/∂L = tril(L⁻ᵀ z zᵀ) − diag(L)⁻¹,

and for ``log_diag_tril`` A (L = tril(A, −1) + exp(diag(A)), the usual unconstrained network
output) the chain rule through L:  ∂/∂A = tril(L⁻ᵀ z zᵀ, −1) + diag(L) diag(L⁻ᵀ z zᵀ) − I.
The Fisher information of the ``loc`` block is −E[∂²/∂μ∂μᵀ] = L⁻ᵀL⁻¹ = Σ⁻¹.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

from sympy import Determinant, Inverse, MatAdd, MatMul, MatrixSymbol, Rational, Transpose, ZeroMatrix, log, pi

from ..engine import Step
from ..errors import SymeligError, did_you_mean
from ..family import Internal
from . import calculus
from .calculus import Diag, ExpDiag, Tril

NAME = "multivariate_normal"
TORCH = "MultivariateNormal"
SUPPORT = "ℝ^d"
PARAMETRIZATIONS = {
    "scale_tril": ("loc", "scale_tril"),
    "log_diag_tril": ("loc", "log_diag_tril"),
}
DOCS = {
    "scale_tril": "The parameters as PyTorch takes them: loc μ (…, d) and scale_tril L (…, d, d), lower triangular with L_ii > 0.",
    "log_diag_tril": ("Unconstrained Cholesky factor: L = tril(A, −1) + exp(diag(A)) from log_diag_tril A (…, d, d), the usual "
                      "network output; entries of A above the diagonal do not enter L and get eligibility 0."),
}

d = Internal("d", integer=True, positive=True)  # the dimension, symbolic like the categorical's K


@dataclass(frozen=True)
class MatrixDerivation:
    """The finished matrix-form math of one parametrization; printers and kernels read it."""

    param: str
    symbols: dict        # argument name -> MatrixSymbol (x, loc, scale_tril or log_diag_tril)
    whitened: object     # z
    log_prob: tuple      # the terms of log p
    definitions: tuple   # ((z, L⁻¹(x − μ)), and (L, tril(A, −1) + exp(diag A)) for log_diag_tril)
    eligibility: dict    # parameter name -> matrix expression
    hessian_loc: object  # ∂² log p/∂μ∂μᵀ
    fisher_loc: object   # −E[∂² log p/∂μ∂μᵀ]
    natural_loc: object  # F⁻¹g for the loc block's gradient g
    gradient: object     # g
    steps: tuple
    family: str = NAME

    @property
    def parameters(self) -> tuple:
        return PARAMETRIZATIONS[self.param]

    def wrt(self, name: str):
        return self.symbols[name]


def lookup(param: str | None) -> str:
    param = param or "scale_tril"
    if param not in PARAMETRIZATIONS:
        hint = did_you_mean(param, PARAMETRIZATIONS)
        raise SymeligError(f"unknown parametrization {param!r} of {NAME};{hint} choose one of: {', '.join(PARAMETRIZATIONS)}")
    return param


@functools.lru_cache(maxsize=None)
def derive_matrix(param: str = "scale_tril") -> MatrixDerivation:
    param = lookup(param)
    x, mu, L, z = (MatrixSymbol(n, d, 1 if n != "L" else d) for n in ("x", "mu", "L", "z"))
    residual = x - mu
    steps: list = []
    whitened = L.I * residual
    quadratic = MatMul(Rational(-1, 2), whitened.T, whitened)
    terms = (quadratic, -log(Determinant(L)), -d * log(2 * pi) / 2)
    named = tuple(_whiten(t, L, residual, z) for t in terms)
    steps.append(Step("log_prob", "whiten", "name the whitened residual z = L⁻¹(x − μ), so that (x − μ)ᵀΣ⁻¹(x − μ) = zᵀz",
                      MatAdd(*terms[:1]), named[0]))
    raw_loc = _differentiate("loc", terms, mu, steps)
    eligibility = {"loc": _whitened(raw_loc, "loc", L, residual, z, steps)}
    gradient_L = _whitened(_differentiate("scale_tril", terms, L, steps), "scale_tril", L, residual, z, steps)
    e_L = _project(gradient_L, steps)
    symbols = {"x": x, "loc": mu, "scale_tril": L}
    definitions = ((z, whitened),)
    if param == "scale_tril":
        eligibility["scale_tril"] = e_L
    else:
        A = MatrixSymbol("A", d, d)
        symbols = {"x": x, "loc": mu, "log_diag_tril": A}
        definitions += ((L, MatAdd(Tril(A, -1), ExpDiag(A))),)
        eligibility["log_diag_tril"] = _chain_through_log_diagonal(e_L, L, steps)
    hessian = raw_loc.diff(mu)
    steps.append(Step("loc", "matrix_calculus", "the Hessian of the loc block: ∂/∂μ of L⁻ᵀL⁻¹(x − μ)", raw_loc, hessian,
                      kind="derivative", wrt=mu))
    if hessian.has(x):
        raise RuntimeError("the loc Hessian depends on x: its expectation needs the moments of x")
    fisher = calculus.tidy(MatMul(-1, hessian))
    steps.append(Step("loc", "fisher_constant_hessian", "the Hessian does not depend on x, so F = −E[H] = −H = L⁻ᵀL⁻¹ (= Σ⁻¹)",
                      hessian, fisher))
    g = MatrixSymbol("g", d, 1)
    natural = calculus.tidy(MatMul(Inverse(fisher).doit(), g))
    steps.append(Step("loc", "natural_gradient", "F⁻¹ = (L⁻ᵀL⁻¹)⁻¹ = L Lᵀ: the natural gradient F⁻¹g is two triangular products, no inverse",
                      MatMul(Inverse(fisher), g), natural))
    return MatrixDerivation(param, symbols, z, named, definitions, eligibility, hessian, fisher, natural, g, tuple(steps))


def _differentiate(target: str, terms: tuple, wrt, steps: list):
    """∂ log p/∂wrt term by term: SymPy's matrix calculus for the quadratic term, Jacobi's
    formula for log det L, 0 for the constant."""
    parts = []
    for term in terms:
        if calculus.is_log_det(-term) and (-term).args[0].arg != wrt:
            part = ZeroMatrix(*wrt.shape)
            statement, rule = "log det L does not depend on μ: its derivative is 0", "constant"
        elif calculus.is_log_det(-term):
            part = MatMul(-1, calculus.log_det_gradient(-term, wrt))
            statement = "Jacobi's formula: ∂ log det L/∂L = L⁻ᵀ (and 0 with respect to μ)"
            rule = "jacobi_formula"
        elif term.is_Matrix:
            part = term.diff(wrt)
            statement = "matrix calculus (SymPy): ∂(−½ rᵀL⁻ᵀL⁻¹r)/∂θ for r = x − μ, with ∂L⁻¹ = −L⁻¹(∂L)L⁻¹"
            rule = "matrix_calculus"
        else:
            part = ZeroMatrix(*wrt.shape)
            statement, rule = "the term does not depend on the parameter: its derivative is 0", "constant"
        part = calculus.tidy(part) if part.is_Matrix else part
        steps.append(Step(target, rule, statement, term, part, kind="derivative", wrt=wrt))
        parts.append(part)
    return calculus.tidy(MatAdd(*parts))


def _whitened(expr, target, L, residual, z, steps):
    new = _whiten(expr, L, residual, z)
    if new != expr:
        steps.append(Step(target, "whiten", "L⁻¹(x − μ) = z and (x − μ)ᵀL⁻ᵀ = zᵀ", expr, new))
    return new


def _whiten(expr, L, residual, z):
    """Replace L⁻¹(x − μ) by z and (x − μ)ᵀL⁻ᵀ by zᵀ inside products."""
    inverse, inverse_t = Inverse(L), Inverse(Transpose(L))
    residual_t = residual.T.doit()

    def rule(e):
        if not isinstance(e, MatMul):
            return None
        factors, out, n = list(e.args), [], 0
        while n < len(factors):
            pair = tuple(factors[n:n + 2])
            if len(pair) == 2 and pair[0] == inverse and pair[1].doit() == residual.doit():
                out.append(z)
                n += 2
            elif len(pair) == 2 and pair[0].doit() == residual_t and pair[1] == inverse_t:
                out.append(z.T)
                n += 2
            else:
                out.append(factors[n])
                n += 1
        return calculus.tidy(MatMul(*out)) if len(out) < len(factors) else None

    return calculus.bottom_up(expr, rule)


def _project(gradient, steps):
    """L is lower triangular: its free entries are those on and below the diagonal, so its
    eligibility is the lower part of the unconstrained gradient."""
    projected = Tril(gradient)
    steps.append(Step("scale_tril", "triangular_projection",
                      "L has free entries only on and below the diagonal: e_L = tril(∂ log p/∂L)", gradient, projected))
    return _settle("scale_tril", projected, steps)


def _chain_through_log_diagonal(e_L, L, steps):
    """∂L_ij/∂A_ij = 1 below the diagonal and exp(A_ii) = L_ii on it (0 above)."""
    chained = MatAdd(Tril(e_L, -1), MatMul(Diag(L), Diag(e_L)))
    steps.append(Step("log_diag_tril", "chain_rule_log_diagonal",
                      "chain rule through L = tril(A, −1) + exp(diag(A)): ∂L_ij/∂A_ij = 1 for i > j, L_ii for i = j, 0 above",
                      e_L, chained))
    return _settle("log_diag_tril", chained, steps)


_RULES = (
    ("linearity", "tril and diag are linear: they distribute over sums, and diagonal factors over sums", calculus.LINEAR),
    ("triangular_identities", "L⁻ᵀ is upper triangular with diagonal 1/L_ii: tril(L⁻ᵀ) = diag(L)⁻¹; tril(D, −1) = 0 and "
     "diag(D) = D for a diagonal D; tril(tril(X), −1) = tril(X, −1); diag(tril(X)) = diag(X); diag(L) diag(L)⁻¹ = I",
     calculus.TRIANGULAR),
)


def _settle(target, expr, steps):
    while True:
        before = expr
        for rule, statement, functions in _RULES:
            new = calculus.settle(expr, functions)
            if new != expr:
                steps.append(Step(target, rule, statement, expr, new))
                expr = new
        if expr == before:
            return expr
