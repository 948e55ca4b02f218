from sympy import Lambda, gamma, log

from .. import constraints
from ..family import Family, Standard, parametrization, positive_parametrizations, register, s, t


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
    def sample(rng, shape, rate, **arguments):
        """Draws of shape ``shape`` (samples, *batch) from numpy's Generator ``rng``: rng.exponential(1/λ)."""
        return rng.exponential(1 / rate, shape)

    @staticmethod
    def log_prob(x, rate):
        return log(rate) - rate * x

    @classmethod
    def moments(cls, x, rate, **symbols):
        """E[x] = 1/λ."""
        return {x: 1 / rate}

    @classmethod
    def standard(cls, rate, **symbols):
        """x = t/λ with t ~ Exponential(1): E[t^s] = Γ(1 + s).  Only used where the moments do
        not suffice (powers of x above 1 in a KL-estimator average)."""
        return Standard(t / rate, Lambda(s, gamma(1 + s)), "t = λx ~ Exponential(1), E[t^s] = Γ(1 + s)")

    rate, log_rate, softplus_rate = positive_parametrizations("rate", {"rate": constraints.positive})

    @parametrization(eta=constraints.negative, natural=True)
    def natural(eta):
        """Natural parameter η = −λ < 0."""
        return {"rate": -eta}
