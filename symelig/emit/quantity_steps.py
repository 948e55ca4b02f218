"""``explain --quantity entropy|kl``: the steps of a closed-form entropy or KL divergence, each
the expression the engine held (:attr:`symelig.entropy_kl.ClosedForm.steps`): the model, the
integrand, its expectation by the named route, q's parameters mapped, the simplification, and
each gradient.  As text (typeset like ``explain``), LaTeX (``align*`` with one sentence per
step) and Markdown (```math blocks)."""
from __future__ import annotations

from .latex import broken, tex
from .prose import tex_text
from .text import _indent, display, formula

_TITLES = {"model": "Model", "integrand": "Integrand", "expectation": "Expectation", "parametrize": "Reparametrize q",
           "simplify": "Simplify", "differentiate": "Gradient"}


_LHS_TEX = {"log p(x | θ)": r"\log p(x \mid \theta)", "−log p(x | θ)": r"-\log p(x \mid \theta)", "H(p)": r"\mathrm{H}(p)",
            "log p(x | θ_p)": r"\log p(x \mid \theta_p)", "log q(x)": r"\log q(x)", "log p − log q": r"\log p - \log q",
            "KL(p ‖ q)": r"\mathrm{KL}(p \,\|\, q)"}


def _lhs(lhs, latex: bool) -> str:
    if isinstance(lhs, tuple):  # (name, the symbol differentiated)
        name, wrt = lhs
        return rf"\frac{{\partial \mathrm{{{name}}}}}{{\partial {tex(wrt)}}}" if latex else f"∂{name}/∂{formula(wrt)}"
    return _LHS_TEX[lhs] if latex else lhs


def _heading(form) -> str:
    what = "entropy H(p) = E_{x∼p}[−log p(x | θ)]" if form.quantity == "entropy" else "KL(p ‖ q) = E_{x∼p}[log p(x) − log q(x)]"
    return f"{form.family} --param {form.param}: the {what}"


def text(form) -> str:
    lines = [_heading(form), ""]
    for number, (rule, sentence, lhs, expression) in enumerate(form.steps, 1):
        lines += [f"{number}. {_TITLES[rule]}: {sentence}", f"   {_lhs(lhs, False)} =", _indent(_indent(display(expression))), ""]
    return "\n".join(lines)


def latex(form) -> str:
    rows = []
    for number, (rule, sentence, lhs, expression) in enumerate(form.steps, 1):
        rows.append(rf"&\text{{{number}. {_TITLES[rule]}: {tex_text(sentence)}}} \\" + "\n" + rf"{_lhs(lhs, True)} &= {broken(expression)}")
    head = f"% explain --quantity {form.quantity}: {form.family} --param {form.param}"
    return head + "\n\\begin{align*}\n" + " \\\\\n".join(rows) + "\n\\end{align*}\n"


def markdown(form) -> str:
    lines = [f"**{_heading(form)}**", ""]
    for number, (rule, sentence, lhs, expression) in enumerate(form.steps, 1):
        lines += [f"{number}. **{_TITLES[rule]}**: {sentence}", "", "```math", f"{_lhs(lhs, True)} = {tex(expression)}", "```", ""]
    return "\n".join(lines)
