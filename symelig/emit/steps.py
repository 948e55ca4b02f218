"""An :class:`~symelig.explanation.Explanation` as text (terminal), LaTeX (an appendix) or Markdown."""
from __future__ import annotations

import re

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

def _tex_text(sentence: str) -> str:
    from .prose import tex_text

    return tex_text(sentence)


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


def _vector_terms(parts: dict) -> list:
    """The signed terms of the vector form, its elementwise sum taken apart: ["+ a", "- b"]."""
    from sympy import Add

    out = []
    for key in ("onehot", "elementwise", "ones"):
        if key not in parts:
            continue
        if key == "elementwise":
            for t in Add.make_args(parts[key]):
                negative = t.could_extract_minus_sign()
                out.append(f"{'-' if negative else '+'} {tex(-t if negative else t).replace('_{j}', '')}")
        else:
            ((sign, body),) = signed_pieces({key: parts[key]}, lambda c, _: rf"\left({tex(c)}\right) ",
                                            r"\mathbf{e}_x", r"\mathbf{1}", None)
            out.append(f"{'-' if sign == '−' else '+'} {body}")
    return out


def _filled(terms: list, budget: float) -> list:
    """Signed terms greedily filled into lines of ``budget`` ems; the first loses its "+"."""
    from .breaking import width

    out, current = [], ""
    for term in terms:
        if current and width(current + term) > budget:
            out.append(current)
            current = term
        else:
            current = f"{current} {term}" if current else term
    out.append(current)
    out[0] = out[0][2:] if out[0].startswith("+ ") else out[0]
    return out


def _number_tex(v) -> str:
    """A number or vector as math: (0.449, -1, -1, -1)."""
    text = _number(v).replace("e+", r"\times 10^{").replace("e-", r"\times 10^{-")
    text = re.sub(r"(\\times 10\^\{-?)0*(\d+)", r"\1\2}", text)
    return text.replace("[", r"\left(").replace("]", r"\right)")


def _step_rows(item, s, budget: float) -> list:
    """The lines of one step (all in the right column of an ``align*``): ``lhs = rhs``, broken
    after the left side and at the right side's + and − where the whole is too wide."""
    from .breaking import lines, width
    from .tidy import tidy

    if item.lhs == "vector":
        lhs = r"\mathbf{e}"
        pieces = _filled(_vector_terms(item.expression), budget - width(lhs) - 1.4)
        if len(pieces) > 1:
            pieces = _filled(_vector_terms(item.expression), budget - 2.4)
            out = [f"&{lhs}", *(f"&\\quad {'= ' if n == 0 else ''}{p}" for n, p in enumerate(pieces))]
            return _with_value(out, item, budget)
    else:
        lhs = _lhs_tex(item, s)
        expr = tidy(item.expression, s.symbols.get("x"))
        pieces = lines(expr, budget - width(lhs) - 1.4, tex)
        if len(pieces) > 1 or width(lhs) + 1.4 + width(pieces[0]) > budget:
            pieces = lines(expr, budget - 2.4, tex)
            out = [f"&{lhs}", *(f"&\\quad {'= ' if n == 0 else ''}{p}" for n, p in enumerate(pieces))]
            return _with_value(out, item, budget)
    out = [f"&{lhs} = {pieces[0]}"]
    return _with_value(out, item, budget)


def _with_value(out: list, item, budget: float) -> list:
    from .breaking import width

    if item.value is None:
        return out
    value = _number_tex(item.value)
    if width(out[-1]) + 1.4 + width(value) <= budget:
        out[-1] += f" = {value}"
    else:
        out.append(f"&\\quad = {value}")
    return out


def latex(explanation) -> str:
    """An ``align*`` with one sentence (\\intertext) per step, for a paper's appendix; with values,
    each step's value and a list saying what the numbers mean."""
    from .latex import TEXT_WIDTH, paragraph

    s = explanation.derivation
    rows = []
    for number, item in enumerate(explanation.items, 1):
        rows.append(rf"\intertext{{\raggedright Step {number} ({_tex_text(item.title)}): {_tex_text(item.sentence.rstrip('.'))}.}}")
        rows += [line + r" \\" for line in _step_rows(item, s, TEXT_WIDTH - 1.0)]
        if item.rule == "parametrize":
            rows += [rf"&{tex(t)} = {tex(v)} \\" for t, v in s.definitions()]
    notes = ""
    if any(item.lhs == "vector" for item in explanation.items):
        notes = paragraph("where $\\mathbf{e}_x$ is the one-hot vector of the sample and $\\mathbf{1}$ the all-ones vector.")
    return (
        f"% {s.family.name}, parametrization {s.param}: the derivation step by step (symelig).\n"
        "\\begin{align*}\n" + "\n".join(rows) + "\n\\end{align*}\n" + notes + _notes_tex(explanation)
    )


def _notes_tex(explanation) -> str:
    """The checked facts about the numbers (with values), as a list."""
    if not explanation.notes:
        return ""
    items = []
    for sentence, numbers in explanation.notes:
        values = "; ".join(f"{_tex_text(label)}: ${_number_tex(v)}$" for label, v in numbers.items())
        items.append(f"\\item {_tex_text(sentence)}. {values}.")
    # ragged right: long names (normalized_probs) and vectors do not hyphenate
    return ("\\paragraph{What the numbers mean.}\n{\\raggedright\n\\begin{itemize}\n" + "\n".join(items)
            + "\n\\end{itemize}\n\\par}\n")


def latex_document(explanation) -> str:
    from .latex import PREAMBLE, _family_words, _text

    s = explanation.derivation
    at = " at the given values" if explanation.values is not None else ""
    return (
        PREAMBLE + "\\begin{document}\n"
        f"\\section*{{\\raggedright The eligibility of the {_tex_text(_family_words(s))}, "
        f"\\texttt{{{_text(s.param)}}}, step by step{at}}}\n" + latex(explanation) + "\\end{document}\n"
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
