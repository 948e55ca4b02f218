"""What a sampled KL estimator's gradient estimates, derived by the engine.

RLHF code penalises KL(π_θ ‖ π_ref) with a per-sample estimator (Schulman's k1, k2, k3), with
log-ratio L(x) = log π_θ(x) − log π_ref(x) and r(x) = π_ref(x)/π_θ(x) = e^{−L}:

    k1 = L,     k2 = ½ L²,     k3 = r − 1 − log r,     k3·ρ with ρ = π_θ(x)/π_old(x), x ∼ π_old,

and places it either *in the loss* (autograd differentiates the estimator at the sample:
g = ∇θ k(x; θ)) or *in the reward* (a REINFORCE term, the gradient flowing only through
log π_θ: g = k(x; θ)·∇θ log π_θ(x), with ρ a constant weight).  Autograd sees one sample; the
question is what E[g] is.  For every estimator and placement the audit derives E[g] symbolically
(:class:`~symelig.divergence.Setting`: the expectation routes of the Fisher information, the
likelihood ratios averaged by change of measure), derives ∇θ KL(π_θ ‖ π_ref) and
∇θ KL(π_ref ‖ π_θ) by differentiating the closed-form divergences, and compares.

In free coordinates of the simplex (``normalized_probs``) gradients are compared on directions
within the simplex: an estimator whose E[g] differs from ∇KL by a multiple of the all-ones
vector gets that KL's verdict (and bias 0 for the reverse KL).

Sign convention: every gradient is the gradient of the penalty (the quantity minimised), so an
unbiased estimator has E[g] = ∇θ KL.  The bias is always reported against the reverse KL, the
penalty these estimators are used for: bias = E[g] − ∇θ KL(π_θ ‖ π_ref).
"""
from __future__ import annotations

from dataclasses import dataclass

from sympy import S, expand_mul

from . import constraints
from .divergence import RATIO, WEIGHT, Setting, numerically_zero, setting
from .family import j, l
from .errors import SymeligError
from .expectation import NoClosedForm

REVERSE, FORWARD = "reverse_kl", "forward_kl"
PLACEMENTS = ("loss", "reward")


@dataclass(frozen=True)
class Estimator:
    name: str
    formula: str        # in words, for the table
    latex: str
    sampling: str       # "policy" (x ∼ π_θ) or "behaviour" (x ∼ π_old)

    def value(self, s: Setting):
        L = s.log_prob - s.log_prob_ref
        k3 = RATIO - 1 + L  # log r = −L
        return {"k1": L, "k2": L**2 / 2, "k3": k3, "k3_is": WEIGHT * k3}[self.name]


ESTIMATORS = (
    Estimator("k1", "log(π/π_ref)", r"\log\frac{\pi_\theta}{\pi_{\mathrm{ref}}}", "policy"),
    Estimator("k2", "½ log²(π/π_ref)", r"\tfrac12\log^2\frac{\pi_\theta}{\pi_{\mathrm{ref}}}", "policy"),
    Estimator("k3", "r − 1 − log r, r = π_ref/π", r"r - 1 - \log r,\ r = \frac{\pi_{\mathrm{ref}}}{\pi_\theta}", "policy"),
    Estimator("k3_is", "ρ (r − 1 − log r), ρ = π/π_old, x ∼ π_old",
              r"\rho\,(r - 1 - \log r),\ \rho = \frac{\pi_\theta}{\pi_{\mathrm{old}}},\ x\sim\pi_{\mathrm{old}}", "behaviour"),
)


@dataclass(frozen=True)
class Verdict:
    """One estimator in one placement: E[g] per parameter, which KL's gradient it is, the bias."""

    estimator: Estimator
    placement: str
    expected_gradient: dict   # parameter -> E[g] (component j of a vector)
    gradient_of: str | None   # REVERSE, FORWARD or None
    bias: dict                # parameter -> E[g] − ∇θ KL(π_θ ‖ π_ref)
    value_of: str | None      # REVERSE when E[k] = KL(π_θ ‖ π_ref) (the estimator's own target)


@dataclass(frozen=True)
class Audit:
    family: str
    param: str
    setting: Setting
    reverse_kl: object        # KL(π_θ ‖ π_ref), closed form
    forward_kl: object        # KL(π_ref ‖ π_θ)
    reverse_gradient: dict    # parameter -> ∇θ KL(π_θ ‖ π_ref)
    forward_gradient: dict
    verdicts: tuple


def audit_kl(family: str, param: str | None = None) -> Audit:
    """The KL-estimator audit of one catalog entry (see the module docstring); SymeligError
    where the divergences or an estimator's expectation have no closed form."""
    s = setting(family, param)
    try:
        reverse = s.expect(s.log_prob - s.log_prob_ref, "policy")
        forward = s.expect(s.log_prob_ref - s.log_prob, "reference")
    except NoClosedForm as reason:
        raise SymeligError(f"{family} --param {s.first.param} has no closed-form KL divergence ({reason}); the audit needs one") from None
    grad_reverse = {n: s.total_derivative(reverse, n) for n in s.parameters}
    grad_forward = {n: s.total_derivative(forward, n) for n in s.parameters}
    verdicts = []
    for estimator in ESTIMATORS:
        k = estimator.value(s)
        try:
            mean = s.expect(k, estimator.sampling)
        except NoClosedForm as reason:
            raise SymeligError(f"E[{estimator.name}] has no closed form for {family} --param {s.first.param} ({reason})") from None
        value_of = REVERSE if s.is_zero(mean - reverse) else None
        for placement in PLACEMENTS:
            expected = {}
            for n in s.parameters:
                g = s.total_derivative(k, n) if placement == "loss" else k * s.score[n]
                try:
                    expected[n] = s.expect(g, estimator.sampling)
                except NoClosedForm as reason:
                    raise SymeligError(f"E[∇ {estimator.name}] in the {placement} has no closed form for "
                                       f"{family} --param {s.first.param} ({reason})") from None
            bias = {n: expected[n] - grad_reverse[n] for n in s.parameters}
            if all(_equal(s, n, b) for n, b in bias.items()):
                gradient_of, bias = REVERSE, {n: S.Zero for n in s.parameters}
            elif all(_equal(s, n, expected[n] - grad_forward[n]) for n in s.parameters):
                gradient_of = FORWARD
            else:
                gradient_of = None
            verdicts.append(Verdict(estimator, placement, {n: s.tidy(v) for n, v in expected.items()}, gradient_of,
                                    {n: s.tidy(b) for n, b in bias.items()}, value_of))
    return Audit(s.first.family.name, s.first.param, s, s.tidy(reverse), s.tidy(forward),
                 {n: s.tidy(g) for n, g in grad_reverse.items()}, {n: s.tidy(g) for n, g in grad_forward.items()},
                 tuple(verdicts))


def _equal(s: Setting, name: str, difference) -> bool:
    """Whether two gradients agree: the difference is 0, or, in free coordinates of the simplex
    (normalized_probs), the same in every component, i.e. a multiple of the all-ones vector,
    which no direction within the simplex sees (the distribution is defined only there)."""
    if s.is_zero(difference):
        return True
    if s.first.parametrization.parameters[name] is constraints.simplex and s.is_zero(difference - difference.subs(j, l)):
        return True
    if numerically_zero(difference):
        # the rules missed a cancellation: no verdict rather than a wrong one
        raise SymeligError(f"the audit of {s.first.family.name} --param {s.first.param} could not decide symbolically "
                           f"whether a gradient difference for {name} is 0 (numerically it is)")
    return False


# ---- the verdict table, in the formats the CLI prints -------------------------------------

_SAMPLING = {"policy": "x ∼ π_θ", "behaviour": "x ∼ π_old"}
_NAMES = {REVERSE: "∇ KL(π_θ‖π_ref)", FORWARD: "∇ KL(π_ref‖π_θ)", None: "neither (biased)"}


def _component(audit: Audit, name: str) -> str:
    """How a parameter's gradient component is written: ∂/∂z_j for a vector, ∂/∂σ for a scalar."""
    from .emit.text import formula

    return f"∂/∂{formula(audit.setting.wrt(name))}"


def _joined(audit: Audit, values: dict, printer) -> str:
    if len(values) == 1:
        return printer(next(iter(values.values())))
    return "; ".join(f"{_component(audit, n)}: {printer(v)}" for n, v in values.items())


def records(audit: Audit) -> list:
    """One dict per estimator and placement: estimator, placement, gradient_of (reverse_kl,
    forward_kl or None), bias_latex / bias_text (E[g] − ∇θ KL(π_θ‖π_ref); per parameter, joined
    with "; ", for several), and what else the table shows."""
    from .emit.latex import tex
    from .emit.text import formula

    out = []
    for v in audit.verdicts:
        out.append({
            "estimator": v.estimator.name,
            "placement": v.placement,
            "gradient_of": v.gradient_of,
            "bias_latex": _joined(audit, v.bias, tex),
            "bias_text": _joined(audit, v.bias, formula),
            "formula": v.estimator.formula,
            "sampling": _SAMPLING[v.estimator.sampling],
            "estimates": v.value_of,
            "expected_gradient_text": _joined(audit, v.expected_gradient, formula),
            "bias_by_parameter": {n: {"latex": tex(b), "text": formula(b)} for n, b in v.bias.items()},
        })
    return out


def to_dict(audit: Audit) -> dict:
    from .emit.latex import tex
    from .emit.text import formula

    return {
        "family": audit.family,
        "param": audit.param,
        "bias_is": "E[gradient] - grad KL(pi_theta || pi_ref)",
        "reverse_kl": {"text": formula(audit.reverse_kl), "latex": tex(audit.reverse_kl)},
        "forward_kl": {"text": formula(audit.forward_kl), "latex": tex(audit.forward_kl)},
        "reverse_kl_gradient": {n: formula(g) for n, g in audit.reverse_gradient.items()},
        "forward_kl_gradient": {n: formula(g) for n, g in audit.forward_gradient.items()},
        "verdicts": records(audit),
    }


def text(audit: Audit) -> str:
    """The verdict table for a terminal, then the divergences and the biases in full."""
    # one line each, as a reader writes them (σ², a·b), not SymPy's ** and *
    from .emit.text import readable as formula

    rows = [("estimator", "placement", "samples", "E[k] = KL(π_θ‖π_ref)", "E[gradient] is")]
    for v in audit.verdicts:
        rows.append((f"{v.estimator.name} = {v.estimator.formula.split(', x')[0]}", f"in the {v.placement}",
                     _SAMPLING[v.estimator.sampling], "yes" if v.value_of == REVERSE else "no", _NAMES[v.gradient_of]))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = [f"KL-estimator audit: {audit.family} --param {audit.param}",
             "in the loss: g = ∇θ k(x; θ) at the sample;  in the reward: g = k(x)·∇θ log π_θ(x)", ""]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines += ["", f"KL(π_θ‖π_ref) = {formula(audit.reverse_kl)}", f"KL(π_ref‖π_θ) = {formula(audit.forward_kl)}"]
    for n in audit.reverse_gradient:
        lines.append(f"{_component(audit, n)} KL(π_θ‖π_ref) = {formula(audit.reverse_gradient[n])}")
        lines.append(f"{_component(audit, n)} KL(π_ref‖π_θ) = {formula(audit.forward_gradient[n])}")
    lines += ["", "bias = E[g] − ∇θ KL(π_θ‖π_ref), where not 0:"]
    for v in audit.verdicts:
        if v.gradient_of != REVERSE:
            lines.append(f"  {v.estimator.name} in the {v.placement}: {_joined(audit, v.bias, formula)}")
    return "\n".join(lines) + "\n"


def _latex_name(estimator: Estimator) -> str:
    """k_1, k_2, k_3, k_3^{IS}."""
    return f"k_{estimator.name[1]}" + (r"^{\mathrm{IS}}" if estimator.name.endswith("_is") else "")


_GRADIENT_OF_LATEX = {REVERSE: r"$\nabla_\theta \mathrm{KL}(\pi_\theta\,\|\,\pi_{\mathrm{ref}})$",
                      FORWARD: r"$\nabla_\theta \mathrm{KL}(\pi_{\mathrm{ref}}\,\|\,\pi_\theta)$",
                      None: "neither (biased)"}


def latex(audit: Audit) -> str:
    """A table and the bias formulas, for a paper's appendix (needs amsmath)."""
    from .emit.latex import broken, tex

    family = audit.family.replace("_", r"\_")
    lines = [
        r"\begin{table}[ht]", r"\centering",
        rf"\caption{{What $\mathrm{{E}}[g]$ is for each KL estimator: {family}, \texttt{{{audit.param.replace('_', chr(92) + '_')}}}. "
        r"In the loss $g = \nabla_\theta k(x;\theta)$; in the reward $g = k(x)\,\nabla_\theta \log \pi_\theta(x)$. "
        r"Derived symbolically by symelig.}",
        r"\begin{tabular}{lllc}", r"\hline",
        r"estimator & placement & $\mathrm{E}[g]$ equals & $\mathrm{E}[k] = \mathrm{KL}(\pi_\theta\|\pi_{\mathrm{ref}})$ \\",
        r"\hline",
    ]
    for v in audit.verdicts:
        name = _latex_name(v.estimator)
        lines.append(rf"${name} = {v.estimator.latex}$ & {v.placement} & {_GRADIENT_OF_LATEX[v.gradient_of]} & "
                     rf"{'yes' if v.value_of == REVERSE else 'no'} \\")
    lines += [r"\hline", r"\end{tabular}", r"\end{table}", "",
              r"% bias b = E[g] - \nabla_\theta KL(\pi_\theta \| \pi_{ref}), where not zero", r"\begin{align}"]
    rows = [rf"\mathrm{{KL}}(\pi_\theta\,\|\,\pi_{{\mathrm{{ref}}}}) &= {broken(audit.reverse_kl)}",
            rf"\mathrm{{KL}}(\pi_{{\mathrm{{ref}}}}\,\|\,\pi_\theta) &= {broken(audit.forward_kl)}"]
    for v in audit.verdicts:
        if v.gradient_of == REVERSE:
            continue
        name = _latex_name(v.estimator)
        for n, b in v.bias.items():
            wrt = tex(audit.setting.wrt(n))
            # a long factored bias is printed multiplied out, so that it breaks over lines
            b = b if len(tex(b)) <= 90 else expand_mul(b)
            rows.append(rf"b_{{{wrt}}}\left[{name},\ \text{{{v.placement}}}\right] &= {broken(b)}")
    lines.append(" \\\\\n".join(rows))
    lines += [r"\end{align}", ""]
    return "\n".join(lines)
