from sympy import Lambda, exp, log

from .. import constraints
from ..family import Family, parametrization, register, moments_from_mgf, mgf_variable as u
from ..functions import logfactorial, sigmoid


@register
class Binomial(Family):
    """Binomial distribution: x successes in n = total_count trials of probability p.

    log p(x | p) = log n! − log x! − log (n − x)! + x log p + (n − x) log(1 − p).
    Exponential family with T(x) = x, η = logit p: ``logits`` is the natural parametrization.
    """

    name = "binomial"
    torch = "Binomial"
    value = constraints.up_to_total_count
    arguments = {"total_count": constraints.nonnegative_integer}
    parameters = {"probs": constraints.unit_interval}
    symbols = {"probs": "p", "logits": "z", "total_count": "n"}

    @staticmethod
    def sample(rng, shape, total_count, probs, **arguments):
        """Draws of shape ``shape`` (samples, *batch) from numpy's Generator ``rng``: rng.binomial."""
        import numpy as np

        return rng.binomial(total_count.astype(np.int64), probs, shape)

    @staticmethod
    def log_prob(x, total_count, probs):
        n = total_count
        return logfactorial(n) - logfactorial(x) - logfactorial(n - x) + x * log(probs) + (n - x) * log(1 - probs)

    @classmethod
    def moments(cls, x, total_count, probs, **symbols):
        """E[x^k] for k ≤ 4 from the MGF (1 − p + p eᵘ)ⁿ: E[x] = n p, …"""
        return moments_from_mgf(x, Lambda(u, (1 - probs + probs * exp(u)) ** total_count), 4, mean=total_count * probs)

    @parametrization(probs=constraints.unit_interval)
    def probs():
        """The success probability p ∈ (0, 1)."""
        return {}

    @parametrization(logits=constraints.real, natural=True)
    def logits(logits):
        """Log-odds z, p = sigmoid(z), as ``Binomial(logits=z)``."""
        return {"probs": sigmoid(logits)}
