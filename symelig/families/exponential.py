from sympy import log

from .. import constraints
from ..family import Family, parametrization, positive_parametrizations, register


@register
class Exponential(Family):
    """Exponential distribution with rate λ: log p(x | λ) = log λ − λx, x ≥ 0.

    Exponential family with T(x) = x, η = −λ < 0, A(η) = −log(−η).
    """

    name = "exponential"
    torch = "Exponential"
    value = constraints.positive
    parameters = {"rate": constraints.positive}
    symbols = {"rate": "lambda", "log_rate": "ell", "raw_rate": "r", "eta": "eta"}

    @staticmethod
    def log_prob(x, rate):
        return log(rate) - rate * x

    @classmethod
    def moments(cls, x, rate, **symbols):
        """E[x] = 1/λ."""
        return {x: 1 / rate}

    rate, log_rate, softplus_rate = positive_parametrizations("rate", {"rate": constraints.positive})

    @parametrization(eta=constraints.negative, natural=True)
    def natural(eta):
        """Natural parameter η = −λ < 0."""
        return {"rate": -eta}
