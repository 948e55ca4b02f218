from sympy import Lambda, Sum, exp, log

from .. import constraints
from ..functions import masked
from ..family import Family, K, i, k, parametrization, register


@register
class MaskedCategorical(Family):
    """Categorical distribution restricted by a mask: x ∈ {0, …, K−1} with m_x = 1.

    log p(x | π) = log π_x, where π is zero outside the allowed categories (m_k = 0), as
    sb3-contrib's ``MaskableCategorical`` and ``Categorical(logits=z.masked_fill(~m, -inf))``.
    """

    name = "masked_categorical"
    torch = None
    value = constraints.category  # and allowed by the mask: the check reads it
    arguments = {"mask": constraints.mask}
    parameters = {"normalized_probs": constraints.simplex}
    symbols = {"probs": "p", "normalized_probs": "pi", "logits": "z", "mask": "m"}

    @staticmethod
    def sample(rng, shape, normalized_probs, **arguments):
        """Draws of shape ``shape`` (samples, *batch): a categorical of the masked probabilities
        (a masked category has probability 0, never drawn)."""
        from .categorical import sample_categories

        return sample_categories(rng, shape, normalized_probs)

    @staticmethod
    def log_prob(x, normalized_probs):
        return log(normalized_probs[x])

    @parametrization(logits=constraints.real_vector)
    def logits(logits, mask):
        """Masked softmax logits: π_k = exp(z_k + log m_k) / Σ_i exp(z_i + log m_i), as
        ``Categorical(logits=z.masked_fill(~m, -inf))``.

        The mask m (True = allowed) is not differentiated; the eligibility is 0 on masked
        categories and sums to zero over the allowed ones.
        """
        return {"normalized_probs": Lambda(i, exp(masked(logits[i], mask[i])) / Sum(exp(masked(logits[k], mask[k])), (k, 0, K - 1)))}

    @parametrization(probs=constraints.nonnegative_vector)
    def probs(probs, mask):
        """Relative probabilities, masked and normalized: π_k = m_k p_k / Σ_i m_i p_i."""
        return {"normalized_probs": Lambda(i, mask[i] * probs[i] / Sum(mask[k] * probs[k], (k, 0, K - 1)))}
