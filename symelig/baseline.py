"""Variance of the score-function gradient estimator, and the optimal constant baseline.

REINFORCE estimates ∇θ E[f(x)] by g = e(x)·(f(x) − b), x ∼ p(x | θ), for any b constant in x
(E[e] = 0).  Coordinate by coordinate, Var[g_j] = E[e_j² (f − b_j)²] − (∇_j E f)² is a parabola
in b_j with its minimum at

    b_j* = E[e_j² f] / E[e_j²],

where E[e_j²] is the diagonal of the Fisher information (``Derivation.fisher``).  Given a batch of
samples and their returns, :func:`optimal_baseline` estimates b* by the sample ratio and
:func:`gradient_variance` measures Var[g_j] for any baselines, e.g. b* against the mean return.
"""
from __future__ import annotations

import numpy as np

from .errors import SymeligError


def _eligibility_and_returns(d, x, returns, params, validate):
    f = np.asarray(returns, dtype=np.float64)
    e = d.eligibility(x, validate=validate, **params)
    n = f.shape[0] if f.ndim == 1 else None
    if n is None:
        raise SymeligError(f"returns must be one number per sample, shape (N,); got shape {f.shape}")
    for name, value in e.items():
        if np.shape(value)[:1] != (n,):
            raise SymeligError(f"the eligibility for {name} has shape {np.shape(value)}: x and the parameters must have "
                               f"the {n} samples of returns on their first axis")
    return e, f


def _along(f, value):
    return f.reshape((-1,) + (1,) * (np.ndim(value) - 1))


def optimal_baseline(d, x, returns, *, validate: bool = True, **params) -> dict:
    """{parameter: b*} with b*_j = Σ_n e_j(x_n)² f_n / Σ_n e_j(x_n)², the sample estimate of
    E[e_j² f]/E[e_j²]; shaped like one sample's parameter (a K-vector for logits).  A coordinate
    whose eligibility is 0 on every sample gets the mean return."""
    e, f = _eligibility_and_returns(d, x, returns, params, validate)
    out = {}
    for name, value in e.items():
        w = np.asarray(value, dtype=np.float64) ** 2
        total = w.sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            b = (w * _along(f, w)).sum(0) / total
        out[name] = np.where(total > 0, b, f.mean())
    return out


def gradient_variance(d, x, returns, baseline, *, validate: bool = True, **params) -> dict:
    """{parameter: per-coordinate sample variance of e_j(x)·(f − b_j)} for ``baseline`` a number
    (the same b for every coordinate, e.g. the mean return) or a dict like optimal_baseline's."""
    e, f = _eligibility_and_returns(d, x, returns, params, validate)
    out = {}
    for name, value in e.items():
        value = np.asarray(value, dtype=np.float64)
        b = baseline[name] if isinstance(baseline, dict) else baseline
        g = value * (_along(f, value) - np.asarray(b, dtype=np.float64))
        out[name] = g.var(0)
    return out
