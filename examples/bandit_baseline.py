"""A K-armed bandit with a softmax policy: how much variance the per-coordinate optimal
baseline b_j* = E[e_j² f]/E[e_j²] removes from the REINFORCE gradient, against the mean return.

The baselines are estimated on one batch and their variance measured on a fresh one, so the
optimal baseline gets no credit for fitting the batch it is judged on.

    python examples/bandit_baseline.py
"""
import numpy as np

import symelig
from symelig.baseline import gradient_variance, optimal_baseline

K, N, SEED = 10, 200_000, 0
rng = np.random.default_rng(SEED)
arm_means = np.linspace(0.0, 3.0, K)          # arm k pays N(arm_means[k], 1)
logits = rng.normal(0.0, 1.0, K)
d = symelig.derive("categorical", "logits")
pi = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()


def batch():
    x = rng.choice(K, size=N, p=pi)
    return x, arm_means[x] + rng.normal(0.0, 1.0, N)


x_fit, f_fit = batch()
x, f = batch()
z = np.broadcast_to(logits, (N, K))
b_opt = optimal_baseline(d, x_fit, f_fit, logits=z)["logits"]
b_mean = f_fit.mean()
var = {name: gradient_variance(d, x, f, b, logits=z)["logits"]
       for name, b in (("none", 0.0), ("mean", b_mean), ("optimal", {"logits": b_opt}))}
print(f"K = {K} arms, {N} samples per batch, softmax policy at random logits (seed {SEED})")
print(f"mean-return baseline {b_mean:.4f}; optimal per-coordinate baselines {np.round(b_opt, 3)}")
for name, v in var.items():
    print(f"  baseline {name:8s}: total variance Σ_j Var[g_j] = {v.sum():.4f}")
print(f"  optimal / mean = {var['optimal'].sum() / var['mean'].sum():.3f}; every coordinate lower: "
      f"{bool(np.all(var['optimal'] <= var['mean']))}")
print("  Fisher diagonal E[e_j²] (d.fisher) vs its sample mean:",
      np.allclose(d.fisher(logits=logits)["diagonal"] + d.fisher(logits=logits)["scale"] * d.fisher(logits=logits)["vector"] ** 2,
                  (d.eligibility(x, logits=z)["logits"] ** 2).mean(0), atol=5e-3))
