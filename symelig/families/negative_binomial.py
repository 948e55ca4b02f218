from sympy import Lambda, exp, log, loggamma

from .. import constraints
from ..family import Family, parametrization, register, moments_from_mgf, mgf_variable as u
from ..functions import logfactorial, sigmoid


@register
class NegativeBinomial(Family):
    """Negative binomial distribution: x successes before r = total_count failures, as PyTorch.

    log p(x | p) = log Γ(x + r) − log Γ(r) − log x! + r log(1 − p) + x log p.
    Exponential family (r fixed) with T(x) = x, η = log p < 0, A(η) = −r log(1 − e^η).
    """

    name = "negative_binomial"
    torch = "NegativeBinomial"
    value = constraints.nonnegative_integer
    arguments = {"total_count": constraints.positive}
    parameters = {"probs": constraints.unit_interval}
    symbols = {"probs": "p", "logits": "z", "total_count": "r", "eta": "eta"}

    @staticmethod
    def sample(rng, shape, total_count, probs, **arguments):
        """Draws of shape ``shape`` (samples, *batch) from numpy's Generator ``rng``: rng.negative_binomial(r, 1 − p): x counts the successes of probability p before r failures."""
        return rng.negative_binomial(total_count, 1 - probs, shape)

    @staticmethod
    def log_prob(x, total_count, probs):
        r = total_count
        return loggamma(x + r) - loggamma(r) - logfactorial(x) + r * log(1 - probs) + x * log(probs)

    @classmethod
    def moments(cls, x, total_count, probs, **symbols):
        """E[x^k] for k ≤ 4 from the MGF ((1 − p)/(1 − p eᵘ))ʳ: E[x] = r p/(1 − p), …"""
        return moments_from_mgf(x, Lambda(u, ((1 - probs) / (1 - probs * exp(u))) ** total_count), 4, mean=total_count * probs / (1 - probs))

    @parametrization(probs=constraints.unit_interval)
    def probs():
        """The success probability p ∈ (0, 1)."""
        return {}

    @parametrization(logits=constraints.real)
    def logits(logits):
        """Log-odds z, p = sigmoid(z), as ``NegativeBinomial(logits=z)``."""
        return {"probs": sigmoid(logits)}

    @parametrization(eta=constraints.negative, natural=True)
    def natural(eta):
        """Natural parameter η = log p < 0: e = x − r e^η / (1 − e^η) = T(x) − A'(η)."""
        return {"probs": exp(eta)}
