"""An :class:`~symelig.explanation.Explanation` as text (terminal), LaTeX (an appendix) or Markdown."""
from __future__ import annotations

import unicodedata

import numpy as np

from .latex import likelihood as latex_likelihood
from .latex import tex
from .text import formula, letter, where


def _given(s) -> str:
    return ", ".join(formula(s.symbols[n]) for n in s.parameters)


def _canonical_given(s) -> str:
    return ", ".join(formula(s.symbols[n]) for n in s.family.parameters)


def _number(v) -> str:
    if isinstance(v, np.ndarray):
        return "[" + ", ".join(f"{float(a):.6g}" for a in np.ravel(v)) + "]"
    return f"{float(v):.6g}"


def _lhs_text(item, s) -> str:
    P = letter(s)
    if item.rule == "model":
        return f"log {P}(x | {_canonical_given(s)})"
    if item.lhs == "log p":
        return f"log {P}(x | {_given(s)})"
    wrt = formula(item.wrt) if item.wrt is not None else formula(s.wrt(item.target))
    if item.lhs == "term":
        return f"∂/∂{wrt} [{formula(item.before)}]"
    return f"∂ log {P}/∂{wrt}"


def _signed(parts: dict, show, onehot: str, ones: str, elementwise) -> str:
    """c·onehot + f(θ) + a·𝟙 with the signs written once: "onehot(x)/p_x − 𝟙/Σp"."""
    text = " ".join(f"{sign} {body}" for sign, body in signed_pieces(parts, show, onehot, ones, elementwise))
    return text[2:] if text.startswith("+ ") else "−" + text[2:]


def signed_pieces(parts: dict, show, onehot, ones, elementwise) -> list:
    """[(sign, body)] of :func:`_signed`, for printers that place the signs themselves (MathML)."""
    pieces = []
    for key, unit in (("onehot", onehot), ("elementwise", None), ("ones", ones)):
        if key not in parts:
            continue
        value = parts[key]
        negative = value.could_extract_minus_sign() and not value.is_Add
        magnitude = -value if negative else value
        if unit is None:
            body = elementwise(magnitude)
        elif magnitude == 1:
            body = unit
        else:
            body = f"{show(magnitude, True)}{unit}"
        pieces.append(("−" if negative else "+", body))
    return pieces


def _vector_text(parts: dict, s, name) -> str:
    return _signed(
        parts, lambda c, _: f"({formula(c)})·", "onehot(x)", "𝟙", lambda e: formula(e).replace("[j]", "")
    )


def text(explanation) -> str:
    s = explanation.derivation
    title = f"{s.family.name}, {s.parametrization.doc.rstrip('.')}" if s.parametrization.command else f"{s.family.name} --param {s.param}"
    lines = [f"{title}: the eligibility step by step (each step is one rule the engine applied)", ""]
    for number, item in enumerate(explanation.items, 1):
        lines.append(f"{number:2d}. {item.title}: {item.sentence}")
        if item.lhs == "vector":
            lines.append(f"    e = {_vector_text(item.expression, s, item.target)}")
        else:
            lines.append(f"    {_lhs_text(item, s)} = {formula(item.expression)}")
        if item.rule == "parametrize":
            lines.append(f"    where {where(s)}")
        if item.value is not None:
            lines.append(f"    = {_number(item.value)}")
    lines += _notes_text(explanation)
    return "\n".join(lines) + "\n"


def _notes_text(explanation) -> list:
    if not explanation.notes:
        return []
    lines = ["", "What the numbers mean:"]
    for sentence, numbers in explanation.notes:
        lines.append(f"* {sentence}")
        lines += [f"    {label} = {_number(v)}" for label, v in numbers.items()]
    return lines


# -- LaTeX ---------------------------------------------------------------------------------------

_TEX_TEXT = {
    "∂": r"$\partial$", "Σ": r"$\Sigma$", "δ": r"$\delta$", "θ": r"$\theta$", "π": r"$\pi$", "−": "-",
    "·": r"$\cdot$", "≥": r"$\geq$", "𝟙": r"$\mathbf{1}$", "ψ": r"$\psi$", "Γ": r"$\Gamma$", "α": r"$\alpha$",
    "β": r"$\beta$", "σ": r"$\sigma$", "μ": r"$\mu$", "κ": r"$\kappa$", "λ": r"$\lambda$", "η": r"$\eta$",
    "ν": r"$\nu$", "₀": r"$_0$", "₁": r"$_1$", "₂": r"$_2$", "^": r"\^{}", "_": r"\_", "&": r"\&", "%": r"\%",
    "#": r"\#", "{": r"\{", "}": r"\}", "~": r"\~{}", "\\": r"$\backslash$", "…": r"\dots{}",
    "²": r"$^2$", "½": r"$\tfrac12$", "∈": r"$\in$", "≤": r"$\leq$", "×": r"$\times$", "′": "'",
    "∞": r"$\infty$", "Δ": r"$\Delta$", "√": r"$\surd$", "ξ": r"$\xi$", "φ": r"$\phi$", "ρ": r"$\rho$",
    "τ": r"$\tau$", "ζ": r"$\zeta$", "ω": r"$\omega$", "≈": r"$\approx$", "→": r"$\to$", "ᵢ": r"$_i$",
    "ⱼ": r"$_j$", "ₖ": r"$_k$", "ₓ": r"$_x$", "ℝ": r"$\mathbb{R}$", "“": "``", "”": "''", "’": "'", "–": "--",
    "—": "---", "|": r"$|$", "<": r"$<$", ">": r"$>$", "≠": r"$\neq$", "⁻": r"$^-$", "¹": r"$^1$",
}


def _tex_text(sentence: str) -> str:
    """A sentence in running TeX text: specials escaped, Greek and operators as math."""
    return "".join(_TEX_TEXT.get(ch) or _greek(ch) or (ch if ord(ch) < 128 else "?") for ch in sentence)


def _greek(ch: str) -> str | None:
    name = unicodedata.name(ch, "")
    for prefix, case in (("GREEK SMALL LETTER ", str.lower), ("GREEK CAPITAL LETTER ", str.capitalize)):
        if name.startswith(prefix) and " " not in name[len(prefix):]:
            return rf"$\{case(name[len(prefix):])}$"
    return None


def _lhs_tex(item, s) -> str:
    like = latex_likelihood(s)
    if item.rule == "model":
        given = ", ".join(tex(s.symbols[n]) for n in s.family.parameters)
        return r"\log " + like.split("(")[0] + rf"(x \mid {given})"
    if item.lhs == "log p":
        return rf"\log {like}"
    wrt = tex(item.wrt) if item.wrt is not None else tex(s.wrt(item.target))
    if item.lhs == "term":
        return rf"\frac{{\partial}}{{\partial {wrt}}}\left[{tex(item.before)}\right]"
    return rf"\frac{{\partial \log {like}}}{{\partial {wrt}}}"


def _vector_tex(parts: dict) -> str:
    return _signed(
        parts, lambda c, _: rf"\left({tex(c)}\right) ", r"\mathbf{e}_x", r"\mathbf{1}",
        lambda e: tex(e).replace("_{j}", ""),
    ).replace("−", "-")


def latex(explanation) -> str:
    """An ``align*`` with one sentence (\\intertext) per step, for a paper's appendix."""
    s = explanation.derivation
    rows = []
    for number, item in enumerate(explanation.items, 1):
        rows.append(rf"\intertext{{Step {number} ({_tex_text(item.title)}): {_tex_text(item.sentence.rstrip('.'))}.}}")
        if item.lhs == "vector":
            rows.append(rf"\mathbf{{e}} &= {_vector_tex(item.expression)} \\")
        else:
            rows.append(rf"{_lhs_tex(item, s)} &= {tex(item.expression)} \\")
        if item.rule == "parametrize":
            rows += [rf"{tex(t)} &= {tex(v)} \\" for t, v in s.definitions()]
    notes = ""
    if any(item.lhs == "vector" for item in explanation.items):
        notes = "where $\\mathbf{e}_x$ is the one-hot vector of the sample and $\\mathbf{1}$ the all-ones vector.\n"
    return (
        f"% {s.family.name}, parametrization {s.param}: the derivation step by step (symelig).\n"
        "\\begin{align*}\n" + "\n".join(rows) + "\n\\end{align*}\n" + notes
    )


def latex_document(explanation) -> str:
    s = explanation.derivation
    return (
        "\\documentclass{article}\n\\usepackage{amsmath}\n\\usepackage{amssymb}\n\\begin{document}\n"
        f"\\section*{{Eligibility of the {_tex_text(s.family.name)} distribution, "
        f"parametrization \\texttt{{{_tex_text(s.param)}}}}}\n" + latex(explanation) + "\\end{document}\n"
    )


# -- Markdown ------------------------------------------------------------------------------------

def markdown(explanation) -> str:
    s = explanation.derivation
    lines = []
    for number, item in enumerate(explanation.items, 1):
        lines.append(f"{number}. **{item.title}**: {item.sentence.rstrip('.')}.")
        body = (rf"\mathbf{{e}} = {_vector_tex(item.expression)}" if item.lhs == "vector"
                else f"{_lhs_tex(item, s)} = {tex(item.expression)}")
        if item.rule == "parametrize":
            body += "".join(rf", \quad {tex(t)} = {tex(v)}" for t, v in s.definitions())
        lines.append(f"   ```math\n   {body}\n   ```")
        if item.value is not None:
            lines.append(f"   At the given values: `{_number(item.value)}`.")
    if explanation.notes:
        lines.append("\n**What the numbers mean**\n")
        for sentence, numbers in explanation.notes:
            lines.append(f"* {sentence}: " + "; ".join(f"{label} = `{_number(v)}`" for label, v in numbers.items()))
    return "\n".join(lines) + "\n"


# -- HTML (MathML, for symelig html) ---------------------------------------------------------------

def _lhs_mathml(item, s) -> str:
    from . import mathml as m

    if item.rule == "model":
        return m.log(m.likelihood(s, s.family.parameters))
    if item.lhs == "log p":
        return m.log(m.likelihood(s))
    wrt = m.mathml(item.wrt if item.wrt is not None else s.wrt(item.target))
    if item.lhs == "term":
        return m.partial("", wrt) + f"<mrow><mo>[</mo>{m.mathml(item.before)}<mo>]</mo></mrow>"
    return m.partial(m.log(m.likelihood(s)), wrt)


def _vector_mathml(parts: dict) -> str:
    from sympy import Indexed

    from ..family import j
    from . import mathml as m

    def elementwise(e):  # θ_j as the vector θ
        return m.mathml(e.replace(lambda a: isinstance(a, Indexed) and a.indices == (j,), lambda a: a.base.label))

    pieces = signed_pieces(
        parts, lambda c, _: f"<mrow><mo>(</mo>{m.mathml(c)}<mo>)</mo></mrow>",
        '<msub><mi mathvariant="bold">e</mi><mi>x</mi></msub>', '<mn mathvariant="bold">1</mn>', elementwise,
    )
    return "".join((m.mo(sign) if n or sign == "−" else "") + body for n, (sign, body) in enumerate(pieces))


def html(explanation) -> str:
    """An ordered list, one item per step, each with its sentence and its equation in MathML."""
    from html import escape

    from . import mathml as m

    s = explanation.derivation
    items = []
    for item in explanation.items:
        if item.lhs == "vector":
            equation = m.display('<mi mathvariant="bold">e</mi>', m.mo("="), _vector_mathml(item.expression))
        else:
            equation = m.display(_lhs_mathml(item, s), m.mo("="), m.mathml(item.expression))
        if item.rule == "parametrize":
            equation += "".join(m.display(m.mathml(t), m.mo("="), m.mathml(v)) for t, v in s.definitions())
        value = f"<p>At the given values: <code>{_number(item.value)}</code></p>" if item.value is not None else ""
        items.append(f"<li><p><strong>{escape(item.title)}</strong>: {escape(item.sentence.rstrip('.'))}.</p>\n"
                     f"{equation}{value}</li>")
    out = '<ol class="steps">\n' + "\n".join(items) + "\n</ol>\n"
    if any(item.lhs == "vector" for item in explanation.items):
        out += ("<p>where " + m.block('<msub><mi mathvariant="bold">e</mi><mi>x</mi></msub>', display=False)
                + " is the one-hot vector of the sample and " + m.block('<mn mathvariant="bold">1</mn>', display=False)
                + " the all-ones vector.</p>\n")
    if explanation.notes:
        out += "<p><strong>What the numbers mean</strong></p>\n<ul>\n" + "".join(
            f"<li>{escape(sentence)}: " + "; ".join(f"{escape(label)} = <code>{_number(v)}</code>" for label, v in numbers.items())
            + "</li>\n" for sentence, numbers in explanation.notes) + "</ul>\n"
    return out
