from sympy import exp, log

from .. import constraints
from ..family import Family, positive_parametrizations, register


@register
class Gumbel(Family):
    """Gumbel distribution: with z = (x − μ)/β, log p(x | μ, β) = −log β − z − exp(−z)."""

    name = "gumbel"
    torch = "Gumbel"
    value = constraints.real
    parameters = {"loc": constraints.real, "scale": constraints.positive}
    symbols = {"loc": "mu", "scale": "beta", "log_scale": "s", "raw_scale": "r"}

    @staticmethod
    def log_prob(x, loc, scale):
        z = (x - loc) / scale
        return -log(scale) - z - exp(-z)

    scale, log_scale, softplus_scale = positive_parametrizations("scale", {"scale": constraints.positive}, {"loc": constraints.real})
