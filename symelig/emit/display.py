"""What a notebook shows: pure math (an ``aligned`` block), and Markdown and HTML around it.

The math is what ``IPython.display.Math`` and MathJax take: no ``%`` comments, no prose outside
``\\text{}``, no top-level environment (``align`` numbers its rows and cannot sit inside
``$$ … $$``; ``aligned`` can, in MathJax and in LaTeX alike).  The paper fragment with its
comments and "where …" sentences stays :func:`symelig.emit.latex.fragment`.
"""
from __future__ import annotations

import html

import numpy as np

from .latex import broken, likelihood, printed, tex


def aligned(rows: list) -> str:
    """``rows`` (each "left &= right") as one ``aligned`` block; a long right side continues on
    the next lines of the block, as in the paper fragment, without its ``\\nonumber``."""
    return "\\begin{aligned}\n" + " \\\\\n".join(rows).replace(" \\nonumber", "") + "\n\\end{aligned}"


def derivation_rows(d, second=None) -> list:
    """log p, each eligibility, the reparametrization's definitions, and with ``second`` (a
    :class:`symelig.second_order.SecondOrder`) the Hessian and the Fisher information."""
    like = likelihood(d)
    rows = [rf"\log {like} &= {broken(printed(d, d.log_prob))}"]
    rows += [rf"\frac{{\partial \log {like}}}{{\partial {tex(d.wrt(n))}}} &= {broken(printed(d, e))}" for n, e in d.eligibility.items()]
    rows += [rf"{tex(target)} &= {tex(value)}" for target, value in d.definitions()]
    if second is not None:
        rows += _second_order_rows(d, second, like)
    return rows


def _second_order_rows(d, so, like) -> list:
    from ..family import j, l

    def pair(a, b):  # the second component of a vector block is l: H_jl, F_jl
        return tex(d.wrt(a)), tex(d.wrt(b).subs(j, l))

    rows = []
    for (a, b), h in so.hessian.items():
        first, other = pair(a, b)
        below = rf"\partial {first}^2" if first == other else rf"\partial {first}\,\partial {other}"
        rows.append(rf"\frac{{\partial^2 \log {like}}}{{{below}}} &= {broken(printed(d, h))}")
    for (a, b), f in (so.fisher or {}).items():
        rows.append(rf"F_{{{' '.join(pair(a, b))}}} &= {broken(printed(d, f))}")
    return rows


def derivation_math(d, second=None) -> str:
    return aligned(derivation_rows(d, second))


def _title(d) -> str:
    """The heading: family, parametrization, and the first paragraph of the parametrization's doc."""
    doc = " ".join(d.parametrization.doc.split("\n\n")[0].split())
    return f"{d.family.name}, parametrization {d.param}" + (f": {doc}" if doc else "")


CONVENTION = "eligibility e = ∂ log p(x | θ)/∂θ (Williams 1992): the gradient of the log-likelihood, not of a loss"


def derivation_markdown(d, second=None) -> str:
    title = _title(d)
    name, _, rest = title.partition(", ")
    return f"**{name}**, {rest}\n\n$$\n{derivation_math(d, second)}\n$$\n\n*{CONVENTION}.*\n"


def derivation_html(d, second=None) -> str:
    return (
        f"<div class=\"symelig\"><p>{html.escape(_title(d))}</p>\n"
        f"<div>$${html.escape(derivation_math(d, second))}$$</div>\n"
        f"<p><small>{html.escape(CONVENTION)}.</small></p></div>"
    )


# -- explanations ---------------------------------------------------------------------------------

def _numbers(value) -> str:
    """A number or a vector as math: 0.449275 or \\left(0.449275, -1\\right)."""
    if isinstance(value, np.ndarray) and value.ndim:
        return r"\left(" + ", ".join(f"{float(v):.6g}" for v in value.ravel()) + r"\right)"
    return f"{float(value):.6g}"


def explanation_math(explanation) -> str:
    """Each step as a ``\\text{}`` title row and its equation (its value below, when given); with
    values, p(x | θ) and ∂p/∂θ = p·e close the block."""
    from .steps import _lhs_tex, _vector_tex

    s = explanation.derivation
    rows = []
    for number, item in enumerate(explanation.items, 1):
        rows.append(rf"&\text{{{number}. {item.title}}}")  # titles are ASCII words: safe in \text
        if item.lhs == "vector":
            rows.append(rf"\mathbf{{e}} &= {_vector_tex(item.expression)}")
        else:
            rows.append(rf"{_lhs_tex(item, s)} &= {tex(item.expression)}")
        if item.value is not None:
            rows.append(rf"&= {_numbers(item.value)}")
        if item.rule == "parametrize":
            rows += [rf"{tex(t)} &= {tex(v)}" for t, v in s.definitions()]
    numbers = explanation.numbers
    if numbers:
        prob = likelihood(s)
        rows.append(rf"{prob} &= {_numbers(numbers['prob'])}")
        for name, value in numbers["prob_gradient"].items():
            rows.append(rf"\frac{{\partial {prob}}}{{\partial {tex(s.wrt(name))}}} = {prob}\,e &= {_numbers(value)}")
    return aligned(rows)


def _step_equations(explanation) -> list:
    """(item, one-line equation) per step, as the Markdown page of ``explain`` writes them."""
    from .steps import _lhs_tex, _vector_tex

    s = explanation.derivation
    out = []
    for item in explanation.items:
        if item.lhs == "vector":
            body = rf"\mathbf{{e}} = {_vector_tex(item.expression)}"
        else:
            body = f"{_lhs_tex(item, s)} = {tex(item.expression)}"
        if item.rule == "parametrize":
            body += "".join(rf", \quad {tex(t)} = {tex(v)}" for t, v in s.definitions())
        out.append((item, body))
    return out


def _explanation_title(explanation) -> str:
    s = explanation.derivation
    return f"{s.family.name}, parametrization {s.param}: the eligibility step by step (each step is one rule the engine applied)"


def explanation_markdown(explanation) -> str:
    """The steps as a numbered list with $$…$$ math (a notebook's Markdown renders that, not the
    ```math fences of ``explain --format markdown``, which GitHub renders), then the numbers."""
    from .steps import _number

    lines = [f"**{_explanation_title(explanation)}**", ""]
    for number, (item, body) in enumerate(_step_equations(explanation), 1):
        lines.append(f"{number}. **{item.title}**: {item.sentence.rstrip('.')}.")
        lines.append(f"   $${body}$$")
        if item.value is not None:
            lines.append(f"   At the given values: `{_number(item.value)}`.")
    if explanation.notes:
        lines.append("\n**What the numbers mean**\n")
        for sentence, numbers in explanation.notes:
            lines.append(f"* {sentence}: " + "; ".join(f"{label} = `{_number(v)}`" for label, v in numbers.items()))
    return "\n".join(lines) + "\n"


def explanation_html(explanation) -> str:
    """An ordered list of the steps (sentence, then the equation in $$…$$), then what the numbers
    mean; MathJax in the notebook typesets the math."""
    from .steps import _number

    parts = [f"<div class=\"symelig\"><p><b>{html.escape(_explanation_title(explanation))}</b></p><ol>"]
    for item, body in _step_equations(explanation):
        value = f"<br>at the given values: <code>{html.escape(_number(item.value))}</code>" if item.value is not None else ""
        parts.append(f"<li><b>{html.escape(item.title)}</b>: {html.escape(item.sentence.rstrip('.'))}.<br>"
                     f"$${html.escape(body)}$${value}</li>")
    parts.append("</ol>")
    if explanation.notes:
        parts.append("<p><b>What the numbers mean</b></p><ul>")
        for sentence, numbers in explanation.notes:
            listed = "; ".join(f"{html.escape(label)} = <code>{html.escape(_number(v))}</code>" for label, v in numbers.items())
            parts.append(f"<li>{html.escape(sentence)}: {listed}</li>")
        parts.append("</ul>")
    return "\n".join(parts) + "</div>"
