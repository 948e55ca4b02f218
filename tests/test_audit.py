"""The KL-estimator audit against oracles that do not use the engine.

Categorical: the exact expectation is an enumeration over the K categories of the per-sample
gradient autograd would compute (written here by hand from the score), at random logits and
K up to 50; the audit's symbolic E[g], evaluated at that K, must agree to 1e-12, and so must the
gradient of the KL its verdict names.  Continuous families: Monte Carlo with 10⁶ samples, within
five standard errors.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from sympy import IndexedBase, lambdify

from symelig import audit
from symelig.family import K, j
from symelig.functions import LogSumExp, Softmax

TOL = 1e-12


def _per_sample(estimator, placement, L, r, rho, score):
    """The gradient autograd computes at one sample (rows of ``score`` are samples): in the loss
    ∇θ k(x; θ), in the reward k(x)·∇θ log π_θ(x); ∇L = e, ∇r = −r e, ∇ρ = ρ e."""
    k3 = r - 1 + L
    value = {"k1": L, "k2": L**2 / 2, "k3": k3, "k3_is": rho * k3}[estimator]
    if placement == "reward":
        return value[:, None] * score
    d = {"k1": 1.0, "k2": L, "k3": 1 - r, "k3_is": rho * (k3 + 1 - r)}[estimator]
    return np.asarray(d)[..., None] * score if np.ndim(d) else d * score


def _numeric_vector(expr, values: dict, size: int) -> np.ndarray:
    """A component-j expression of the audit evaluated at K = size for j = 0..size−1."""
    expr = expr.replace(lambda e: isinstance(e, (Softmax, LogSumExp)), lambda e: e.doit()).subs(K, size)
    bases = sorted((b for b in expr.atoms(IndexedBase)), key=str)
    f = lambdify([*bases, j], expr, modules="numpy")
    return np.array([f(*[values[str(b.label)] for b in bases], c) for c in range(size)], dtype=float)


def _close(a, b) -> bool:
    return np.max(np.abs(a - b)) <= TOL * max(1.0, np.max(np.abs(b)))


@pytest.fixture(scope="module")
def logits_audit():
    return audit.audit_kl("categorical", "logits")


@pytest.fixture(scope="module")
def probs_audit():
    return audit.audit_kl("categorical", "probs")


def _categorical_case(param, size, seed):
    """Values, exact per-category quantities and the oracle KL gradients (hand formulas)."""
    rng = np.random.default_rng(seed)
    ref, old = rng.dirichlet(np.ones(size)), rng.dirichlet(np.ones(size))
    if param == "logits":
        z = rng.normal(0, 2, size)
        pi = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        score = np.eye(size) - pi                  # ∂ log π_x / ∂z_j = δ_jx − π_j
        values = {"z": z}
    else:
        p = rng.uniform(0.1, 3.0, size)
        pi = p / p.sum()
        score = np.eye(size) / p - 1 / p.sum()      # δ_jx/p_x − 1/Σp
        values = {"p": p}
    values.update({"pi_ref": ref, "pi_old": old})
    L = np.log(pi) - np.log(ref)
    # ∂KL/∂π_x (π free) is L_x + 1 (reverse) and −q_x/π_x (forward), times ∂π_x/∂θ_j:
    # π_x(δ_xj − π_j) for logits, (δ_xj − π_x)/Σp for relative probs
    if param == "logits":
        reverse, forward = pi * (L - pi @ L), pi - ref
    else:
        reverse, forward = (L - pi @ L) / p.sum(), (1 - ref / pi) / p.sum()
    return values, pi, ref, old, L, score, reverse, forward


@pytest.mark.parametrize("param", ["logits", "probs"])
@pytest.mark.parametrize("size,seed", [(2, 0), (3, 1), (7, 2), (50, 3)])
def test_categorical_verdicts_by_enumeration(param, size, seed, logits_audit, probs_audit):
    result = logits_audit if param == "logits" else probs_audit
    values, pi, ref, old, L, score, reverse, forward = _categorical_case(param, size, seed)
    r, rho = ref / pi, pi / old
    (name,) = result.setting.parameters
    assert _close(_numeric_vector(result.reverse_gradient[name], values, size), reverse)
    assert _close(_numeric_vector(result.forward_gradient[name], values, size), forward)
    for v in result.verdicts:
        g = _per_sample(v.estimator.name, v.placement, L, r, rho, score)
        weights = old if v.estimator.sampling == "behaviour" else pi
        exact = weights @ g                                      # Σ_x P(x) g(x): the oracle
        assert _close(_numeric_vector(v.expected_gradient[name], values, size), exact), (v.estimator.name, v.placement)
        assert _close(_numeric_vector(v.bias[name], values, size), exact - reverse), (v.estimator.name, v.placement)
        named = {audit.REVERSE: reverse, audit.FORWARD: forward}
        if v.gradient_of is None:
            assert not any(_close(exact, target) for target in named.values()), (v.estimator.name, v.placement)
        else:
            assert _close(exact, named[v.gradient_of]), (v.estimator.name, v.placement)


def test_the_known_verdicts(logits_audit):
    """k1 in the reward, k2 in the loss and importance-weighted k3 in the loss are unbiased for
    ∇KL(π_θ‖π_ref); k3 in the loss is the gradient of the *forward* KL; the rest are biased."""
    table = {(v.estimator.name, v.placement): v.gradient_of for v in logits_audit.verdicts}
    assert table == {
        ("k1", "loss"): None, ("k1", "reward"): audit.REVERSE,
        ("k2", "loss"): audit.REVERSE, ("k2", "reward"): None,
        ("k3", "loss"): audit.FORWARD, ("k3", "reward"): None,
        ("k3_is", "loss"): audit.REVERSE, ("k3_is", "reward"): None,
    }
    k3_reward = next(v for v in logits_audit.verdicts if (v.estimator.name, v.placement) == ("k3", "reward"))
    assert audit.records(logits_audit)[5]["bias_text"] == "π_ref[j] - softmax(z)[j]"
    assert k3_reward.value_of == audit.REVERSE


@pytest.mark.parametrize("family,param", [("categorical", "normalized_probs"), ("normal", "softplus_scale"), ("gamma", "natural")])
def test_the_same_verdicts_in_other_parametrizations(family, param, logits_audit):
    """Regressions: softplus_scale once lost every verdict (σ/softplus written two ways) and
    gamma natural called unbiased estimators biased (log(−η₂) split into iπ − log η₂)."""
    expected = [v.gradient_of for v in logits_audit.verdicts]
    assert [v.gradient_of for v in audit.audit_kl(family, param).verdicts] == expected


# ---- Monte Carlo for continuous families ---------------------------------------------------

N = 10**6


def _normal_log_pdf(x, mu, sigma):
    return -np.log(sigma) - 0.5 * np.log(2 * np.pi) - (x - mu) ** 2 / (2 * sigma**2)


def _normal_case(param):
    """Values, samplers, log-densities, per-sample score and the textbook KL gradients
    (∂/∂μ, ∂/∂σ, times ∂σ/∂s = σ for log_scale)."""
    mu, sigma, mr, sr, mo, so = 0.3, 1.2, -0.2, 0.9, 0.1, 1.5
    chain = np.array([1.0, sigma if param == "log_scale" else 1.0])
    reverse = np.array([(mu - mr) / sr**2, -1 / sigma + sigma / sr**2]) * chain
    forward = np.array([(mu - mr) / sigma**2, 1 / sigma - (sr**2 + (mu - mr) ** 2) / sigma**3]) * chain
    return dict(
        values={"mu": mu, "sigma": sigma, "s": np.log(sigma), "mu_ref": mr, "sigma_ref": sr, "mu_old": mo, "sigma_old": so},
        sample={"policy": lambda rng: rng.normal(mu, sigma, N), "behaviour": lambda rng: rng.normal(mo, so, N)},
        log_pdf={"theta": lambda x: _normal_log_pdf(x, mu, sigma), "ref": lambda x: _normal_log_pdf(x, mr, sr),
                 "old": lambda x: _normal_log_pdf(x, mo, so)},
        score=lambda x: np.stack([(x - mu) / sigma**2, ((x - mu) ** 2 - sigma**2) / sigma**3], axis=1) * chain,
        reverse=reverse, forward=forward)


def _exponential_case(param):
    lam, lr, lo = 1.5, 1.0, 1.2
    return dict(
        values={"lambda": lam, "lambda_ref": lr, "lambda_old": lo},
        sample={"policy": lambda rng: rng.exponential(1 / lam, N), "behaviour": lambda rng: rng.exponential(1 / lo, N)},
        log_pdf={"theta": lambda x: np.log(lam) - lam * x, "ref": lambda x: np.log(lr) - lr * x,
                 "old": lambda x: np.log(lo) - lo * x},
        score=lambda x: (1 / lam - x)[:, None],
        reverse=np.array([1 / lam - lr / lam**2]), forward=np.array([1 / lr - 1 / lam]))


CASES = {("normal", "scale"): _normal_case, ("normal", "log_scale"): _normal_case, ("exponential", "rate"): _exponential_case}


@pytest.mark.parametrize("family,param", list(CASES), ids=lambda v: str(v))
def test_continuous_verdicts_by_monte_carlo(family, param):
    result = audit.audit_kl(family, param)
    names = result.setting.parameters
    case = CASES[(family, param)](param)
    values, reverse, forward = case["values"], case["reverse"], case["forward"]

    def at(expr):  # a symbolic result at the test point
        return float(expr.subs({sym: values[str(sym)] for sym in expr.free_symbols}).evalf(30))

    rng = np.random.default_rng(7)
    draws = {k: f(rng) for k, f in case["sample"].items()}
    for v in result.verdicts:
        x = draws[v.estimator.sampling]
        lp = case["log_pdf"]["theta"](x)
        L = lp - case["log_pdf"]["ref"](x)
        r, rho = np.exp(-L), np.exp(lp - case["log_pdf"]["old"](x))
        g = _per_sample(v.estimator.name, v.placement, L, r, rho, case["score"](x))
        mean, se = g.mean(0), g.std(0) / np.sqrt(N)
        symbolic = np.array([at(v.expected_gradient[n]) for n in names])
        assert np.all(np.abs(mean - symbolic) < 5 * se + 1e-12), (v.estimator.name, v.placement, mean, symbolic, se)
        if v.gradient_of is not None:
            target = reverse if v.gradient_of == audit.REVERSE else forward
            assert np.allclose(symbolic, target, rtol=1e-12, atol=1e-12)
        else:
            for target in (reverse, forward):
                assert np.any(np.abs(mean - target) > 8 * se), (v.estimator.name, v.placement)
        assert np.allclose([at(v.bias[n]) for n in names], symbolic - reverse, rtol=1e-10, atol=1e-12)


def test_audit_formats(logits_audit):
    from symelig.cli import main

    text = audit.text(logits_audit)
    assert "k3 = r − 1 − log r" in text and "∇ KL(π_ref‖π_θ)" in text
    latex = audit.latex(logits_audit)
    assert latex.count(r"\\") >= 8 and r"\begin{tabular}" in latex and r"\end{align}" in latex
    records = audit.to_dict(logits_audit)["verdicts"]
    assert {(r["estimator"], r["placement"]) for r in records} == {
        (e, p) for e in ("k1", "k2", "k3", "k3_is") for p in ("loss", "reward")}
    for r in records:
        assert set(r) >= {"estimator", "placement", "gradient_of", "bias_latex", "bias_text"}
        assert (r["bias_text"] == "0") == (r["gradient_of"] == audit.REVERSE)
    json.dumps(records)
    assert main is not None
    import symelig

    assert [v.gradient_of for v in symelig.audit_kl("categorical", "logits").verdicts] == [v.gradient_of for v in logits_audit.verdicts]


def test_cli_audit(capsys):
    from symelig.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["audit", "kl", "categorical", "--param", "logits", "--format", "json"])
    assert stop.value.code == 0
    out = json.loads(capsys.readouterr().out)
    verdict = {(r["estimator"], r["placement"]): r["gradient_of"] for r in out["verdicts"]}
    assert verdict[("k3", "loss")] == "forward_kl" and verdict[("k1", "reward")] == "reverse_kl"
    with pytest.raises(SystemExit) as stop:
        main(["audit", "kl", "cauchy", "--param", "scale"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("symelig: error: cauchy --param scale has no closed-form KL") and err.count("\n") == 1


def test_an_undecided_comparison_is_an_error_not_a_verdict(monkeypatch):
    """Where the rules miss a cancellation the audit refuses instead of calling the estimator
    biased: simulated by a zero test that never succeeds."""
    from symelig.divergence import Setting
    from symelig.errors import SymeligError

    monkeypatch.setattr(Setting, "is_zero", lambda self, expr: False)
    with pytest.raises(SymeligError, match="could not decide symbolically"):
        audit.audit_kl("exponential", "rate")


# ---- exact enumeration for the discrete families whose moments the audit now uses ---------

def _discrete_case(family):
    """(values, log pmf at θ / ref / old over the support 0..M, score at θ) for one point; the
    pmfs by hand from scipy's, the score by hand."""
    from scipy import stats

    if family == "poisson":
        lam, lr, lo = 3.5, 2.0, 5.0
        x = np.arange(0, 200)
        pmf = lambda rate: stats.poisson.logpmf(x, rate)  # noqa: E731
        return {"lambda": lam, "lambda_ref": lr, "lambda_old": lo}, x, (pmf(lam), pmf(lr), pmf(lo)), (x / lam - 1)[:, None]
    if family == "binomial":
        n, p, pr, po = 7, 0.3, 0.55, 0.4
        x = np.arange(0, n + 1)
        pmf = lambda q: stats.binom.logpmf(x, n, q)  # noqa: E731
        return {"p": p, "p_ref": pr, "p_old": po, "n": n}, x, (pmf(p), pmf(pr), pmf(po)), (x / p - (n - x) / (1 - p))[:, None]
    if family == "geometric":  # failures before the first success
        p, pr, po = 0.3, 0.5, 0.2
        x = np.arange(0, 400)
        pmf = lambda q: stats.geom.logpmf(x + 1, q)  # noqa: E731
        return {"p": p, "p_ref": pr, "p_old": po}, x, (pmf(p), pmf(pr), pmf(po)), (1 / p - x / (1 - p))[:, None]
    p, pr, po = 0.3, 0.8, 0.5  # bernoulli
    x = np.arange(0, 2)
    pmf = lambda q: stats.bernoulli.logpmf(x, q)  # noqa: E731
    return {"p": p, "p_ref": pr, "p_old": po}, x, (pmf(p), pmf(pr), pmf(po)), (x / p - (1 - x) / (1 - p))[:, None]


@pytest.mark.parametrize("family", ["poisson", "binomial", "geometric", "bernoulli"])
def test_discrete_verdicts_by_exact_enumeration(family):
    """The moments these families declare (E[x^k] from their MGFs) let the audit average every
    estimator; each E[g] against the enumeration over the support, each verdict against the
    enumerated gradients ∇ KL(π_θ‖π_ref) = E_θ[log(π/π_ref)·e] and ∇ KL(π_ref‖π_θ) = −E_ref[e]."""
    result = audit.audit_kl(family, "probs" if family != "poisson" else "rate")
    values, _, (lp, lref, lold), score = _discrete_case(family)
    p_theta, p_ref, p_old = np.exp(lp), np.exp(lref), np.exp(lold)
    L, r, rho = lp - lref, np.exp(lref - lp), np.exp(lp - lold)
    reverse = (p_theta * L) @ score
    forward = -(p_ref @ score)

    def at(expr):
        return float(expr.subs({sym: values[str(sym)] for sym in expr.free_symbols}).evalf(30))

    for v in result.verdicts:
        g = _per_sample(v.estimator.name, v.placement, L, r, rho, score)
        weights = p_old if v.estimator.sampling == "behaviour" else p_theta
        exact = weights @ g
        symbolic = np.array([at(v.expected_gradient[n]) for n in result.setting.parameters])
        np.testing.assert_allclose(symbolic, exact, rtol=1e-10, atol=1e-12, err_msg=f"{v.estimator.name} in the {v.placement}")
        if v.gradient_of is not None:
            np.testing.assert_allclose(symbolic, reverse if v.gradient_of == audit.REVERSE else forward, rtol=1e-10, atol=1e-12)
        else:
            assert not np.allclose(symbolic, reverse) and not np.allclose(symbolic, forward)
