"""tanh_normal's log p as three RL libraries compute it, and how far each is from the exact one.

SAC code writes the log-det-Jacobian of the squashing a = low + c·(tanh u + 1), c = (high − low)/2,
in its own way, with its own epsilon (read from each library's source):

* Stable-Baselines3 (``SquashedDiagGaussianDistribution.log_prob``): log N(u) − Σ log(1 − y² + 1e-6)
  with y = tanh(u) the action in [−1, 1] (SB3 rescales to [low, high] outside the
  distribution, so log c is left out); from an action alone, u = atanh(y) with y clipped to
  ±(1 − machine epsilon) (``TanhBijector.inverse``).
* CleanRL (``sac_continuous_action.py``): log N(u) − Σ log(c(1 − y²) + 1e-6).
* Spinning Up (``sac/core.py``): log N(u) − Σ 2(log 2 − u − softplus(−2u)), exact for the
  squashing into [−1, 1]; the scaling by ``act_limit`` is left out.

The exact value is tanh_normal's (log c included, no epsilon).  The eligibility is the same for
all four: the Jacobian term does not depend on θ for a stored sample.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import SymeligError

LIBRARIES = ("sb3", "cleanrl", "spinningup")
FAMILIES = ("tanh_normal", "tanh_normal_presquash")
EPSILON = 1e-6  # SB3's and CleanRL's, added inside the log of the Jacobian


@dataclass(frozen=True)
class CompatLogProb:
    """``log_prob``: the library's value; ``exact``: tanh_normal's; ``difference`` = log_prob − exact."""

    library: str
    log_prob: np.ndarray
    exact: np.ndarray

    @property
    def difference(self) -> np.ndarray:
        return self.log_prob - self.exact


def check_compat(library: str, family: str) -> None:
    if library not in LIBRARIES:
        raise SymeligError(f"unknown --compat library {library!r}; choose one of: {', '.join(LIBRARIES)}")
    if family not in FAMILIES:
        raise SymeligError(f"--compat reproduces tanh-squashed policies; {family!r} is not one of: {', '.join(FAMILIES)}")


def compat_log_prob(library: str, family: str, param: str | None, x, **params) -> CompatLogProb:
    """log p(x | θ) as ``library`` computes it for ``family`` (tanh_normal: x is the action;
    tanh_normal_presquash: x is u) in parametrization ``param``, beside the exact value."""
    from . import derive

    check_compat(library, family)
    d = derive(family, param)
    params = d.defaulted(x, params)  # low = −1, high = 1 where left out
    exact = d.log_prob(x, **params)  # checks every argument (an action strictly inside its bounds)
    x, low, high = (np.asarray(v) for v in (x, params["low"], params["high"]))
    dtype = np.result_type(x, low, high, *(np.asarray(params[n]) for n in d.parameters))
    x, low, high = (v.astype(dtype) for v in (x, low, high))
    with np.errstate(all="ignore"):
        if family == "tanh_normal":
            u = (np.log(x - low) - np.log(high - x)) / 2
            y = (2 * x - (low + high)) / (high - low)  # y = a exactly for low = −1, high = 1
        else:
            u, y = x, np.tanh(x)
        if library == "sb3" and family == "tanh_normal":
            eps = np.finfo(dtype).eps
            clipped = np.clip(y, -1 + eps, 1 - eps)
            u = 0.5 * (np.log1p(clipped) - np.log1p(-clipped))
        gaussian = derive("diag_normal", d.param).log_prob(u, **{n: params[n] for n in d.parameters})
        correction = {
            "sb3": lambda: np.log(1 - y**2 + EPSILON),
            "cleanrl": lambda: np.log((high - low) / 2 * (1 - y**2) + EPSILON),
            "spinningup": lambda: 2 * (np.log(2) - u - np.logaddexp(0, -2 * u)),
        }[library]()
    return CompatLogProb(library, gaussian - correction.sum(-1), exact)
