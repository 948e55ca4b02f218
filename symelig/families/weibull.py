from sympy import Lambda, gamma, log

from .. import constraints
from ..family import Family, Standard, positive_parametrizations, register, s, t


@register
class Weibull(Family):
    """Weibull distribution with scale λ and concentration k, x > 0, as ``Weibull(scale, concentration)``.

    log p(x | λ, k) = log k − log λ + (k − 1)(log x − log λ) − (x/λ)^k.
    """

    name = "weibull"
    torch = "Weibull"
    value = constraints.positive
    parameters = {"scale": constraints.positive, "concentration": constraints.positive}
    symbols = {"scale": "lambda", "concentration": "k", "log_scale": "s", "log_concentration": "c",
               "raw_scale": "r", "raw_concentration": "q"}

    @staticmethod
    def sample(rng, shape, scale, concentration, **arguments):
        """Draws of shape ``shape`` (samples, *batch) from numpy's Generator ``rng``: λ·rng.weibull(k)."""
        return scale * rng.weibull(concentration, shape)

    @staticmethod
    def log_prob(x, scale, concentration):
        lam, k = scale, concentration
        return log(k) - log(lam) + (k - 1) * (log(x) - log(lam)) - (x / lam) ** k

    @classmethod
    def standard(cls, scale, concentration, **symbols):
        """x = λ t^(1/k) with t ~ Exponential(1): E[t^s] = Γ(1 + s)."""
        return Standard(scale * t ** (1 / concentration), Lambda(s, gamma(1 + s)), "t ~ Exponential(1), E[t^s] = Γ(1 + s)")

    scale_concentration, log_scale_concentration, softplus_scale_concentration = positive_parametrizations(
        "scale_concentration", {"scale": constraints.positive, "concentration": constraints.positive}
    )
