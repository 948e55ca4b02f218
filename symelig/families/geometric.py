from sympy import Lambda, exp, log

from .. import constraints
from ..family import Family, parametrization, register, moments_from_mgf, mgf_variable as u
from ..functions import sigmoid


@register
class Geometric(Family):
    """Geometric distribution: x failures before the first success of probability p, as PyTorch.

    log p(x | p) = x log(1 − p) + log p.
    Exponential family with T(x) = x, η = log(1 − p) < 0, A(η) = −log(1 − e^η).
    """

    name = "geometric"
    torch = "Geometric"
    value = constraints.nonnegative_integer
    parameters = {"probs": constraints.unit_interval}
    symbols = {"probs": "p", "logits": "z", "eta": "eta"}

    @staticmethod
    def sample(rng, shape, probs, **arguments):
        """Draws of shape ``shape`` (samples, *batch) from numpy's Generator ``rng``: rng.geometric(p) − 1 (numpy counts trials, x counts failures)."""
        return rng.geometric(probs, shape) - 1

    @staticmethod
    def log_prob(x, probs):
        return x * log(1 - probs) + log(probs)

    @classmethod
    def moments(cls, x, probs, **symbols):
        """E[x^k] for k ≤ 4 (failures before the first success) from the MGF p/(1 − (1 − p)eᵘ):
        E[x] = (1 − p)/p, …"""
        return moments_from_mgf(x, Lambda(u, probs / (1 - (1 - probs) * exp(u))), 4, mean=(1 - probs) / probs)

    @parametrization(probs=constraints.unit_interval)
    def probs():
        """The success probability p ∈ (0, 1)."""
        return {}

    @parametrization(logits=constraints.real)
    def logits(logits):
        """Log-odds z, p = sigmoid(z), as ``Geometric(logits=z)``."""
        return {"probs": sigmoid(logits)}

    @parametrization(eta=constraints.negative, natural=True)
    def natural(eta):
        """Natural parameter η = log(1 − p) < 0."""
        return {"probs": 1 - exp(eta)}
