from sympy import KroneckerDelta, Lambda, Sum, exp

from .. import constraints
from ..family import Family, K, i, k, parametrization, register
from ..functions import logfactorial, xlogy


@register
class Multinomial(Family):
    """Multinomial distribution: counts x_0, …, x_{K−1} of n = total_count draws.

    log p(x | π) = log n! − Σ_i log x_i! + Σ_i x_i log π_i, with the support Σ_i x_i = n.
    A count of 0 in a category of probability 0 contributes 0 (0 log 0 = 0).
    """

    name = "multinomial"
    torch = "Multinomial"
    torch_names = {"normalized_probs": "probs"}
    value = constraints.counts
    arguments = {"total_count": constraints.nonnegative_integer}
    parameters = {"normalized_probs": constraints.simplex}
    symbols = {"probs": "p", "normalized_probs": "pi", "logits": "z", "total_count": "n"}

    @staticmethod
    def sample(rng, shape, total_count, normalized_probs, **arguments):
        """Draws of shape ``shape`` + (K,) from numpy's Generator ``rng``: rng.multinomial."""
        import numpy as np

        probs = normalized_probs / np.sum(normalized_probs, axis=-1, keepdims=True)
        return rng.multinomial(np.asarray(total_count).astype(np.int64), probs, shape)

    @staticmethod
    def log_prob(x, total_count, normalized_probs):
        return (
            logfactorial(total_count)
            - Sum(logfactorial(x[i]), (i, 0, K - 1))
            + Sum(xlogy(x[i], normalized_probs[i]), (i, 0, K - 1))
        )

    @classmethod
    def identities(cls, x, total_count, **symbols):
        """The counts add up to the number of draws."""
        return {Sum(x[i], (i, 0, K - 1)): total_count}

    @classmethod
    def moments(cls, x, total_count, normalized_probs, **symbols):
        """E[x_i] = n π_i and E[x_i x_k] = n π_i δ_ik + n(n − 1) π_i π_k."""
        n, pi = total_count, normalized_probs
        return {x[i]: n * pi[i], x[i] * x[k]: n * pi[i] * KroneckerDelta(i, k) + n * (n - 1) * pi[i] * pi[k]}

    @parametrization(probs=constraints.nonnegative_vector)
    def probs(probs):
        """Relative probabilities, normalized as PyTorch does: π_i = p_i / Σ_k p_k."""
        return {"normalized_probs": Lambda(i, probs[i] / Sum(probs[k], (k, 0, K - 1)))}

    @parametrization(normalized_probs=constraints.simplex)
    def normalized_probs():
        """Probabilities π already on the simplex, coordinates treated as free."""
        return {}

    @parametrization(logits=constraints.real_vector)
    def logits(logits):
        """Softmax logits: π_i = exp(z_i) / Σ_k exp(z_k), as ``Multinomial(logits=z)``."""
        return {"normalized_probs": Lambda(i, exp(logits[i]) / Sum(exp(logits[k]), (k, 0, K - 1)))}
