from sympy import Lambda, exp, log

from .. import constraints
from ..family import Family, parametrization, register, moments_from_mgf, mgf_variable as u
from ..functions import sigmoid


@register
class Bernoulli(Family):
    """Bernoulli distribution: x ∈ {0, 1} with P(x = 1) = p.

    log p(x | p) = x log p + (1 − x) log(1 − p).  Exponential family with T(x) = x and natural
    parameter η = logit p, A(η) = softplus(η): the ``logits`` parametrization is the natural one.
    """

    name = "bernoulli"
    torch = "Bernoulli"
    value = constraints.binary
    parameters = {"probs": constraints.unit_interval}
    symbols = {"probs": "p", "logits": "z"}

    @staticmethod
    def sample(rng, shape, probs, **arguments):
        """Draws of shape ``shape`` (samples, *batch) from numpy's Generator ``rng``: rng.binomial(1, p)."""
        return rng.binomial(1, probs, shape)

    @staticmethod
    def log_prob(x, probs):
        return x * log(probs) + (1 - x) * log(1 - probs)

    @classmethod
    def moments(cls, x, probs, **symbols):
        """E[x^k] = p for k ≤ 4, from the MGF 1 − p + p eᵘ."""
        return moments_from_mgf(x, Lambda(u, 1 - probs + probs * exp(u)), 4)

    @parametrization(probs=constraints.unit_interval)
    def probs():
        """The success probability p ∈ (0, 1); Williams' e = (x − p) / (p (1 − p))."""
        return {}

    @parametrization(logits=constraints.real, natural=True)
    def logits(logits):
        """Log-odds z, p = sigmoid(z) (Williams' logistic unit); e = x − sigmoid(z)."""
        return {"probs": sigmoid(logits)}
