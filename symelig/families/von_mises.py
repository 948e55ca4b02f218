from sympy import besseli, cos, log, pi, sin

from .. import constraints
from ..family import Family, positive_parametrizations, register
from ..functions import bessel_i1_i0


@register
class VonMises(Family):
    """von Mises distribution on the circle: log p(x | μ, κ) = κ cos(x − μ) − log 2π − log I₀(κ)."""

    name = "von_mises"
    torch = "VonMises"
    value = constraints.angle
    parameters = {"loc": constraints.real, "concentration": constraints.positive}
    symbols = {"loc": "mu", "concentration": "kappa", "log_concentration": "k", "raw_concentration": "r"}

    @staticmethod
    def sample(rng, shape, loc, concentration, **arguments):
        """Draws of shape ``shape`` (samples, *batch) from numpy's Generator ``rng``: rng.vonmises, on [−π, π]."""
        return rng.vonmises(loc, concentration, shape)

    @staticmethod
    def log_prob(x, loc, concentration):
        return concentration * cos(x - loc) - log(2 * pi) - log(besseli(0, concentration))

    @classmethod
    def moments(cls, x, loc, concentration, **symbols):
        """E[cos(x − μ)] = I₁(κ)/I₀(κ), E[sin(x − μ)] = 0."""
        return {cos(x - loc): bessel_i1_i0(concentration), sin(loc - x): 0}

    concentration, log_concentration, softplus_concentration = positive_parametrizations(
        "concentration", {"concentration": constraints.positive}, {"loc": constraints.real}
    )
