"""The tanh-squashed diagonal normal of SAC policies, with the sample given either as the action
a (``tanh_normal``) or as the stored pre-squash u (``tanh_normal_presquash``)."""
from dataclasses import replace

from sympy import Sum, log, pi

from .. import constraints
from ..family import Family, K, i, positive_parametrizations, register
from ..functions import softplus

JACOBIAN_NOTE = (
    "The Jacobian term log|da/du| = log((high − low)/2) + 2(log 2 − u − softplus(−2u)) (in the action: "
    "log 2 + log(a − low) + log(high − a) − log(high − low)) has zero "
    "eligibility: u is fixed by the stored sample and does not depend on θ, so the eligibility "
    "is the Gaussian's at u (diag_normal's) and the Jacobian only shifts log p."
)


def _gaussian(u, loc, scale):
    return -log(scale[i]) - log(2 * pi) / 2 - (u - loc[i]) ** 2 / (2 * scale[i] ** 2)


def _log_jacobian(u, low, high):
    """log|da/du| for a = low + (high − low)(tanh u + 1)/2: log((high − low)/2) + log(1 − tanh²u),
    with log(1 − tanh²u) = 2(log 2 − u − softplus(−2u)), finite for every u (1 − tanh²u
    underflows to 0 for |u| > 19 in float64)."""
    return log((high[i] - low[i]) / 2) + 2 * (log(2) - u - softplus(-2 * u))


def _parametrizations():
    made = positive_parametrizations("scale", {"scale": constraints.positive_vector}, {"loc": constraints.real_vector})
    return tuple(replace(p, doc=f"{p.doc}\n\n{JACOBIAN_NOTE}") for p in made)


def _presquash_draws(rng, shape, loc, scale, low, high):
    """Gaussian draws u of shape ``shape`` (samples, *batch) + (K,), K the common last axis of
    the parameters and bounds."""
    import numpy as np

    event = np.broadcast_shapes(*(np.shape(v)[-1:] for v in (loc, scale, low, high)))
    return rng.normal(loc, scale, tuple(shape) + event)


def _squash(u, low, high):
    """a = low + (high − low)(tanh u + 1)/2, written from the nearer bound, a − low = (high −
    low)·σ(2u) for u < 0 and high − a = (high − low)·σ(−2u) for u ≥ 0, so that an action near a
    bound keeps its distance to it; one that still rounds onto a bound (|u| ≳ 19 in float64) is
    moved to the nearest number inside, since log p has no value at a bound."""
    import numpy as np
    from scipy.special import expit

    width = high - low
    a = np.where(u < 0, low + width * expit(2 * u), high - width * expit(-2 * u))
    low, high = np.broadcast_to(low, a.shape), np.broadcast_to(high, a.shape)
    return np.clip(a, np.nextafter(low, high), np.nextafter(high, low))


@register
class TanhNormal(Family):
    """Tanh-squashed diagonal normal (SAC's policy), the sample being the action a_i = low_i + (high_i − low_i)(tanh(u_i) + 1)/2 of u_i ~ N(μ_i, σ_i²).

    log p(a) = Σ_i [log N(u_i; μ_i, σ_i) − log|da_i/du_i|], log|da/du| = log 2 + log(a − low) +
    log(high − a) − log(high − low) (the softplus form below, written in a), with the pre-squash value recovered
    without cancellation, u_i = ½[log(a_i − low_i) − log(high_i − a_i)] (not atanh of a rescaled
    a, which loses digits near a bound; at the centre the two logs cancel to an absolute error of
    one ulp, which u − μ absorbs).  An action must lie strictly inside (low, high):
    one at a bound has no u.  In float32 an action within one unit in the last place of a
    bound (1 − a < 6e-8 for high = 1) rounds onto it and is refused with a one-line error;
    store the pre-squash u (``tanh_normal_presquash``) to keep such samples.  ``low`` and
    ``high`` are arguments, not differentiated; left out, they are −1 and 1 in every coordinate.

    The Jacobian term has zero eligibility: u is fixed by the stored action and does not depend
    on θ, so e is the Gaussian's at u.  The Fisher information equals diag_normal's (it does not
    change under a one-to-one map of the sample); the engine derives it for
    ``tanh_normal_presquash``, whose Hessian is polynomial in its sample.
    """

    name = "tanh_normal"
    torch = None  # TransformedDistribution(Normal, [TanhTransform, AffineTransform]): tests/test_torch.py
    value = constraints.squashed
    arguments = {"low": constraints.low, "high": constraints.high}
    defaults = {"low": -1.0, "high": 1.0}  # the unit box of SB3, CleanRL and Spinning Up
    parameters = {"loc": constraints.real_vector, "scale": constraints.positive_vector}
    symbols = {"loc": "mu", "scale": "sigma", "log_scale": "s", "raw_scale": "r"}

    @staticmethod
    def sample(rng, shape, loc, scale, low, high, **arguments):
        """Draws of shape ``shape`` (samples, *batch) + (K,) from numpy's Generator ``rng``: the
        action a = low + (high − low)(tanh u + 1)/2 of u ~ N(μ, σ²) per coordinate."""
        return _squash(_presquash_draws(rng, shape, loc, scale, low, high), low, high)

    @staticmethod
    def log_prob(x, low, high, loc, scale):
        u = (log(x[i] - low[i]) - log(high[i] - x[i])) / 2
        # the quadratic term a sum of its own: printed whole, one sum of the Gaussian runs past a page
        quadratic = Sum(-((u - loc[i]) ** 2) / (2 * scale[i] ** 2), (i, 0, K - 1))
        return quadratic + Sum(-log(scale[i]) - log(2 * pi) / 2, (i, 0, K - 1)) - TanhNormal.log_jacobian(x, low, high)

    @classmethod
    def log_jacobian(cls, x, low, high, **symbols):
        """Σ_i log|da_i/du_i| in the action itself: da/du = ((high − low)/2)(1 − y)(1 + y) with
        y = tanh u, 1 − y = 2(high − a)/(high − low), 1 + y = 2(a − low)/(high − low), so
        log|da/du| = log 2 + log(a − low) + log(high − a) − log(high − low): no cancellation at
        either bound."""
        return Sum(log(2) + log(x[i] - low[i]) + log(high[i] - x[i]) - log(high[i] - low[i]), (i, 0, K - 1))

    scale, log_scale, softplus_scale = _parametrizations()


@register
class TanhNormalPresquash(Family):
    """Tanh-squashed diagonal normal, the sample being the stored pre-squash u_i ~ N(μ_i, σ_i²) of the action a_i = low_i + (high_i − low_i)(tanh(u_i) + 1)/2.

    log p is the density of the action a at a(u), as tanh_normal's: Σ_i [log N(u_i; μ_i, σ_i)
    − log|da_i/du_i|], with the Jacobian written through softplus so that it stays finite where
    tanh(u) rounds to ±1 (|u| > 9 in float32).  The eligibility is diag_normal's at x = u.
    """

    name = "tanh_normal_presquash"
    torch = None  # TransformedDistribution(Normal, [TanhTransform, AffineTransform]) at u: tests/test_torch.py
    value = constraints.real_vector
    arguments = {"low": constraints.low, "high": constraints.high}
    defaults = {"low": -1.0, "high": 1.0}  # the unit box of SB3, CleanRL and Spinning Up
    parameters = {"loc": constraints.real_vector, "scale": constraints.positive_vector}
    symbols = {"loc": "mu", "scale": "sigma", "log_scale": "s", "raw_scale": "r", "x": "u"}

    @staticmethod
    def sample(rng, shape, loc, scale, low, high, **arguments):
        """Draws of shape ``shape`` (samples, *batch) + (K,) from numpy's Generator ``rng``: the
        pre-squash u ~ N(μ, σ²) per coordinate (the bounds only set K's broadcast)."""
        return _presquash_draws(rng, shape, loc, scale, low, high)

    @staticmethod
    def log_prob(x, low, high, loc, scale):
        return Sum(_gaussian(x[i], loc, scale), (i, 0, K - 1)) - TanhNormalPresquash.log_jacobian(x, low, high)

    @classmethod
    def log_jacobian(cls, x, low, high, **symbols):
        """Σ_i log|da_i/du_i| at the stored u_i = x_i."""
        return Sum(_log_jacobian(x[i], low, high), (i, 0, K - 1))

    @classmethod
    def moments(cls, x, loc, scale, **symbols):
        """E[u_i] = μ_i, E[u_i²] = μ_i² + σ_i² (u is the Gaussian sample)."""
        return {x[i]: loc[i], x[i] ** 2: loc[i] ** 2 + scale[i] ** 2}

    scale, log_scale, softplus_scale = _parametrizations()
