from sympy import Lambda, Sum, exp, log

from .. import constraints
from ..family import Family, K, i, k, parametrization, register


@register
class Categorical(Family):
    """Categorical distribution: one draw x ∈ {0, …, K−1} with probabilities π_0, …, π_{K−1}.

    log p(x | π) = log π_x.  The parametrizations differ in how θ gives π.
    """

    name = "categorical"
    torch = "Categorical"
    torch_names = {"normalized_probs": "probs"}
    value = constraints.category
    parameters = {"normalized_probs": constraints.simplex}
    symbols = {"probs": "p", "normalized_probs": "pi", "logits": "z"}

    @staticmethod
    def sample(rng, shape, normalized_probs, **arguments):
        """Draws of shape ``shape`` (samples, *batch) from numpy's Generator ``rng``: the inverse
        of the cumulative probabilities at a uniform draw (the Generator has no batched categorical)."""
        return sample_categories(rng, shape, normalized_probs)

    @staticmethod
    def log_prob(x, normalized_probs):
        return log(normalized_probs[x])

    @parametrization(probs=constraints.nonnegative_vector)
    def probs(probs):
        """Relative probabilities, normalized as PyTorch does: π_k = p_k / Σ_i p_i.

        Every p_j enters π_x through the normalizer, so unsampled categories get a non-zero
        eligibility; scaling p by c scales it by 1/c.  Identifiability: p and c·p are the same
        distribution, and the eligibility is orthogonal to p (Σ_j p_j e_j = 0).
        """
        return {"normalized_probs": Lambda(i, probs[i] / Sum(probs[k], (k, 0, K - 1)))}

    @parametrization(normalized_probs=constraints.simplex)
    def normalized_probs():
        """Probabilities π already on the simplex, coordinates treated as free.

        The derivative ignores the constraint Σ π = 1, so it differs from the probs result by
        a multiple of the all-ones vector and agrees with it on every direction in the simplex.
        """
        return {}

    @parametrization(logits=constraints.real_vector)
    def logits(logits):
        """Softmax logits: π_k = exp(z_k) / Σ_i exp(z_i), as ``Categorical(logits=z)``.

        Identifiability: all K logits are free, z and z + c give the same distribution, and the
        eligibility sums to zero over j (it has no component along the all-ones direction).
        """
        return {"normalized_probs": Lambda(i, exp(logits[i]) / Sum(exp(logits[k]), (k, 0, K - 1)))}


def sample_categories(rng, shape, probs):
    """Category indices of shape ``shape`` (samples, *batch) for probabilities ``probs`` (*batch, K):
    the number of cumulative probabilities below a uniform draw (normalized first)."""
    import numpy as np

    cumulative = np.cumsum(probs, axis=-1)
    cumulative = cumulative / cumulative[..., -1:]
    u = rng.random(tuple(shape) + (1,))
    return np.sum(u >= cumulative[..., :-1], axis=-1)
