"""Show the work: the derivation as numbered steps, each one rule the engine applied.

The steps are the engine's own record (:class:`symelig.engine.Step`), in the order it worked:
the family's model, the reparametrization, the log rules, the derivative of every term (with
the calculus rule it used), their sum, the delta and simplification rules, and the result with
its vector form.  Nothing is templated: a step shows the expressions the engine held.

With values, every step is also evaluated numerically at them (``numeric``), and for the
quantities users confuse the explanation adds checked facts: ∂p/∂θ = p·e versus e itself, and,
for relative probabilities, what changes against the normalized parametrization.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sympy import Add, Indexed, IndexedBase, KroneckerDelta, S, Sum, count_ops, sympify, together

from .family import K, call_with, j, n_blocks, n_placed

TITLES = {
    "model": "Model",
    "parametrize": "Reparametrize",
    "log_product": "Log of a product or quotient",
    "log_sigmoid": "Log of a sigmoid",
    "log_softplus": "Log of a softplus",
    "sigmoid_reflection": "Sigmoid reflection",
    "rename_index": "Rename the summation index",
    "linearity": "Linearity of sums",
    "delta_sum": "A Kronecker delta picks out one term",
    "delta_select": "Kronecker delta at the sample",
    "support_identity": "Use the support",
    "constant": "Constant term",
    "jacobian": "Change of variables",
    "chain_rule_log": "Chain rule through a log",
    "sum_rule": "Derivative of a sum",
    "indexed_derivative": "Derivative of an indexed parameter",
    "power_rule": "Power rule",
    "product_rule": "Product rule",
    "linear": "Linear term",
    "chain_rule": "Chain rule",
    "differentiate": "Sum of the terms' derivatives",
    "simplify": "Simplify",
    "log_sum_exp": "Name the log-sum-exp",
    "softmax": "Name the softmax",
    "bessel": "Stable Bessel functions",
    "result": "Result",
    "common_denominator": "Over a common denominator",
    "vector_form": "Vector form",
}


JACOBIAN_SENTENCE = ("the log-Jacobian of the map from u to the sample depends on the stored sample alone: u is "
                     "fixed by it and does not depend on θ, so this term's derivative is 0 and e is the base "
                     "distribution's at u")


@dataclass
class Item:
    """One numbered line of the explanation."""

    rule: str
    sentence: str
    target: str            # "log_prob" or a parameter name
    lhs: str               # what the expression is: "log p", "term", "e", "vector"
    expression: object
    before: object = None
    kind: str = "rewrite"  # "rewrite": equals the previous expression; "derivative": ∂before/∂wrt
    wrt: object = None
    value: object = None   # the numeric value at the given values (number or vector), if any

    @property
    def title(self) -> str:
        return TITLES.get(self.rule, self.rule.replace("_", " ").capitalize())


@dataclass
class Explanation:
    """The numbered steps of a derivation (``steps``) and their renderings: ``text()`` for a
    terminal, ``markdown()`` for a README, ``latex()`` (math only, for ``IPython.display.Math``),
    ``latex_fragment()`` and ``latex_document()`` for a paper; a notebook displays it itself.

    With values, ``numbers`` holds log p(x | θ), p(x | θ), the eligibility e and ∂p/∂θ = p·e
    (what autograd of ``exp(log_prob)`` returns), and ``notes`` what they mean."""

    derivation: object     # the SymbolicDerivation
    items: list
    values: dict | None = None
    notes: list = field(default_factory=list)   # [(sentence, {label: number or vector})]
    numbers: dict | None = None                 # {"log_prob", "prob", "eligibility", "prob_gradient"}

    @property
    def steps(self) -> list:
        return self.items

    @property
    def prob_gradient(self) -> dict | None:
        """{parameter: ∂p(x | θ)/∂θ = p·e} at the given values (None without values)."""
        return self.numbers["prob_gradient"] if self.numbers else None

    def text(self) -> str:
        from .emit import steps

        return steps.text(self)

    def markdown(self) -> str:
        """The list ``explain --format markdown`` prints (```math blocks, as GitHub renders)."""
        from .emit import steps

        return steps.markdown(self)

    def latex(self) -> str:
        """Math only: an ``aligned`` block (step titles in ``\\text``) that ``IPython.display.Math``
        and MathJax take; the appendix with its sentences is ``latex_fragment()``."""
        from .emit.display import explanation_math

        return explanation_math(self)

    def latex_fragment(self) -> str:
        """The ``align*`` with one sentence per step that ``explain --format latex`` prints."""
        from .emit import steps

        return steps.latex(self)

    def latex_document(self) -> str:
        from .emit import steps

        return steps.latex_document(self)

    def _repr_latex_(self) -> str:
        return f"$${self.latex()}$$"

    def _repr_markdown_(self) -> str:
        from .emit.display import explanation_markdown

        return explanation_markdown(self)

    def _repr_html_(self) -> str:
        from .emit.display import explanation_html

        return explanation_html(self)

    def __repr__(self) -> str:
        s = self.derivation
        values = " with values" if self.values is not None else ""
        return f"<Explanation {s.family.name} param={s.param!r}: {len(self.items)} steps{values}>"


def explain(derivation, values: dict | None = None) -> Explanation:
    """The steps of ``derivation`` (a :class:`symelig.derivation.Derivation`); with ``values``
    ({x, arguments, parameters} as arrays for one sample), evaluated and annotated."""
    s = derivation.symbolic
    canonical = call_with(s.family.log_prob, s.symbols)
    items = [Item("model", s.family.summary(), "log_prob", "log p", canonical)]
    jacobian = s.family.log_jacobian(**s.symbols)
    for name in s.parameters if jacobian is not None else ():
        items.append(Item("jacobian", JACOBIAN_SENTENCE, name, "term", S.Zero, jacobian, "derivative", s.wrt(name)))
    for step in s.steps:
        lhs = "term" if step.kind == "derivative" and step.rule != "differentiate" else ("log p" if step.target == "log_prob" else "e")
        sentence = step.statement
        if step.rule == "parametrize":  # the definitions are shown as equations by the printers
            sentence = step.statement.split(":")[0]
        items.append(Item(step.rule, sentence, step.target, lhs, step.after, step.before, step.kind, step.wrt))
    for name, e in s.eligibility.items():
        items.append(Item("result", f"the eligibility with respect to {name}", name, "e", e))
        combined = together(e)
        if combined != e and not e.has(Sum, KroneckerDelta, Indexed) and count_ops(combined) <= count_ops(e) + 1:
            items.append(Item("common_denominator", "the same over one denominator, as it is often printed",
                              name, "e", combined, before=e))
        if isinstance(s.symbols[name], IndexedBase):
            items.append(Item("vector_form", "all K components at once", name, "vector", vector_form(*s.eligibility_split[name])))
    explanation = Explanation(s, items, values)
    if values is not None:
        size = _size(s, values)
        explanation.numbers = _numbers(derivation, values)
        explanation.notes = _notes(derivation, values, explanation.numbers)
        values = _with_canonical(s, values, size)
        for item in items:
            if item.lhs != "vector":
                item.value = numeric(item.expression, s, values, size, vector=_has_j(s, item))
    return explanation


def explain_subject(subject, param: str | None = None, values: dict | None = None) -> Explanation:
    """``symelig.explain``: ``subject`` is a family name (with ``param``) or a derivation from
    ``derive``, ``reparametrize`` or ``custom``; ``values`` ({} for none) gives x and every
    argument and parameter for one sample, which evaluates each step and adds p(x | θ), p·e and
    what they mean."""
    from .derivation import Derivation, as_array, derive
    from .errors import SymeligError

    if isinstance(subject, Derivation):
        if param is not None:
            raise SymeligError("give param with a family name, not with a derivation (it has its parametrization)")
        derivation = subject
    elif isinstance(subject, str):
        derivation = derive(subject, param)
    else:
        raise SymeligError(f"explain takes a family name or a derivation (symelig.derive), not {type(subject).__name__}")
    if not values:
        return explain(derivation)
    names = ["x", *derivation.arguments, *derivation.parameters]
    entry = f"{derivation.family} param={derivation.param}"
    unknown = [n for n in values if n not in names]
    missing = [n for n in names if n not in values]
    if unknown or missing:
        what = f"unknown argument {unknown[0]!r}" if unknown else f"missing argument {missing[0]!r}"
        raise SymeligError(f"{what} for {entry}; explain takes all of {', '.join(names)}, for one sample")
    arrays = {n: as_array(n, values[n]) for n in names}
    constraint_of = derivation.symbolic.constraints
    for name, value in arrays.items():
        if value.ndim != constraint_of[name].event_dim:
            shape = "a vector (one value per category)" if constraint_of[name].event_dim else "one number"
            raise SymeligError(f"{name}: explain takes one sample, so give {shape}; got shape {value.shape}")
    return explain(derivation, arrays)


def _has_j(s, item) -> bool:
    return item.target != "log_prob" and isinstance(s.symbols.get(item.target), IndexedBase)


def vector_form(rest, at_x):
    """e_j = rest + δ_jx·at_x as vectors over j (the derivation's split): at_x → at_x·onehot(x),
    j-free terms → ·𝟙, θ_j → the vector θ.  Returned as {"onehot": at_x, "ones": a,
    "elementwise": f(θ)} (zero parts omitted)."""
    parts = {"onehot": [at_x] if at_x != 0 else [], "ones": [], "elementwise": []}
    for term in Add.make_args(rest):
        if term == 0:
            continue
        if term.has(j):
            parts["elementwise"].append(term)
        else:
            parts["ones"].append(term)
    return {k: Add(*v) for k, v in parts.items() if v}


def _size(s, values) -> int:
    for name, symbol in s.symbols.items():
        if isinstance(symbol, IndexedBase) and name in values:
            return int(np.shape(values[name])[-1])
    return 1


def _with_canonical(s, values: dict, size: int) -> dict:
    """``values`` plus the family's canonical parameters computed from them (π = p/Σp, σ = e^s),
    so that the model step, written in the canonical parameters, can be evaluated too."""
    values = dict(values)
    for target, expression in s.definitions():
        if isinstance(target, Indexed):
            index = target.indices[0]
            values[_name_of(s, target.base)] = numeric(expression.xreplace({index: j}), s, values, size, vector=True)
        else:
            values[_name_of(s, target)] = numeric(expression, s, values, size, vector=False)
    return values


def numeric(expr, s, values: dict, size: int, vector: bool):
    """``expr`` evaluated at ``values`` for K = ``size``: a float, or the K components over j."""
    expr = sympify(expr).xreplace({K: size})
    # an ordering, a multi-discrete action's block sizes: integer arrays that index the vectors
    indexing = {s.symbols[n]: np.asarray(values[n]) for n, c in s.constraints.items() if c.own_axis and n in values}
    if s.family.value.own_axis and "x" in values:  # an ordering's steps, or the blocks: as many as x has entries
        expr = expr.xreplace({n_placed: np.shape(values["x"])[-1], n_blocks: np.shape(values["x"])[-1]})
    for _ in range(3):  # named functions (softmax, log-sum-exp) unfold into sums, which unfold in turn
        expr = expr.doit()
    fixed = {}
    for name, symbol in s.symbols.items():
        if name in values and not isinstance(symbol, IndexedBase):
            integer = name == "x" and s.family.value.integer and not s.family.value.event_dim
            fixed[symbol] = sympify(int(values[name]) if integer else float(values[name]))
    expr = expr.xreplace(fixed)

    def at(jv):
        e = expr.xreplace({j: jv}).doit() if expr.has(j) else expr
        for _ in range(3 if indexing else 0):  # x_r, n_b first; a block's start Σ_{c<b} n_c once written out
            e = e.replace(lambda a: isinstance(a, Indexed) and a.base in indexing and a.indices[0].is_Integer,
                          lambda a: sympify(int(indexing[a.base][int(a.indices[0])]))).doit()
        e = e.replace(
            lambda a: isinstance(a, Indexed) and a.indices[0].is_Integer,
            lambda a: sympify(float(np.asarray(values[_name_of(s, a.base)])[int(a.indices[0])])),
        )
        return float(e.doit().evalf(30))

    return np.array([at(jv) for jv in range(size)]) if vector else at(0)


def _name_of(s, base) -> str:
    return next(n for n, symbol in s.symbols.items() if symbol == base)


def _arrays(values: dict) -> dict:
    return {n: np.asarray(v, dtype=float) if n != "x" else np.asarray(v) for n, v in values.items()}


def _numbers(derivation, values) -> dict:
    """log p, p, e and p·e at one sample, computed with the derivation's (checked) kernels."""
    args = _arrays(values)
    e = derivation.eligibility(**args)
    log_p = float(derivation.log_prob(**args))
    p = float(np.exp(log_p))
    return {"log_prob": log_p, "prob": p, "eligibility": e, "prob_gradient": {n: p * v for n, v in e.items()}}


def _notes(derivation, values, numbers: dict) -> list:
    """Checked facts for the quantities users confuse."""
    notes = [(
        "log_prob versus prob: autograd of exp(log_prob) gives ∂p/∂θ = p(x | θ)·e, not e",
        {"p(x | θ)": numbers["prob"], **{f"∂p/∂{n} = p·e": v for n, v in numbers["prob_gradient"].items()}},
    )]
    s = derivation.symbolic
    if derivation.param == "probs" and "normalized_probs" in s.family.parametrizations():
        notes += _relative_probs_notes(derivation, _arrays(values), numbers["eligibility"]["probs"])
    return notes


def _relative_probs_notes(derivation, args, e_probs) -> list:
    from . import derive

    probs = args["probs"]
    total = float(probs.sum())
    normalized = derive(derivation.family, "normalized_probs")
    others = {n: v for n, v in args.items() if n != "probs"}
    e_pi = normalized.eligibility(**others, normalized_probs=probs / total)["normalized_probs"]
    scaled = derivation.eligibility(**others, probs=2.0 * probs)["probs"]
    k = probs.shape[-1]
    direction = np.zeros(k)
    direction[0], direction[-1] = 1.0, -1.0  # a direction that stays on the simplex
    return [
        ("relative probs (π = p/Σp, as PyTorch): every p_j enters through the normalizer, so the "
         "unsampled categories get a nonzero eligibility (−1/Σp per draw); with normalized_probs they get 0",
         {"e (probs)": e_probs, "e (normalized_probs at π = p/Σp)": e_pi, "Σp": total}),
        ("scaling all probs by c leaves π unchanged and scales the eligibility by 1/c (here c = 2)",
         {"e at 2p": scaled, "e(p) / 2": e_probs / 2}),
        ("the two answers differ by a multiple of the all-ones vector: Σp·e(probs) − e(normalized_probs) = c·𝟙",
         {"Σp·e(probs)": total * e_probs, "Σp·e(probs) − e(normalized_probs)": total * e_probs - e_pi}),
        ("they agree on every direction v that stays on the simplex (Σ_j v_j = 0): Σp·(v·e(probs)) = v·e(normalized_probs)",
         {"v": direction, "Σp·(v·e(probs))": float(total * direction @ e_probs),
          "v·e(normalized_probs)": float(direction @ e_pi)}),
    ]
