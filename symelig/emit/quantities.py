"""Entropy and KL closed forms (:class:`symelig.divergence.ClosedForm`) as text, LaTeX and JSON."""
from __future__ import annotations

from .latex import broken, tex
from .text import _indent, display, formula

_TITLE = {"entropy": ("H(p)", r"\mathrm{H}(p)"), "kl": ("KL(p ‖ q)", r"\mathrm{KL}(p \,\|\, q)")}
_DEFINITION = {
    "entropy": ("E_{x∼p}[−log p(x | θ)]", r"\mathrm{E}_{x\sim p}\left[-\log p(x \mid \theta)\right]"),
    "kl": ("E_{x∼p}[log p(x | θ_p) − log p(x | θ_q)]",
           r"\mathrm{E}_{x\sim p}\left[\log p(x \mid \theta_p) - \log p(x \mid \theta_q)\right]"),
}


def _rows(form):
    """[(name, wrt symbol, gradient)] for p's parameters, then q's."""
    return [(f"{side}.{name}", form.wrt[side][name], g)
            for side, grads in form.gradients.items() for name, g in grads.items()]


def _component(symbol):
    from sympy import IndexedBase

    from ..family import j

    return symbol[j] if isinstance(symbol, IndexedBase) else symbol


def text(form) -> str:
    """The ``--format text`` page, typeset like the eligibility's (:func:`symelig.emit.text.render`):
    each formula in 2-D Unicode (σ², fractions), not SymPy's one-line ``**``."""
    title, _ = _TITLE[form.quantity]
    lines = [f"{title} for {form.family} --param {form.param} (q's parameters carry _q)",
             f"  = {_DEFINITION[form.quantity][0]}, {form.how or 'symbolically'}", "",
             f"{title} =", _indent(display(form.value))]
    for _, wrt, g in _rows(form):
        lines += ["", f"∂{title.split('(')[0]}/∂{formula(_component(wrt))} =", _indent(display(g))]
    return "\n".join(lines) + "\n"


def latex(form) -> str:
    _, title = _TITLE[form.quantity]
    name = title.split("(")[0]
    rows = [rf"{title} &= {broken(form.value)}"]
    for _, wrt, g in _rows(form):
        rows.append(rf"\frac{{\partial {name}}}{{\partial {tex(_component(wrt))}}} &= {broken(g)}")
    head = f"% {form.quantity} of {form.family} --param {form.param}: {_DEFINITION[form.quantity][1]}"
    return head + "\n\\begin{align}\n" + " \\\\\n".join(rows) + "\n\\end{align}\n"


def to_dict(form) -> dict:
    return {
        "family": form.family,
        "param": form.param,
        "quantity": form.quantity,
        "definition": _DEFINITION[form.quantity][0],
        "how": form.how,
        "value": {"text": formula(form.value), "latex": tex(form.value)},
        "gradients": {side: {n: {"wrt": formula(_component(form.wrt[side][n])), "text": formula(g), "latex": tex(g)}
                             for n, g in grads.items()} for side, grads in form.gradients.items()},
    }
