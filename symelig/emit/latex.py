"""LaTeX a paper can paste: an ``align`` of log p and each eligibility, or a whole document."""
from __future__ import annotations

from sympy import Indexed, KroneckerDelta, Mul, Sum, Symbol
from sympy.printing.latex import LatexPrinter

from ..version import __version__
from ..functions import Softmax
from .text import PositiveFirst


class _Latex(PositiveFirst, LatexPrinter):
    """SymPy's LaTeX printer, positive terms first; log Γ and ψ as papers write them."""

    def _print_loggamma(self, expr, exp=None):
        body = rf"\log\Gamma\left({self._print(expr.args[0])}\right)"
        return rf"\left({body}\right)^{{{exp}}}" if exp else body

    def _print_polygamma(self, expr, exp=None):
        n, a = expr.args
        name = r"\psi" if n == 0 else r"\psi'" if n == 1 else rf"\psi^{{({self._print(n)})}}"
        body = rf"{name}\left({self._print(a)}\right)"
        return rf"\left({body}\right)^{{{exp}}}" if exp else body


def tex(expr) -> str:
    return _Latex().doprint(expr)


def likelihood(d) -> str:
    r"""``\Pr(x \mid θ)`` for a probability mass (categories, counts), ``p(x \mid θ)`` for a density,
    so that a parameter named p (probs) never collides with the distribution's letter."""
    given = ", ".join(tex(d.symbols[n]) for n in d.parameters)
    letter = r"\Pr" if d.discrete else "p"
    return rf"{letter}(x \mid {given})"


# LaTeX source characters per printed line before a long sum is continued on the next line
_LINE = 90


def broken(expr) -> str:
    r"""``expr`` for the right side of an align row; a long sum continues on aligned lines
    (``\\ &\quad + …``) so that the row fits a page instead of running off it."""
    whole = tex(expr)
    if not expr.is_Add or len(whole) <= _LINE:
        return whole
    printer = _Latex()
    terms = printer._as_ordered_terms(expr, order=None)
    terms = [t for t in terms if not t.could_extract_minus_sign()] + [t for t in terms if t.could_extract_minus_sign()]
    lines, current = [], ""
    for term in terms:
        piece = f"- {tex(-term)}" if term.could_extract_minus_sign() else f"+ {tex(term)}"
        if current and len(current) + len(piece) > _LINE:
            lines.append(current)
            current = ""
        current = f"{current} {piece}" if current else piece
    lines.append(current)
    first = lines[0][2:] if lines[0].startswith("+ ") else lines[0]
    return " \\nonumber \\\\\n  &\\quad ".join([first, *lines[1:]])


# The width a formula may take (ems of a 10 pt font): the text width of LaTeX's article class at
# 10 pt (345 pt), less the room an equation number takes.  A paper's single column is about this.
TEXT_WIDTH = 34.5
_NUMBER = 3.5


def printed(d, expr):
    """``expr`` as it is printed for ``d``: (x − μ) one way round, sums in x − μ, scalar
    reparametrizations named (see :mod:`symelig.emit.tidy`), the family's abbreviations (α for
    (a − μ)/σ) written as their letters."""
    from .tidy import tidy

    # named before tidy orients differences: the values are taken into θ (σ = e^s) as the
    # engine writes them, and subs (not xreplace) finds α in (a − μ)·R/σ and −α in (μ − a)/σ
    into = {target: value for target, value in d.definitions() if isinstance(target, Symbol)}
    for letter, value in d.abbreviations():
        value = value.xreplace(into)
        expr = expr.subs({value: letter, _negated(value): -letter})
    return tidy(expr, d.symbols.get("x"), d.definitions())


def _negated(value):
    """−value as SymPy holds it in a product: (μ − a)/σ, the sign taken into the sum, where
    −((a − μ)/σ) would keep a −1 factor that no term of an expression matches."""
    sums = [f for f in Mul.make_args(value) if f.is_Add]
    if not sums:
        return -value
    return Mul(*(-f if f is sums[0] else f for f in Mul.make_args(value)))


def _named(d, exprs) -> list:
    """The abbreviations (letter, value) that the printed ``exprs`` use."""
    return [(t, v) for t, v in d.abbreviations() if any(e.has(t) for e in exprs)]


def rows(block: list, numbered: bool = True, full: float = TEXT_WIDTH) -> str:
    """``[(lhs, expr or LaTeX)]`` as the rows of an ``align``, each long right side broken onto
    continuation lines so that the row fits ``full`` ems (with its equation number)."""
    from .breaking import align_row, lines, width

    left = max(width(lhs) for lhs, _ in block)
    budget = full - left - 1.4 - (_NUMBER if numbered else 0.0) - 1.0  # "=", the \quad of continuations
    out = []
    for lhs, rhs in block:
        out.append(align_row(lhs, [rhs] if isinstance(rhs, str) else lines(rhs, budget, tex)))
    return " \\\\\n".join(out)


def ell_row(d, numbered: bool = True, full: float = TEXT_WIDTH) -> str:
    r"""``\ell &= \log p(x \mid θ) = …``: the log-likelihood named ℓ, so that the derivatives read
    ∂ℓ/∂θ and leave the width to their right sides."""
    from .breaking import lines, width

    head = rf"\log {likelihood(d)}"
    budget = full - width(r"\ell") - 1.4 - (_NUMBER if numbered else 0.0) - 1.0
    pieces = lines(printed(d, d.log_prob), budget - width(head) - 1.4, tex)
    if len(pieces) == 1:
        return rf"  \ell &= {head} = {pieces[0]}"
    pieces = lines(printed(d, d.log_prob), budget, tex)
    return rf"  \ell &= {head} \nonumber \\" + "\n  &= " + (r" \nonumber \\" + "\n  &\\quad ").join(pieces)


def partial(d, name: str, order: int = 1, other: str | None = None) -> str:
    r"""``\frac{\partial \ell}{\partial θ}``, or the second derivative in θ and ``other``."""
    from ..family import j, l

    first = tex(d.wrt(name))
    if order == 1:
        return rf"\frac{{\partial \ell}}{{\partial {first}}}"
    second = tex(d.wrt(other).subs(j, l))
    below = rf"\partial {first}^2" if first == second else rf"\partial {first}\,\partial {second}"
    return rf"\frac{{\partial^2 \ell}}{{{below}}}"


def responsibility(d) -> str | None:
    r"""``\gamma_j = \operatorname{softmax}(f)_j`` where the eligibility holds a mixture's
    responsibility (printed γ_j, :meth:`symelig.functions.Softmax.responsibility`), else None."""
    found = sorted({a for e in d.eligibility.values() for a in e.atoms(Softmax) if a.responsibility()}, key=str)
    if not found:
        return None
    a = found[0]
    vector = a.body.replace(lambda v: isinstance(v, Indexed) and v.indices == (a.index,), lambda v: v.base)
    return rf"\gamma_j = \operatorname{{softmax}}({tex(vector)})_j"


def _where(d) -> list:
    notes = [f"${tex(target)} = {tex(value)}$" for target, value in d.definitions()]
    notes += [f"${tex(t)} = {tex(v)}$" for t, v in _named(d, [printed(d, e) for e in (d.log_prob, *d.eligibility.values())])]
    if any(e.has(KroneckerDelta) for e in d.eligibility.values()):
        notes.append(r"$\delta_{jx}$ is the Kronecker delta")
    softmaxes = {a for e in d.eligibility.values() for a in e.atoms(Softmax)}
    if softmaxes:
        notes.append(r"$\operatorname{softmax}(z)_j = e^{z_j} / \sum_{i=0}^{K-1} e^{z_i}$")
    gamma = responsibility(d)
    if gamma:
        notes.append(rf"${gamma}$ is the responsibility of component $j$, its posterior weight given $x$")
    if any(s.function.has(Softmax) for e in d.eligibility.values() for s in e.atoms(Sum)):
        notes.append(r"a sum $\sum_i \operatorname{softmax}(\cdot)_i f_i$ is the mean $\mathrm{E}_\pi[f]$ under the "
                     r"category probabilities $\pi$")
    if d.is_vector:
        what = "components" if any(a.responsibility() for a in softmaxes) else "categories"
        notes.append(rf"$j \in \{{0, \dots, K-1\}}$ indexes the $K$ {what}")
    return notes


def paragraph(text: str, heading: bool = False) -> str:
    """Prose between formulas, ragged right: an identifier in typewriter type or a formula in it
    does not break, and justified text would push it into the margin.  A ``heading`` (the
    sentence that opens a block) gets space above it."""
    return ("\\medskip\n" if heading else "") + "{\\raggedright " + text.rstrip("\n") + "\\par}\n"


def fragment(d) -> str:
    """``align`` environment: the log-likelihood ℓ, then ∂ℓ/∂θ for every parameter, then a
    sentence naming the symbols; ``%`` comments say what it is and where it came from."""
    from .prose import tex_text

    body = rows([(partial(d, name), printed(d, e)) for name, e in d.eligibility.items()])
    notes = _where(d)
    where = paragraph(f"where {'; '.join(notes)}.") if notes else ""
    doc = "".join(f"% {line}\n" for line in d.parametrization.doc.split("\n\n")[0].splitlines())
    return (
        f"% {d.family.name}, parametrization {d.param}: generated by symelig {__version__}.\n"
        f"{doc}"
        "% Eligibility (Williams 1992) = gradient of the log-likelihood, not of a loss.\n"
        + paragraph(f"The log-likelihood $\\ell$ of the {tex_text(_family_words(d))} and its eligibility "
                    f"$\\partial \\ell / \\partial \\theta$, parametrization \\texttt{{{_text(d.param)}}}:")
        + "\\begin{align}\n" + ell_row(d) + " \\\\\n" + body + "\n\\end{align}\n" + where
    )


def _family_words(d) -> str:
    """"Normal distribution" from the family's summary; its name where the summary has none."""
    summary = d.family.summary()
    if " distribution" not in summary:
        return f"``{d.family.name}`` distribution"
    return summary[: summary.index(" distribution")] + " distribution"


def second_order_fragment(so) -> str:
    """``align`` environments, each after a sentence naming it: the Hessian of ℓ, then the Fisher
    information with how it was obtained."""
    from .prose import tex_text

    d = so.first
    hessian = rows([(partial(d, a, 2, b), printed(d, h)) for (a, b), h in so.hessian.items()])
    out = (paragraph("The Hessian of the log-likelihood:", heading=True) +
           "\\begin{align}\n" + hessian + "\n\\end{align}\n")
    if so.fisher is None:
        return out + paragraph(f"The Fisher information has no closed form: {tex_text(so.no_closed_form)}.", heading=True)
    from ..family import j, l

    fisher = rows([(f"F_{{{tex(d.wrt(a))} {tex(d.wrt(b).subs(j, l))}}}", printed(d, f)) for (a, b), f in so.fisher.items()])
    notes = [f"$n_j = {tex(printed(d, n))}$ spans the null space of $F$ ($F n = 0$)" for n in (so.null_space or {}).values()]
    before = _named(d, [printed(d, e) for e in (d.log_prob, *d.eligibility.values())])  # named above already
    notes += [f"${tex(t)} = {tex(v)}$" for t, v in _named(d, [printed(d, e) for e in (*so.hessian.values(), *so.fisher.values())])
              if (t, v) not in before]
    if d.is_vector:
        notes.append(r"$\delta_{jl}$ is the Kronecker delta")
    where = paragraph(f"where {'; '.join(notes)}.") if notes else ""
    return (
        out + paragraph(r"The Fisher information $F = \mathrm{E}[e e^\top]$ ("
                        + tex_text(f"{so.method}; valid when {'; '.join(so.assumptions)}") + "):", heading=True)
        + "\\begin{align}\n" + fisher + "\n\\end{align}\n" + where
    )


def _text(name: str) -> str:
    """A name in running TeX text (underscores escaped)."""
    return name.replace("_", r"\_")


# \allowdisplaybreaks: a long block of equations may continue on the next page instead of
# leaving the rest of this one empty
PREAMBLE = "\\documentclass{article}\n\\usepackage{amsmath}\n\\usepackage{amssymb}\n\\allowdisplaybreaks\n"


def document(d, second=None) -> str:
    """A standalone document that pdflatex compiles (with the second-order forms when given);
    its title names what it holds."""
    from .prose import tex_text

    held = "log-likelihood, eligibility, Hessian and Fisher information" if second is not None else "log-likelihood and eligibility"
    return (
        PREAMBLE + "\\begin{document}\n"
        f"\\section*{{\\raggedright {tex_text(_family_words(d))}, \\texttt{{{_text(d.param)}}}: {held}}}\n"
        + fragment(d)
        + (second_order_fragment(second) if second is not None else "")
        + "\\end{document}\n"
    )


def _summed(expr, size: int):
    """A sum over all K components, f(p₀) + f(p₁) + … + f(p_{K−1}), written Σ_i f(p_i): a paper
    writes it so, and it fits a line for any K."""
    from sympy import Dummy, Indexed, Sum

    i = Dummy("i")

    def general(a):
        """f(v_i) when ``a`` is f(v₀) + … + f(v_{K−1}), else None."""
        if size < 3 or len(a.args) != size:
            return None
        terms = set()
        for term in a.args:
            components = term.atoms(Indexed)
            if len(components) != 1:
                return None
            (v,) = components
            terms.add((v.indices[0], term.xreplace({v: v.base[i]})))
        indices = {m for m, _ in terms}
        bodies = {body for _, body in terms}
        return bodies.pop() if len(bodies) == 1 and indices == set(range(size)) else None

    return expr.replace(lambda a: a.is_Add and general(a) is not None,
                        lambda a: Sum(general(a), (i, 0, size - 1)))


def render_table(symbolic, table) -> str:
    """The components of an :class:`symelig.expand.Table` as one align environment, a long
    component (a sum over K terms) continued on aligned lines."""
    from .breaking import align_row, lines, width

    lhs = [rf"\frac{{\partial \log p}}{{\partial {tex(w)}}}" for wrt in table.columns.values() for w in wrt]
    budget = TEXT_WIDTH - max(width(t) for t in lhs) - 1.4 - _NUMBER - 1.0
    rows = []
    for row in table.rows:
        cond = rf"\quad (x = {row})" if row != "x" else ""
        for n, wrt in table.columns.items():
            for w, e in zip(wrt, table.entries[(row, n)]):
                pieces = lines(_summed(e, table.size), budget - width(cond), tex)
                pieces[-1] += cond
                rows.append(align_row(rf"\frac{{\partial \log p}}{{\partial {tex(w)}}}", pieces))
    return (
        f"% {symbolic.family.name}, parametrization {symbolic.param}, K = {table.size}: every component.\n"
        "\\begin{align}\n" + " \\\\\n".join(rows) + "\n\\end{align}\n"
    )
