"""Matrix calculus for families with matrix parameters: a few operators SymPy lacks, the named
rewrite rules the derivation applies, and printers in the notation papers use.

SymPy differentiates scalar functions of ``MatrixSymbol`` objects (``(zᵀz).diff(μ)``) but not
determinants, and knows nothing of triangular matrices.  What is added here, each as a rule
with a statement that ``explain`` shows:

* Jacobi's formula ∂ log det L/∂L = L⁻ᵀ;
* the projection of a gradient onto lower-triangular matrices, ``tril`` (a parameter whose
  entries above the diagonal are fixed at 0 has, as its gradient, the lower part of the
  unconstrained one);
* what ``tril`` and ``diag`` do to triangular and diagonal matrices (tril(L⁻ᵀ) = diag(L)⁻¹:
  L⁻ᵀ is upper triangular with diagonal 1/L_ii).

Notation: ``diag(X)`` is the diagonal matrix holding X's diagonal; ``tril(X, k)`` keeps the
entries on and below diagonal k (k = −1: strictly below).
"""
from __future__ import annotations

from sympy import Basic, Determinant, Identity, Integer, Inverse, MatAdd, MatMul, MatrixSymbol, Transpose, ZeroMatrix, log
from sympy.matrices.expressions import MatrixExpr


class Tril(MatrixExpr):
    """tril(X, k): X with every entry above diagonal k set to 0."""

    def __new__(cls, arg, k=0):
        return Basic.__new__(cls, arg, Integer(k))

    @property
    def shape(self):
        return self.args[0].shape

    @property
    def arg(self):
        return self.args[0]


class Diag(MatrixExpr):
    """diag(X): the diagonal matrix with X's diagonal."""

    def __new__(cls, arg):
        return Basic.__new__(cls, arg)

    @property
    def shape(self):
        return self.args[0].shape

    @property
    def arg(self):
        return self.args[0]


class ExpDiag(MatrixExpr):
    """exp(diag(A)): the diagonal matrix with entries exp(A_ii)."""

    def __new__(cls, arg):
        return Basic.__new__(cls, arg)

    @property
    def shape(self):
        return self.args[0].shape

    @property
    def arg(self):
        return self.args[0]


def is_diagonal(expr) -> bool:
    if isinstance(expr, (Diag, ExpDiag, Identity, ZeroMatrix)):
        return True
    if isinstance(expr, Inverse):
        return is_diagonal(expr.arg)
    if isinstance(expr, MatMul):
        return all(is_diagonal(f) for f in expr.args if f.is_Matrix)
    return False


# rewrite machinery ---------------------------------------------------------------------------
def bottom_up(expr, rule):
    """``expr`` with ``rule`` (expr → new expr, or None) applied to every node, leaves first."""
    if not isinstance(expr, Basic) or not expr.args:
        return expr
    args = [bottom_up(a, rule) for a in expr.args]
    if any(a is not b for a, b in zip(args, expr.args)):
        expr = _rebuild(expr, args)
    new = rule(expr)
    return expr if new is None else new


def _rebuild(expr, args):
    if isinstance(expr, MatAdd):
        return tidy(MatAdd(*args))
    if isinstance(expr, MatMul):
        return tidy(MatMul(*args))
    return expr.func(*args)


def tidy(expr):
    """Flatten sums and products, drop zero terms and identity factors."""
    if isinstance(expr, MatAdd):
        terms = [t for t in expr.args if not _is_zero(t)]
        if not terms:
            return ZeroMatrix(*expr.shape)
        return terms[0] if len(terms) == 1 else MatAdd(*terms).doit(deep=False)
    if isinstance(expr, MatMul):
        if any(_is_zero(f) for f in expr.args):
            return ZeroMatrix(*expr.shape)
        factors = [f for f in expr.args if not isinstance(f, Identity)]
        if not any(f.is_Matrix for f in factors):  # only scalars left: c·I
            factors.append(Identity(expr.shape[0]))
        return factors[0] if len(factors) == 1 else MatMul(*factors).doit(deep=False)
    return expr


def _is_zero(expr) -> bool:
    return isinstance(expr, ZeroMatrix) or (isinstance(expr, MatMul) and any(isinstance(f, ZeroMatrix) for f in expr.args))


def _linear(operator):
    """A rule: ``operator`` distributes over sums and takes scalar factors out."""

    def rule(expr):
        if not isinstance(expr, operator):
            return None
        inner, rest = expr.args[0], expr.args[1:]
        if isinstance(inner, MatAdd):
            return tidy(MatAdd(*(operator(t, *rest) for t in inner.args)))
        if isinstance(inner, MatMul) and not inner.args[0].is_Matrix:
            coefficient, matrix = inner.as_coeff_mmul()
            return tidy(MatMul(coefficient, operator(tidy(matrix), *rest)))
        return None

    return rule


def _distribute_products(expr):
    """P (A + B) = P A + P B for a diagonal P: the chain rule's diag(L)·(…)."""
    if not isinstance(expr, MatMul):
        return None
    for n, f in enumerate(expr.args):
        if isinstance(f, MatAdd):
            before, after = expr.args[:n], expr.args[n + 1:]
            return tidy(MatAdd(*(tidy(MatMul(*before, t, *after)) for t in f.args)))
    return None


def _triangular_identities(expr):
    """What tril and diag do to products whose triangular shape is known."""
    if isinstance(expr, Tril):
        inner, k = expr.args[0], int(expr.args[1])
        if isinstance(inner, Tril):  # tril(tril(X), k) = tril(X, min(k, k'))
            return Tril(inner.args[0], min(k, int(inner.args[1])))
        if is_diagonal(inner):
            return inner if k >= 0 else ZeroMatrix(*inner.shape)
        if _is_inverse_transpose(inner):  # upper triangular, diagonal 1/L_ii
            diagonal = Inverse(Diag(inner.arg.arg))
            return diagonal if k >= 0 else ZeroMatrix(*inner.shape)
    if isinstance(expr, Diag):
        inner = expr.args[0]
        if isinstance(inner, Tril) and int(inner.args[1]) >= 0:
            return Diag(inner.args[0])
        if isinstance(inner, Tril):
            return ZeroMatrix(*inner.shape)
        if is_diagonal(inner):
            return inner
    if isinstance(expr, MatMul):  # diag(L) diag(L)⁻¹ = I
        factors = list(expr.args)
        for n in range(len(factors) - 1):
            a, b = factors[n], factors[n + 1]
            if (isinstance(b, Inverse) and b.arg == a) or (isinstance(a, Inverse) and a.arg == b):
                return tidy(MatMul(*factors[:n], Identity(a.shape[0]), *factors[n + 2:]))
    return None


def _is_inverse_transpose(expr) -> bool:
    return isinstance(expr, Inverse) and isinstance(expr.arg, Transpose) and isinstance(expr.arg.arg, MatrixSymbol)


LINEAR = (_linear(Tril), _linear(Diag), _distribute_products)
TRIANGULAR = (_triangular_identities,)


def settle(expr, rules):
    """Apply ``rules`` bottom-up until nothing changes."""
    for _ in range(20):
        new = expr
        for rule in rules:
            new = bottom_up(new, rule)
        if new == expr:
            return expr
        expr = new
    raise RuntimeError(f"rewriting {expr} did not settle")


def log_det_gradient(expr, wrt):
    """Jacobi's formula: ∂ log det L/∂L = L⁻ᵀ (0 for any other matrix)."""
    (determinant,) = expr.args
    assert isinstance(determinant, Determinant)
    return Inverse(Transpose(wrt)) if determinant.arg == wrt else ZeroMatrix(*wrt.shape)


def is_log_det(expr) -> bool:
    return isinstance(expr, log) and isinstance(expr.args[0], Determinant)
