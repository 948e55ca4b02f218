from sympy import Lambda, digamma, gamma, log, loggamma

from .. import constraints
from ..family import Family, Standard, parametrization, positive_parametrizations, register, s, t


@register
class Gamma(Family):
    """Gamma distribution with concentration α and rate β, x > 0.

    log p(x | α, β) = α log β + (α − 1) log x − βx − log Γ(α).
    Exponential family with T(x) = (log x, x), η = (α − 1, −β), A(η) = log Γ(η₁ + 1) − (η₁ + 1) log(−η₂).
    """

    name = "gamma"
    torch = "Gamma"
    value = constraints.positive
    parameters = {"concentration": constraints.positive, "rate": constraints.positive}
    symbols = {"concentration": "alpha", "rate": "beta", "log_concentration": "a", "log_rate": "b",
               "raw_concentration": "u", "raw_rate": "v", "eta1": "eta1", "eta2": "eta2"}

    @staticmethod
    def sample(rng, shape, concentration, rate, **arguments):
        """Draws of shape ``shape`` (samples, *batch) from numpy's Generator ``rng``: rng.standard_gamma(α)/β."""
        return rng.standard_gamma(concentration, shape) / rate

    @staticmethod
    def log_prob(x, concentration, rate):
        a, b = concentration, rate
        return a * log(b) + (a - 1) * log(x) - b * x - loggamma(a)

    @classmethod
    def moments(cls, x, concentration, rate, **symbols):
        """E[x] = α/β, E[log x] = ψ(α) − log β."""
        return {x: concentration / rate, log(x): digamma(concentration) - log(rate)}

    @classmethod
    def standard(cls, concentration, rate, **symbols):
        """x = t/β with t ~ Gamma(α, 1): E[t^s] = Γ(α + s)/Γ(α).  Only used where the moments do
        not suffice (products of x and log x in a KL-estimator average)."""
        law = "t = βx ~ Gamma(α, 1), E[t^s] = Γ(α + s)/Γ(α)"
        return Standard(t / rate, Lambda(s, gamma(concentration + s) / gamma(concentration)), law)

    concentration_rate, log_concentration_rate, softplus_concentration_rate = positive_parametrizations(
        "concentration_rate", {"concentration": constraints.positive, "rate": constraints.positive}
    )

    @parametrization(eta1=constraints.above_minus_one, eta2=constraints.negative, natural=True)
    def natural(eta1, eta2):
        """Natural parameters η₁ = α − 1 > −1, η₂ = −β < 0."""
        return {"concentration": eta1 + 1, "rate": -eta2}
