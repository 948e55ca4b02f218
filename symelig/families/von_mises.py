from sympy import besseli, cos, log, pi

from .. import constraints
from ..family import Family, positive_parametrizations, register


@register
class VonMises(Family):
    """von Mises distribution on the circle: log p(x | μ, κ) = κ cos(x − μ) − log 2π − log I₀(κ)."""

    name = "von_mises"
    torch = "VonMises"
    value = constraints.angle
    parameters = {"loc": constraints.real, "concentration": constraints.positive}
    symbols = {"loc": "mu", "concentration": "kappa", "log_concentration": "k", "raw_concentration": "r"}

    @staticmethod
    def log_prob(x, loc, concentration):
        return concentration * cos(x - loc) - log(2 * pi) - log(besseli(0, concentration))

    concentration, log_concentration, softplus_concentration = positive_parametrizations(
        "concentration", {"concentration": constraints.positive}, {"loc": constraints.real}
    )
