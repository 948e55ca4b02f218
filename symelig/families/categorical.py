from sympy import Sum, exp, log

from .. import constraints
from ..family import Family, K, i, parametrization, register


@register
class Categorical(Family):
    """Categorical distribution: one draw x ∈ {0, …, K−1} with probabilities π_0, …, π_{K−1}.

    log p(x | θ) = log π_x.  The three parametrizations differ in how θ gives π.
    """

    name = "categorical"
    torch = "Categorical"
    value = constraints.category
    symbols = {"probs": "p", "normalized_probs": "p", "logits": "z"}

    @parametrization(probs=constraints.nonnegative_vector)
    def probs(x, probs):
        """Relative probabilities, normalized as PyTorch does: π_k = p_k / Σ_i p_i.

        Every p_j enters π_x through the normalizer, so unsampled categories get a non-zero
        eligibility; scaling p by c scales it by 1/c.  Identifiability: p and c·p are the same
        distribution, and the eligibility is orthogonal to p (Σ_j p_j e_j = 0).
        """
        return log(probs[x]) - log(Sum(probs[i], (i, 0, K - 1)))

    @parametrization(normalized_probs=constraints.simplex)
    def normalized_probs(x, normalized_probs):
        """Probabilities already on the simplex, coordinates treated as free: π_k = p_k.

        The derivative ignores the constraint Σ p = 1, so it differs from the probs result by
        a multiple of the all-ones vector and agrees with it on every direction in the simplex.
        """
        return log(normalized_probs[x])

    @parametrization(logits=constraints.real_vector)
    def logits(x, logits):
        """Softmax logits: π_k = exp(z_k) / Σ_i exp(z_i), as ``Categorical(logits=z)``.

        Identifiability: all K logits are free, z and z + c give the same distribution, and the
        eligibility sums to zero over j (it has no component along the all-ones direction).
        """
        return logits[x] - log(Sum(exp(logits[i]), (i, 0, K - 1)))
