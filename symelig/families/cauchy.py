from sympy import log, pi

from .. import constraints
from ..family import Family, positive_parametrizations, register


@register
class Cauchy(Family):
    """Cauchy distribution: log p(x | μ, γ) = −log π − log γ − log(1 + ((x − μ)/γ)²)."""

    name = "cauchy"
    torch = "Cauchy"
    value = constraints.real
    parameters = {"loc": constraints.real, "scale": constraints.positive}
    symbols = {"loc": "mu", "scale": "gamma", "log_scale": "s", "raw_scale": "r"}

    @staticmethod
    def log_prob(x, loc, scale):
        return -log(pi) - log(scale) - log(1 + ((x - loc) / scale) ** 2)

    scale, log_scale, softplus_scale = positive_parametrizations("scale", {"scale": constraints.positive}, {"loc": constraints.real})
