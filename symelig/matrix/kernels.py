"""Kernels printed from the matrix-form derivation, for numpy and for any array API library.

Vectors are arrays (…, d) and matrices (…, d, d), batch axes broadcasting.  Every product with
an inverse factor becomes a triangular solve (L⁻¹b: forward substitution; L⁻ᵀb: back
substitution), so no inverse is formed and a sample costs O(d²); an outer product under tril
is one masked (…, d, d) array; a diagonal matrix is carried as the vector of its diagonal and
added onto a matrix's diagonal.  A solve used twice (L⁻ᵀz in ∂/∂μ and ∂/∂L) is computed once.
The printer refuses any construct it does not know rather than guess.
"""
from __future__ import annotations

from sympy import Identity, Inverse, MatAdd, MatMul, MatrixSymbol, Symbol, Transpose, log, pi, pycode

from .calculus import Diag, ExpDiag, Tril, is_diagonal, is_log_det
from .normal import MatrixDerivation

ARGUMENT = {"x": "x", "mu": "loc", "L": "scale_tril", "A": "log_diag_tril", "z": "z", "g": "grad"}
TRIANGULAR = {"L"}  # the matrices a solve may be emitted for: lower triangular by the family's constraint


class _Printer:
    """One function body: lines of temporaries, each solve emitted once.

    ``emit`` returns (code, kind) with kind "vector" (…, d), "row" (a transposed vector),
    "matrix" (…, d, d), "diagonal" (the diagonal (…, d) of a diagonal matrix) or "scalar" (…).
    """

    def __init__(self, prefix: str):
        self.prefix = prefix  # "" for numpy helpers, "xp, " for array API helpers
        self.lines: list = []
        self.names: dict = {}

    def call(self, helper: str, *args) -> str:
        return f"_{helper}({self.prefix}{', '.join(args)})"

    def temporary(self, key, code: str) -> str:
        if key not in self.names:
            self.names[key] = f"t{len(self.names)}"
            self.lines.append(f"{self.names[key]} = {code}")
        return self.names[key]

    def emit(self, expr):
        if isinstance(expr, MatrixSymbol):
            return ARGUMENT[expr.name], "vector" if expr.shape[1] == 1 else "matrix"
        if isinstance(expr, Transpose) and expr.arg.shape[1] == 1:
            return self.emit(expr.arg)[0], "row"
        if isinstance(expr, Identity):
            return "1.0", "diagonal"
        if isinstance(expr, Diag):
            return self.diagonal_of(expr.arg), "diagonal"
        if isinstance(expr, ExpDiag):
            return f"{self.call('exp', self.call('diagonal', self.emit(expr.args[0])[0]))}", "diagonal"
        if isinstance(expr, Inverse) and isinstance(expr.arg, Diag):
            return f"(1.0 / {self.diagonal_of(expr.arg.args[0])})", "diagonal"
        if isinstance(expr, Tril):
            inner, k = expr.args[0], int(expr.args[1])
            if _is_outer(inner):  # the outer product made and masked in one array
                return self.call("tril_outer", *self.outer_factors(inner), str(k)), "matrix"
            return self.call("tril", self.emit(inner)[0], str(k)), "matrix"
        if isinstance(expr, MatAdd):
            return self.add(expr)
        if isinstance(expr, MatMul):
            return self.product(expr)
        raise NotImplementedError(f"no kernel for {type(expr).__name__}: {expr}")

    def diagonal_of(self, expr) -> str:
        if _is_outer(expr):  # diag(a bᵀ) = a ⊙ b
            a, b = self.outer_factors(expr)
            return f"({a} * {b})"
        code, kind = self.emit(expr)
        return code if kind == "diagonal" else self.call("diagonal", code)

    def outer_factors(self, expr):
        *left, right = expr.args
        return self.emit(MatMul(*left) if len(left) > 1 else left[0])[0], self.emit(right.arg)[0]

    def add(self, expr):
        """Matrices and vectors summed; diagonal terms added onto the diagonal at the end."""
        full, diagonal, kinds = "", "", set()
        for term in sorted(expr.args, key=lambda t: _negative(t)):
            negative = _negative(term)
            code, kind = self.emit(-term if negative else term)
            kinds.add(kind)
            if kind == "diagonal":
                diagonal = _join(diagonal, code, negative)
            else:
                full = _join(full, code, negative)
        if len(kinds - {"diagonal"}) > 1:
            raise NotImplementedError(f"a sum of {kinds}: {expr}")
        if not full:
            return diagonal, "diagonal"
        if diagonal:
            if full.isidentifier():  # an argument or a shared temporary: add_to_diagonal writes into its first argument
                full = self.call("copy", full)
            return self.call("add_to_diagonal", full, diagonal), "matrix"
        return full, kinds.pop()

    def product(self, expr):
        coefficient, matrix = expr.as_coeff_mmul()
        factors = list(matrix.args) if isinstance(matrix, MatMul) else [matrix]
        if len(factors) == 2 and isinstance(factors[0], Transpose) and factors[1].shape[1] == 1:  # aᵀb
            code, kind = self.call("dot", self.emit(factors[0].arg)[0], self.emit(factors[1])[0]), "scalar"
        elif len(factors) > 1 and _is_outer(MatMul(*factors)):
            code, kind = self.call("outer", *self.outer_factors(MatMul(*factors))), "matrix"
        elif all(is_diagonal(f) for f in factors):
            code, kind = " * ".join(self.emit(f)[0] for f in factors), "diagonal"
        else:
            code, kind = self.fold(factors)
        if coefficient == 1:
            return code, kind
        if coefficient == -1:
            return f"(-{code})", kind
        return f"({float(coefficient)!r} * {code})", kind

    def fold(self, factors):
        """Right to left: each factor applied to what its right made (solves, never inverses)."""
        *left, last = factors
        if isinstance(last, Inverse) and isinstance(last.arg, MatrixSymbol):  # L⁻¹ as a whole: L X = I
            operand = self.emit(last.arg)[0]
            code, kind = self.call("solve_lower_columns", operand, self.call("eye_like", operand)), "columns"
        else:
            code, kind = self.emit(last)
        if kind not in ("vector", "columns"):
            raise NotImplementedError(f"a product ending in a {kind}: {factors}")
        for factor in reversed(left):
            helper, operand = _applied(factor)
            operand = self.emit(operand)[0]
            if kind == "columns":
                code = self.call(f"{helper}_columns", operand, code)
            else:
                code = self.temporary((helper, operand, code), self.call(helper, operand, code))
        return code, "matrix" if kind == "columns" else "vector"


def _applied(factor):
    """(helper, matrix) applying ``factor`` to a vector: solves for inverses, products otherwise."""
    inverted = factor.arg.arg if isinstance(factor, Inverse) and isinstance(factor.arg, Transpose) else \
        factor.arg if isinstance(factor, Inverse) else None
    if inverted is not None and inverted.name not in TRIANGULAR:
        raise NotImplementedError(f"an inverse of {inverted}, which is not known to be lower triangular")
    if isinstance(factor, Inverse) and isinstance(factor.arg, Transpose):
        return "solve_lower_transposed", inverted
    if isinstance(factor, Inverse):
        return "solve_lower", inverted
    if isinstance(factor, Transpose) and isinstance(factor.arg, MatrixSymbol):
        return "matvec_transposed", factor.arg
    if isinstance(factor, MatrixSymbol):
        return "matvec", factor
    raise NotImplementedError(f"no kernel applies {factor} to a vector")


def _negative(term) -> bool:
    return isinstance(term, MatMul) and bool(term.as_coeff_mmul()[0] < 0)


def _join(total: str, code: str, negative: bool) -> str:
    if not total:
        return f"(-{code})" if negative else code
    return f"{total} - {code}" if negative else f"{total} + {code}"


def _is_outer(expr) -> bool:
    return isinstance(expr, MatMul) and isinstance(expr.args[-1], Transpose) and expr.args[-1].arg.shape[1] == 1 \
        and expr.args[0].is_Matrix


def _log_prob(printer: _Printer, terms) -> str:
    """The terms of log p, each negative one subtracted."""
    total = ""
    for term in terms:
        if is_log_det(-term):  # L triangular: log det L = Σ_i log L_ii
            total = _join(total, printer.call("log_det_triangular", printer.emit((-term).args[0].arg)[0]), True)
        elif term.is_Matrix:
            negative = _negative(term)
            total = _join(total, printer.emit(-term if negative else term)[0], negative)
        else:  # the constant −(d/2) log 2π, d read from x's shape
            total = _join(total, pycode((-term).subs(log(2 * pi), Symbol("LOG_2PI"))), True)
    return total


def _definitions(p: _Printer, m: MatrixDerivation, whitened: bool) -> None:
    for target, value in reversed(m.definitions):  # L from A first, then z = L⁻¹(x − μ)
        if target == m.whitened and not whitened:
            continue
        name, code = ARGUMENT[target.name], p.emit(value)[0]
        if p.lines and p.lines[-1].startswith(f"{code} = "):  # the solve just emitted: give it its name
            p.lines[-1] = name + p.lines[-1][len(code):]
            p.names = {k: (name if v == code else v) for k, v in p.names.items()}
        else:
            p.lines.append(f"{name} = {code}")


def functions_source(m: MatrixDerivation, prefix: str) -> str:
    """``log_prob``, ``eligibility``, ``fisher`` (the loc block) and ``natural_gradient`` (the
    loc block: F⁻¹g) of one parametrization, as Python source."""
    parameters = ", ".join(m.parameters)
    out = []
    for function, arguments, doc in (
        ("log_prob", f"x, {parameters}", "log p(x | θ) over the broadcast batch."),
        ("eligibility", f"x, {parameters}", "{name: ∂ log p/∂name}, each (…, d) or (…, d, d) over the broadcast batch."),
        ("fisher", parameters, "The Fisher information of the loc block, F_μμ = L⁻ᵀL⁻¹ = Σ⁻¹ (…, d, d)."),
        ("natural_gradient", f"grad, {parameters}", "F_μμ⁻¹ grad = L Lᵀ grad for a loc gradient grad (…, d): no inverse."),
    ):
        p = _Printer(prefix)
        if prefix:
            p.lines.append(f"xp = _namespace({arguments})")
        if function == "log_prob":
            p.lines.append("d = x.shape[-1]")
        _definitions(p, m, whitened=function in ("log_prob", "eligibility"))
        if function == "log_prob":
            result = _log_prob(p, m.log_prob)
        elif function == "eligibility":
            parts = {n: p.emit(e)[0] for n, e in m.eligibility.items()}
            result = "{" + ", ".join(f"{n!r}: {code}" for n, code in parts.items()) + "}"
        else:
            result = p.emit(m.fisher_loc if function == "fisher" else m.natural_loc)[0]
        body = "\n".join(f"    {line}" for line in [*p.lines, f"return {result}"])
        out.append(f"def {function}({arguments}):\n    \"\"\"{doc}\"\"\"\n{body}\n")
    return "\n\n".join(out)


def module_source(m: MatrixDerivation, backend: str = "numpy") -> str:
    """A standalone module: the helpers of ``backend`` ("numpy" or "array-api") and the
    generated functions (no symelig, no SymPy needed to import it)."""
    from pathlib import Path

    helpers = Path(__file__).with_name("numpy_helpers.py" if backend == "numpy" else "xp_helpers.py").read_text(encoding="utf-8")
    body = helpers.split('"""', 2)[2].lstrip("\n")  # the helpers without their module docstring
    header = (f'"""{m.family} --param {m.param}: log p, the eligibility e = ∂ log p/∂θ, the loc block of the Fisher\n'
              f'information and its natural gradient; generated by symelig from the matrix-form derivation\n'
              f'(`symelig derive {m.family} --param {m.param}`); do not edit.  Backend: {backend}.\n\n'
              f'Sign convention: eligibility = ∂ log p(x | θ)/∂θ (Williams 1992), the gradient of the log-likelihood."""\n')
    return header + body + "\n\n" + functions_source(m, "" if backend == "numpy" else "xp, ")
