from sympy import Abs, log

from .. import constraints
from ..family import Family, positive_parametrizations, register


@register
class Laplace(Family):
    """Laplace distribution: log p(x | μ, b) = −log 2b − |x − μ| / b."""

    name = "laplace"
    torch = "Laplace"
    value = constraints.real
    parameters = {"loc": constraints.real, "scale": constraints.positive}
    symbols = {"loc": "mu", "scale": "b", "log_scale": "s", "raw_scale": "r"}

    @staticmethod
    def log_prob(x, loc, scale):
        return -log(2 * scale) - Abs(x - loc) / scale

    scale, log_scale, softplus_scale = positive_parametrizations("scale", {"scale": constraints.positive}, {"loc": constraints.real})
