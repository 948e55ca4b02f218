from sympy import Sum, exp, log

from .. import constraints
from ..family import Family, K, i, k, parametrization, register
from ..functions import logfactorial, xlogy


@register
class Multinomial(Family):
    """Multinomial distribution: counts x_0, …, x_{K−1} of n = total_count draws.

    log p(x | θ) = log n! − Σ_i log x_i! + Σ_i x_i log π_i, with the support Σ_i x_i = n.
    A count of 0 in a category of probability 0 contributes 0 (0 log 0 = 0).
    """

    name = "multinomial"
    torch = "Multinomial"
    value = constraints.counts
    arguments = {"total_count": constraints.nonnegative_integer}
    symbols = {"probs": "p", "normalized_probs": "p", "logits": "z", "total_count": "n"}

    @classmethod
    def identities(cls, x, total_count, **symbols):
        """The counts add up to the number of draws."""
        return {Sum(x[i], (i, 0, K - 1)): total_count}

    @parametrization(probs=constraints.nonnegative_vector)
    def probs(x, total_count, probs):
        """Relative probabilities, normalized as PyTorch does: π_i = p_i / Σ_k p_k."""
        return (
            logfactorial(total_count)
            - Sum(logfactorial(x[i]), (i, 0, K - 1))
            + Sum(xlogy(x[i], probs[i]) - x[i] * log(Sum(probs[k], (k, 0, K - 1))), (i, 0, K - 1))
        )

    @parametrization(normalized_probs=constraints.simplex)
    def normalized_probs(x, total_count, normalized_probs):
        """Probabilities already on the simplex, coordinates treated as free: π_i = p_i."""
        return (
            logfactorial(total_count)
            - Sum(logfactorial(x[i]), (i, 0, K - 1))
            + Sum(xlogy(x[i], normalized_probs[i]), (i, 0, K - 1))
        )

    @parametrization(logits=constraints.real_vector)
    def logits(x, total_count, logits):
        """Softmax logits: π_i = exp(z_i) / Σ_k exp(z_k), as ``Multinomial(logits=z)``."""
        return (
            logfactorial(total_count)
            - Sum(logfactorial(x[i]), (i, 0, K - 1))
            + Sum(x[i] * (logits[i] - log(Sum(exp(logits[k]), (k, 0, K - 1)))), (i, 0, K - 1))
        )
