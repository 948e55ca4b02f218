"""Plain-text forms of a derivation: one-line formulas (docstrings, JSON) and 2-D Unicode."""
from __future__ import annotations

from sympy import (
    Add, Function, Indexed, KroneckerDelta, Mul, Pow, Sum, Symbol, factorial, gamma, log, loggamma, polygamma, sympify,
)
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.pretty.pretty import PrettyPrinter
from sympy.printing.pretty.pretty_symbology import pretty_symbol
from sympy.printing.str import StrPrinter

from ..functions import (
    LogSumExp, LogSumExpBlock, LogSumExpRemaining, Softmax, SoftmaxBlock, SoftmaxRemaining, log_ndtr_difference, log_softplus,
    logfactorial, normal_pdf_over_mass, sigmoid, sigmoid_over_softplus, softplus, xdivy, xlogy,
)


class PositiveFirst:
    """Printer mixin: terms with a plus sign first, as a paper writes δ_jx − softmax(z)_j."""

    def _print_Add(self, expr, order=None):
        terms = self._as_ordered_terms(expr, order=order)
        terms = [t for t in terms if not t.could_extract_minus_sign()] + [
            t for t in terms if t.could_extract_minus_sign()
        ]
        return super()._print_Add(Add(*terms, evaluate=False), order="none")


class FormulaPrinter(PositiveFirst, StrPrinter):
    """One-line formulas that read like math: Σ_i, δ(j,x), softmax(z)[j], Greek letters as such."""

    def _print_Symbol(self, expr):
        return pretty_symbol(expr.name)

    def _print_IndexedBase(self, expr):
        return pretty_symbol(str(expr.label))

    def _print_Pi(self, expr):
        return "π"

    def _print_log_softplus(self, expr):
        return f"log(softplus({self._print(expr.args[0])}))"

    def _print_sigmoid_over_softplus(self, expr):
        z = self._print(expr.args[0])
        return f"sigmoid({z})/softplus({z})"

    def _print_loggamma(self, expr):
        return f"logΓ({self._print(expr.args[0])})"

    def _print_log_ndtr_difference(self, expr):
        a, b = (self._print(x) for x in expr.args[:2])  # the third, b − a as written, is for the kernels
        return f"log(Φ({b}) − Φ({a}))"

    def _print_normal_pdf_over_mass(self, expr):
        a, b = (self._print(x) for x in expr.args[:2])
        return f"φ({a})/(Φ({b}) − Φ({a}))"

    def _print_polygamma(self, expr):
        n, a = expr.args
        return f"ψ({self._print(a)})" if n == 0 else f"ψ{'′' if n == 1 else f'^({n})'}({self._print(a)})"

    def _print_Sum(self, expr):
        (index, _, _), = expr.limits
        body = self._print(expr.function)
        wrapped = body if expr.function.is_Atom or isinstance(expr.function, Indexed) else f"({body})"
        return f"Σ_{self._print(index)} {wrapped}"

    def _print_KroneckerDelta(self, expr):
        return "δ(%s,%s)" % tuple(self._print(a) for a in expr.args)

    def _print_Softmax(self, expr):
        return f"softmax({_vector_name(expr)})[{self._print(expr.at)}]"

    def _print_LogSumExp(self, expr):
        return f"logsumexp_{self._print(expr.index)}({self._print(expr.body)})"

    def _print_masked(self, expr):  # a sum: the enclosing printer parenthesizes by precedence
        z, m = (self._print(a) for a in expr.args)
        return f"{z} + log({m})"

    def _remaining(self, expr) -> str:
        x, step = self._print(expr.ordering), self._print(expr.step)
        return f"{self._print(expr.index)}∉{{{x}[0..{step}-1]}}"

    def _print_LogSumExpRemaining(self, expr):
        return f"logsumexp_{{{self._remaining(expr)}}}({self._print(expr.body)})"

    def _block(self, expr) -> str:
        return f"{self._print(expr.index)}={self._print(expr.lower)}..{self._print(expr.upper)}"

    def _print_LogSumExpBlock(self, expr):
        return f"logsumexp_{{{self._block(expr)}}}({self._print(expr.body)})"

    def _print_SoftmaxBlock(self, expr):
        return f"softmax_{{{self._block(expr)}}}({_vector_name(expr)})[{self._print(expr.at)}]"

    def _print_SoftmaxRemaining(self, expr):
        return f"softmax_{{{self._remaining(expr)}}}({_vector_name(expr)})[{self._print(expr.at)}]"

    def _print_xlogy(self, expr):
        return self._print(Mul(expr.args[0], log(expr.args[1]), evaluate=False))

    def _print_xdivy(self, expr):
        return self._print(expr.args[0] / expr.args[1])

    def _print_logfactorial(self, expr):
        return f"log({self.parenthesize(expr.args[0], PRECEDENCE['Pow'])}!)"


def formula(expr) -> str:
    return FormulaPrinter().doprint(expr)


_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")
_SUBSCRIPT = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


class _ReadablePrinter(FormulaPrinter):
    """Concrete components as a reader writes them: p₀, p₀², p₀·p₁ (not Python's p[0]**2*p[1])."""

    def _print_Pow(self, expr, rational=False):
        if expr.exp.is_Integer and expr.exp > 1:
            return self.parenthesize(expr.base, PRECEDENCE["Pow"]) + str(expr.exp).translate(_SUPERSCRIPT)
        if expr.exp.is_Rational and expr.exp < 0:
            return super()._print_Pow(expr, rational)
        return self.parenthesize(expr.base, PRECEDENCE["Pow"]) + "^" + self.parenthesize(expr.exp, PRECEDENCE["Pow"])

    def doprint(self, expr):
        # p[0] → p₀ as a symbol (Indexed prints itself, past the printer's methods); with powers
        # printed above, a "*" left in the output is a product
        expr = sympify(expr).replace(lambda a: isinstance(a, Indexed) and a.indices[0].is_Integer,
                            lambda a: Symbol(f"{a.base}{str(a.indices[0]).translate(_SUBSCRIPT)}"))
        return super().doprint(expr).replace("*", "·")


def readable(expr) -> str:
    """A formula on one line as a reader writes it (p₀², p₀·p₁): prose and ``--k`` tables."""
    return _ReadablePrinter().doprint(expr)


def _for_display(expr):
    """Rewrite into plain SymPy that the 2-D printer typesets well (p[j] → p_j, etc.)."""
    expr = expr.replace(lambda e: isinstance(e, Softmax), lambda e: Symbol(f"softmax({_vector_name(e)})_{e.at}"))
    expr = expr.replace(lambda e: isinstance(e, LogSumExp), lambda e: e.doit())
    # over the categories an ordering has not placed: named, as a Sum with that condition would not typeset
    expr = expr.replace(lambda e: isinstance(e, SoftmaxRemaining),
                        lambda e: Symbol(f"softmax_{{{e.index}∉{{{e.ordering}_0..{e.ordering}_({e.step}-1)}}}}({_vector_name(e)})_{e.at}"))
    # a block's first category o_b = Σ_{c<b} n_c (multi_categorical), as its definition names it
    expr = expr.replace(_is_block_start, lambda e: Symbol("o_b"))
    expr = expr.replace(lambda e: isinstance(e, SoftmaxBlock),
                        lambda e: Symbol(f"softmax_{{{e.index}={e.lower}..{e.upper}}}({_vector_name(e)})_{e.at}"))
    expr = expr.replace(lambda e: isinstance(e, LogSumExpBlock), lambda e: e.doit())
    expr = expr.replace(lambda e: isinstance(e, LogSumExpRemaining),
                        lambda e: log(Function("Σ_{%s∉{%s_0..%s_(%s-1)}} exp" % (e.index, e.ordering, e.ordering, e.step))(e.body), evaluate=False))
    expr = expr.replace(lambda e: isinstance(e, (xlogy, xdivy)), lambda e: e.doit())
    expr = expr.replace(lambda e: isinstance(e, logfactorial), lambda e: log(factorial(e.args[0]), evaluate=False))
    expr = expr.replace(lambda e: isinstance(e, log_softplus), lambda e: log(softplus(e.args[0]), evaluate=False))
    expr = expr.replace(
        lambda e: isinstance(e, sigmoid_over_softplus),
        lambda e: Mul(sigmoid(e.args[0]), Pow(softplus(e.args[0]), -1), evaluate=False),
    )
    expr = expr.replace(lambda e: isinstance(e, loggamma), lambda e: log(gamma(e.args[0]), evaluate=False))
    Phi, phi = Function("Φ"), Function("φ")
    expr = expr.replace(lambda e: isinstance(e, log_ndtr_difference),
                        lambda e: log(Phi(e.args[1]) - Phi(e.args[0]), evaluate=False))
    expr = expr.replace(lambda e: isinstance(e, normal_pdf_over_mass),
                        lambda e: Mul(phi(e.args[0]), Pow(Phi(e.args[1]) - Phi(e.args[0]), -1), evaluate=False))
    expr = expr.replace(
        lambda e: isinstance(e, polygamma) and e.args[0].is_Integer and 0 <= e.args[0] <= 3,
        lambda e: Function("ψ" + "′" * int(e.args[0]))(e.args[1]),
    )
    return expr.replace(lambda e: isinstance(e, Indexed), lambda e: Symbol(f"{e.base}_{e.indices[0]}"))


def _is_block_start(e) -> bool:
    """Σ_{c=0}^{b−1} n_c of an indexed n: where block b of a multi-discrete action starts."""
    from ..family import b

    return (isinstance(e, Sum) and e.limits[0][1] == 0 and e.limits[0][2] == b - 1
            and isinstance(e.function, Indexed) and e.function.indices == (e.limits[0][0],))


def _vector_name(softmax: Softmax) -> str:
    """``z`` for the body z[i]; a body over several vectors in vector form, z − (x − μ)²/(2σ²)
    for z[i] − (x − μ[i])²/(2σ[i]²), as the LaTeX printer writes it."""
    body = softmax.body
    if isinstance(body, Indexed) and body.indices == (softmax.index,):
        return str(body.base)
    return formula(body.replace(lambda a: isinstance(a, Indexed) and a.indices == (softmax.index,), lambda a: Symbol(str(a.base))))


class _Pretty(PositiveFirst, PrettyPrinter):
    """SymPy's 2-D printer, positive terms first."""


def display(expr) -> str:
    """Multi-line Unicode rendering for a terminal."""
    return _Pretty({"use_unicode": True, "wrap_line": False}).doprint(_for_display(expr))


def letter(d) -> str:
    """P for a probability mass (categories, counts), p for a density: probs' p stays free."""
    return "P" if d.discrete else "p"


def where(d) -> str:
    """The reparametrization in one line, e.g. "σ = exp(s)"; "" for the canonical parameters."""
    return ", ".join(f"{formula(t)} = {formula(v)}" for t, v in d.definitions())


def title(d) -> str:
    """"normal — parametrization scale"; a --via or custom derivation is named by what it is,
    not by the placeholder name of its parametrization ('via', 'custom')."""
    if d.parametrization.command:
        return f"{d.family.name} — {d.parametrization.doc.splitlines()[0].rstrip('.')}"
    return f"{d.family.name} — parametrization {d.param}"


def render(derivation) -> str:
    """The ``--format text`` page: what is derived, log p, and each eligibility."""
    d = derivation
    theta = ", ".join(formula(d.symbols[n]) for n in d.parameters)
    P = letter(d)
    lines = [
        title(d),
        d.parametrization.doc.split("\n\n")[0],
        "",
        f"log-likelihood  log {P}(x | {theta}) =",
        _indent(display(d.log_prob)),
        "",
        f"eligibility  e = ∂ log {P}(x | θ) / ∂θ  (Williams 1992: gradient of the log-likelihood, not of a loss)",
    ]
    for name, e in d.eligibility.items():
        lines += ["", f"∂ log {P} / ∂{formula(d.wrt(name))}  ({name}) =", _indent(display(e))]
    if d.definitions():  # the formulas are in θ; this says how θ gives the family's own parameters
        lines += ["", f"reparametrization: {where(d)}"]
    if any(expr.has(KroneckerDelta) for expr in d.eligibility.values()):
        lines += ["", "δ is the Kronecker delta; j ∈ {0, …, K−1} is the component, x the sample."]
    return "\n".join(lines) + "\n"


def _indent(block: str) -> str:
    return "\n".join("    " + line for line in block.splitlines())


def render_second_order(so) -> str:
    """The ``--order 2`` text: Hessian entries, then the Fisher information and how it was taken."""
    d = so.first
    P = letter(d)
    lines = ["", f"Hessian  H = ∂² log {P}(x | θ) / ∂θ ∂θᵀ" + ("  (components j, l)" if d.is_vector else "")]
    for (a, b), h in so.hessian.items():
        lines += ["", f"∂² log {P} / ∂{formula(d.wrt(a))} ∂{_second(d, b)} =", _indent(display(h))]
    if so.fisher is None:
        lines += ["", f"Fisher information: no closed form ({so.no_closed_form})"]
    else:
        lines += ["", f"Fisher information  F(θ) = E[e eᵀ]  — {so.method}"]
        for (a, b), f in so.fisher.items():
            lines += ["", f"F[{formula(d.wrt(a))}, {_second(d, b)}] =", _indent(display(f))]
        for (a, _), n in (so.null_space or {}).items():
            lines += ["", f"F is singular: F·n = 0 for n_j = {formula(n)}; the natural gradient uses its pseudo-inverse F⁺."]
        lines += ["", "valid when " + "; ".join(so.assumptions)]
    if d.is_vector:
        lines += ["", "δ(j,l) is the Kronecker delta; j, l ∈ {0, …, K−1} are the components."]
    return "\n".join(lines) + "\n"


def _second(d, name):
    """The second differentiation variable: θ_l for a vector parameter."""
    from ..family import j, l

    return formula(d.wrt(name).subs(j, l))


def render_table(symbolic, table) -> str:
    """The components of an :class:`symelig.expand.Table`, one line each."""
    lines = [f"{title(symbolic)}, K = {table.size}", ""]
    for row in table.rows:
        label = f"x = {row}" if row != "x" else "x = (x₀, …)"
        for n, wrt in table.columns.items():
            lines.append(f"{label}:")
            for w, e in zip(wrt, table.entries[(row, n)]):
                lines.append(f"  ∂ log p / ∂{readable(w)} = {readable(e)}")
        lines.append("")
    return "\n".join(lines)


def table_dict(symbolic, table) -> dict:
    """The components of an :class:`symelig.expand.Table` as JSON-ready data."""
    return {
        "family": symbolic.family.name,
        "param": symbolic.param,
        "k": table.size,
        "components": [
            {"x": row, "wrt": formula(w), "eligibility": formula(e)}
            for row in table.rows
            for n, wrt in table.columns.items()
            for w, e in zip(wrt, table.entries[(row, n)])
        ],
    }
