"""The public object of a matrix-family entry: checked kernels, printed forms, the module source.

It has the methods of :class:`symelig.derivation.Derivation` that make sense for a matrix
parameter (``log_prob``, ``eligibility``, ``fisher`` and ``natural_gradient`` of the loc block,
``text``, ``latex_fragment``, ``latex_document``, ``to_dict``, ``numpy_source``), so that
``symelig.derive("multivariate_normal")``, ``symelig eval`` and ``symelig export`` treat it
like a catalog entry.
"""
from __future__ import annotations

import functools
import types

import numpy as np

from .. import __version__
from ..errors import SymeligError
from . import normal, printing
from .kernels import module_source

CONVENTION = "Eligibility e = ∂ log p(x | θ)/∂θ (Williams 1992): the gradient of the log-likelihood, not of a loss."
NOTES = ("z = L⁻¹(x − μ) is the whitened residual; L is lower triangular with L_ii > 0 (Σ = LLᵀ, log det L = Σ_i log L_ii); "
         "tril(X) keeps the entries of X on and below the diagonal (tril(X, −1): strictly below); diag(X) is the diagonal "
         "matrix with X's diagonal.")
FISHER_REST = ("F_μL = 0: e_μ is linear and e_L quadratic-plus-constant in z ~ N(0, I), so their products have odd moments "
               "only (by symmetry, not derived by the engine). F_LL: not derived by symelig (a closed form follows from "
               "Isserlis' theorem); `fisher` returns the loc block only.")


class MatrixEntry:
    arguments: tuple = ()

    def __init__(self, param: str):
        self.math = normal.derive_matrix(param)
        self.family, self.param = normal.NAME, self.math.param
        self.parameters = self.math.parameters

    def __repr__(self):
        return f"<MatrixEntry {self.family} param={self.param!r}>"

    # kernels -------------------------------------------------------------------------------
    @functools.cached_property
    def numpy_source(self) -> str:
        return module_source(self.math, "numpy")

    @property
    def full_numpy_source(self) -> str:  # the Fisher block and natural gradient are always in it
        return self.numpy_source

    @functools.cached_property
    def array_api_source(self) -> str:
        return module_source(self.math, "array-api")

    @functools.cached_property
    def kernels(self):
        return _compile(self.numpy_source, f"{self.family}_{self.param}_numpy")

    @functools.cached_property
    def array_api_kernels(self):
        return _compile(self.array_api_source, f"{self.family}_{self.param}_array_api")

    def _run(self, function: str, leading: dict, params: dict):
        arrays = _checked(self.param, self.parameters, leading, params)
        foreign = any(not isinstance(v, np.ndarray) for v in arrays.values())
        kernels = self.array_api_kernels if foreign else self.kernels
        with np.errstate(all="ignore"):
            result = getattr(kernels, function)(**arrays)
        if not foreign:
            for name, value in (result.items() if isinstance(result, dict) else [(function, result)]):
                if not np.all(np.isfinite(value)):  # finite inputs, so the true value is beyond the dtype's range
                    raise SymeligError(f"{function} {'of ' + name + ' ' if name != function else ''}is beyond the {value.dtype} "
                                       f"range at these values (scale_tril's diagonal too small for x − loc?)")
        return result

    def log_prob(self, x, **params):
        """log p(x | θ) over the broadcast batch."""
        return self._run("log_prob", {"x": x}, params)

    def eligibility(self, x, **params) -> dict:
        """{"loc": L⁻ᵀz (…, d), the matrix parameter: (…, d, d)}."""
        return self._run("eligibility", {"x": x}, params)

    def fisher(self, **params):
        """The loc block of the Fisher information, Σ⁻¹ = L⁻ᵀL⁻¹ (…, d, d), by two triangular
        solves of the identity."""
        return self._run("fisher", {}, params)

    def natural_gradient(self, grad, **params):
        """F_μμ⁻¹ grad = L Lᵀ grad for a gradient w.r.t. loc (…, d): no solve, no inverse."""
        return self._run("natural_gradient", {"grad": grad}, params)

    # printed forms ---------------------------------------------------------------------------
    def text(self, order: int = 1) -> str:
        m = self.math
        lines = [f"{self.family} --param {self.param}  (torch.distributions.{normal.TORCH})", ""]
        lines.append(f"log p(x | μ, {'L' if self.param == 'scale_tril' else 'A'}) = {_sum(m.log_prob, printing.text)}")
        for name, e in m.eligibility.items():
            lines.append(f"∂log p/∂{_letter(name)} = {printing.text(e)}")
        lines.append("")
        lines.append("where " + "; ".join(f"{printing.text(a)} = {printing.text(b)}" for a, b in m.definitions) + ".")
        lines.append(NOTES)
        if order == 2:
            lines += ["", f"∂²log p/∂μ∂μᵀ = {printing.text(m.hessian_loc)}",
                      f"F_μμ = −E[∂²log p/∂μ∂μᵀ] = {printing.text(m.fisher_loc)}  (= Σ⁻¹; the Hessian does not depend on x)",
                      f"natural gradient of the loc block: F_μμ⁻¹ g = {printing.text(m.natural_loc)}", FISHER_REST]
        return "\n".join(lines) + "\n"

    def _latex_lines(self, order: int) -> list:
        m = self.math
        matrix = "L" if self.param == "scale_tril" else "A"
        lines = [rf"\log p(x \mid \mu, {matrix}) &= {_sum(m.log_prob, printing.latex)}"]
        lines += [rf"\frac{{\partial \log p}}{{\partial {_letter(n, latex=True)}}} &= {printing.latex(e)}" for n, e in m.eligibility.items()]
        if order == 2:
            lines += [rf"\frac{{\partial^2 \log p}}{{\partial \mu\, \partial \mu^{{\top}}}} &= {printing.latex(m.hessian_loc)}",
                      rf"F_{{\mu\mu}} &= {printing.latex(m.fisher_loc)} = \Sigma^{{-1}}"]
        return lines

    def _where(self) -> str:
        m = self.math
        return "where " + ", ".join(f"${printing.latex(a)} = {printing.latex(b)}$" for a, b in m.definitions) + \
            r", $L$ is lower triangular with $L_{ii} > 0$ ($\Sigma = L L^{\top}$), $\operatorname{tril}(X)$ keeps the entries " \
            r"on and below the diagonal ($\operatorname{tril}(X, -1)$: strictly below) and $\operatorname{diag}(X)$ is the " \
            "diagonal matrix with the diagonal of $X$."

    def latex_fragment(self, order: int = 1) -> str:
        body = " \\\\\n".join(self._latex_lines(order))
        return (f"% {self.family} --param {self.param}: generated by symelig {__version__} (matrix form)\n"
                f"% {CONVENTION}\n\\begin{{align}}\n{body}\n\\end{{align}}\n{self._where()}\n")

    def latex_document(self, order: int = 1) -> str:
        return ("\\documentclass{article}\n\\usepackage{amsmath,amssymb}\n\\begin{document}\n"
                f"{self.latex_fragment(order)}\\end{{document}}\n")

    def latex(self, standalone: bool = False, order: int = 1) -> str:
        if standalone:
            return self.latex_document(order)
        return "\\begin{aligned}" + " \\\\ ".join(self._latex_lines(order)) + "\\end{aligned}"

    def steps(self) -> list:
        """[(target, rule, statement, before, after)] printed as text."""
        return [(s.target, s.rule, s.statement, _show(s.before, printing.text), _show(s.after, printing.text)) for s in self.math.steps]

    def explain_text(self) -> str:
        lines = [f"{self.family} --param {self.param}: the derivation step by step (each step one rule)", ""]
        for n, (target, rule, statement, before, after) in enumerate(self.steps(), 1):
            lines += [f"{n}. [{target}] {rule}: {statement}", f"     {before}", f"   → {after}"]
        return "\n".join(lines) + "\n"

    def markdown(self, order: int = 2) -> str:
        m = self.math
        stem = f"{self.family}_{self.param}"
        math = "\n\n".join(f"```math\n{line.replace('&', '')}\n```" for line in self._latex_lines(1))
        second = ""
        if order == 2:
            second = ("## Second order\n\n" + "\n\n".join(f"```math\n{line.replace('&', '')}\n```" for line in self._latex_lines(2)[len(m.eligibility) + 1:])
                      + f"\n\nThe Hessian of the loc block does not depend on x, so F_μμ = −E[H] = L⁻ᵀL⁻¹ = Σ⁻¹; "
                      f"its natural gradient is F_μμ⁻¹ g = {printing.text(m.natural_loc)} (no inverse). {FISHER_REST}\n\n")
        steps = "\n".join(f"{n}. **{rule}** ({target}): {statement}  \n   `{before}` → `{after}`"
                          for n, (target, rule, statement, before, after) in enumerate(self.steps(), 1))
        return (f"# {self.family}, parametrization `{self.param}`\n\n{normal.DOCS[self.param]}\n\n{CONVENTION}\n\n{math}\n\n"
                f"{self._where()}\n\n{second}## Step by step\n\nEach step is one rule the engine applied "
                f"(`symelig explain {self.family} --param {self.param}`).\n\n{steps}\n\n"
                f"Files: [`{stem}.tex`]({stem}.tex) (LaTeX fragment), [`{stem}.py`]({stem}.py) (numpy kernels: `log_prob`, "
                f"`eligibility`, `fisher` and `natural_gradient` of the loc block).\n\n"
                f"Regenerate with `make derivations` (symelig {__version__}).\n")

    def to_dict(self, order: int = 1) -> dict:
        m = self.math
        out = {
            "family": self.family, "param": self.param, "parameters": list(self.parameters), "arguments": [],
            "convention": "eligibility = gradient of log p(x | theta) (Williams 1992)",
            "log_prob": {"text": _sum(m.log_prob, printing.text), "latex": _sum(m.log_prob, printing.latex)},
            "eligibility": {n: {"text": printing.text(e), "latex": printing.latex(e), "sympy": str(e)} for n, e in m.eligibility.items()},
            "definitions": {printing.text(a): printing.text(b) for a, b in m.definitions},
        }
        if order == 2:
            out["hessian"] = [{"wrt": ["loc", "loc"], "text": printing.text(m.hessian_loc), "latex": printing.latex(m.hessian_loc)}]
            out["fisher"] = [{"wrt": ["loc", "loc"], "text": printing.text(m.fisher_loc), "latex": printing.latex(m.fisher_loc)}]
            out["fisher_method"] = "-E[H]: the loc Hessian does not depend on x; " + FISHER_REST
        return out


def _letter(name: str, latex: bool = False) -> str:
    if name == "loc":
        return r"\mu" if latex else "μ"
    return "L" if name == "scale_tril" else "A"


def _sum(terms, render) -> str:
    """The terms of log p joined, a negative one subtracted."""
    out = render(terms[0])
    for term in terms[1:]:
        text = render(term)
        minus = "−" if render is printing.text else "-"
        out += f" {minus} {text[len(minus):].lstrip()}" if text.startswith(minus) else f" + {text}"
    return out


def _show(expr, render) -> str:
    try:
        return render(expr)
    except NotImplementedError:
        return str(expr)


def _compile(source: str, name: str):
    module = types.ModuleType(f"symelig_generated_{name}")
    # our own printer's output over fixed identifiers, never user text
    exec(compile(source, f"<symelig {name}>", "exec"), module.__dict__)
    return module


@functools.lru_cache(maxsize=None)
def entry(param: str | None = None) -> MatrixEntry:
    return MatrixEntry(normal.lookup(param))


# argument checks ------------------------------------------------------------------------------
def _checked(param: str, parameters: tuple, leading: dict, params: dict) -> dict:
    """The arguments as arrays after one-line checks of names, shapes, dtypes and constraints."""
    from ..derivation import _foreign, as_array

    wanted = [*leading, *parameters]
    unknown = [n for n in params if n not in parameters]
    missing = [n for n in parameters if n not in params]
    if unknown or missing:
        what = f"unknown argument {unknown[0]!r}" if unknown else f"missing argument {missing[0]!r}"
        raise SymeligError(f"{what} for {normal.NAME} --param {param}; it takes {', '.join(wanted)}")
    values = {**leading, **params}
    if any(_foreign(None, {n: v}) for n, v in values.items()):
        return _checked_foreign(param, values)
    arrays = {n: as_array(n, v) for n, v in values.items()}
    floating = [a.dtype for a in arrays.values() if a.dtype.kind == "f"]
    dtype = np.result_type(*floating) if floating else np.float64
    if dtype == np.float16:
        dtype = np.float32
    arrays = {n: a.astype(dtype, copy=False) for n, a in arrays.items()}
    _check_shapes(param, {n: a.shape for n, a in arrays.items()})
    for n, a in arrays.items():
        if not np.all(np.isfinite(a)):
            at = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
            raise SymeligError(f"{n}{list(at)} = {a[at]} is not allowed: {n} must be finite")
    _check_matrix(param, arrays[param], np)
    return arrays


def _check_shapes(param: str, shapes: dict) -> None:
    matrix = shapes[param]
    if len(matrix) < 2 or matrix[-1] != matrix[-2]:
        raise SymeligError(f"{param} must be (…, d, d), a square matrix per sample; got shape {tuple(matrix)}")
    d = matrix[-1]
    for n, shape in shapes.items():
        if n != param and (len(shape) < 1 or shape[-1] != d):
            raise SymeligError(f"{n} must be (…, {d}) to match {param} of shape {tuple(matrix)}; got shape {tuple(shape)}")
    try:
        np.broadcast_shapes(*(s[:-1] for n, s in shapes.items() if n != param), matrix[:-2])
    except ValueError:
        listed = ", ".join(f"{n} {tuple(s)}" for n, s in shapes.items())
        raise SymeligError(f"the batch shapes do not broadcast: {listed}") from None


def _check_matrix(param: str, matrix, xp) -> None:
    d = matrix.shape[-1]
    if param == "log_diag_tril":
        limit = float(np.log(np.finfo(np.float32 if "32" in str(matrix.dtype) else np.float64).max))
        diagonal = xp.linalg.diagonal(matrix) if xp is not np else np.diagonal(matrix, axis1=-2, axis2=-1)
        if bool(xp.any(diagonal > limit)):
            raise SymeligError(f"log_diag_tril has a diagonal entry above {limit:.1f}: exp of it, the diagonal of L, "
                               f"is beyond the {matrix.dtype} range")
        return
    rows = np.arange(d)
    upper = np.asarray(rows[None, :] > rows[:, None])
    if xp is np:
        above = (matrix != 0) & upper
        diagonal = np.diagonal(matrix, axis1=-2, axis2=-1)
    else:
        above = (matrix != 0) & xp.asarray(upper, device=getattr(matrix, "device", None))
        diagonal = xp.linalg.diagonal(matrix)
    if bool(xp.any(above)):
        where = tuple(int(i) for i in np.argwhere(np.asarray(_host(above)))[0])
        raise SymeligError(f"scale_tril must be lower triangular: scale_tril{list(where)} = {float(_host(matrix)[where])} is above "
                           "the diagonal (use --param log_diag_tril for an unconstrained matrix)")
    if bool(xp.any(diagonal <= 0)):
        where = tuple(int(i) for i in np.argwhere(np.asarray(_host(diagonal)) <= 0)[0])
        raise SymeligError(f"scale_tril must have a positive diagonal: scale_tril{list(where[:-1]) + [where[-1], where[-1]]} = "
                           f"{float(_host(diagonal)[where])} is not > 0")


def _host(array):
    return array.cpu().numpy() if hasattr(array, "cpu") else np.asarray(array)


def _checked_foreign(param: str, values: dict) -> dict:
    """Tensors (torch, jax, …): the same checks through the array API, no copy to numpy
    unless an error is to be reported."""
    from array_api_compat import array_namespace

    xp = array_namespace(*values.values())
    _check_shapes(param, {n: tuple(v.shape) for n, v in values.items()})
    for n, v in values.items():
        if not xp.isdtype(v.dtype, "real floating"):
            raise SymeligError(f"{n} must be a floating tensor (float32 or float64); got {v.dtype}")
        if not bool(xp.all(xp.isfinite(v))):
            raise SymeligError(f"{n} holds a value that is not finite")
    _check_matrix(param, values[param], xp)
    return values
