from sympy import digamma, log, loggamma

from .. import constraints
from ..family import Family, parametrization, positive_parametrizations, register


@register
class Beta(Family):
    """Beta distribution with concentrations a = concentration1, b = concentration0, 0 < x < 1.

    log p(x | a, b) = (a − 1) log x + (b − 1) log(1 − x) − log B(a, b),
    log B(a, b) = log Γ(a) + log Γ(b) − log Γ(a + b).
    Exponential family with T(x) = (log x, log(1 − x)), η = (a − 1, b − 1).
    """

    name = "beta"
    torch = "Beta"
    value = constraints.unit_interval
    parameters = {"concentration1": constraints.positive, "concentration0": constraints.positive}
    symbols = {"concentration1": "a", "concentration0": "b", "log_concentration1": "u", "log_concentration0": "v",
               "raw_concentration1": "r", "raw_concentration0": "s", "eta1": "eta1", "eta2": "eta2"}

    @staticmethod
    def sample(rng, shape, concentration1, concentration0, **arguments):
        """Draws of shape ``shape`` (samples, *batch) from numpy's Generator ``rng``: rng.beta."""
        return rng.beta(concentration1, concentration0, shape)

    @staticmethod
    def log_prob(x, concentration1, concentration0):
        a, b = concentration1, concentration0
        return (a - 1) * log(x) + (b - 1) * log(1 - x) - loggamma(a) - loggamma(b) + loggamma(a + b)

    @classmethod
    def moments(cls, x, concentration1, concentration0, **symbols):
        """E[log x] = ψ(a) − ψ(a + b), E[log(1 − x)] = ψ(b) − ψ(a + b)."""
        return {
            log(x): digamma(concentration1) - digamma(concentration1 + concentration0),
            log(1 - x): digamma(concentration0) - digamma(concentration1 + concentration0),
        }

    concentration, log_concentration, softplus_concentration = positive_parametrizations(
        "concentration", {"concentration1": constraints.positive, "concentration0": constraints.positive}
    )

    @parametrization(eta1=constraints.above_minus_one, eta2=constraints.above_minus_one, natural=True)
    def natural(eta1, eta2):
        """Natural parameters η₁ = a − 1, η₂ = b − 1 (each > −1)."""
        return {"concentration1": eta1 + 1, "concentration0": eta2 + 1}
