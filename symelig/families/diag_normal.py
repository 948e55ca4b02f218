from sympy import Sum, log, pi

from .. import constraints
from ..family import Family, K, i, positive_parametrizations, register


@register
class DiagNormal(Family):
    """Diagonal normal over a vector of K coordinates: log p(x | μ, σ) = Σ_i [−log σ_i − ½ log 2π − (x_i − μ_i)² / (2σ_i²)].

    The Gaussian policy of continuous control, ``Independent(Normal(loc, scale), 1)``: each
    coordinate is an independent normal and log p sums over the last axis.
    """

    name = "diag_normal"
    torch = "Independent(Normal)"
    value = constraints.real_vector
    parameters = {"loc": constraints.real_vector, "scale": constraints.positive_vector}
    symbols = {"loc": "mu", "scale": "sigma", "log_scale": "s", "raw_scale": "r"}

    @staticmethod
    def sample(rng, shape, loc, scale, **arguments):
        """Draws of shape ``shape`` (samples, *batch) from numpy's Generator ``rng``: rng.normal per coordinate."""
        import numpy as np

        return rng.normal(loc, scale, shape + np.shape(np.broadcast_arrays(loc, scale)[0])[-1:])

    @staticmethod
    def log_prob(x, loc, scale):
        return Sum(-log(scale[i]) - log(2 * pi) / 2 - (x[i] - loc[i]) ** 2 / (2 * scale[i] ** 2), (i, 0, K - 1))

    @classmethod
    def moments(cls, x, loc, scale, **symbols):
        """E[x_i] = μ_i, E[x_i²] = μ_i² + σ_i² (the Hessian is a polynomial in x_j, expanded)."""
        return {x[i]: loc[i], x[i] ** 2: loc[i] ** 2 + scale[i] ** 2}

    scale, log_scale, softplus_scale = positive_parametrizations(
        "scale", {"scale": constraints.positive_vector}, {"loc": constraints.real_vector}
    )
