from sympy import Sum, exp, log

from .. import constraints
from ..family import Family, K, i, n_placed, parametrization, q, r, register


@register
class PlackettLuce(Family):
    """Plackett–Luce distribution over orderings: x_0 is drawn first with probability softmax(z),
    then x_1 among the categories left, …, for k ≤ K steps (k = K: a full permutation).

    log p(x | z) = Σ_{r<k} [z_{x_r} − log Σ_{i ∉ {x_0, …, x_{r−1}}} e^{z_i}].  PyTorch has no class
    for it (pytorch#38684); the reference is autograd of this sum.
    """

    name = "plackett_luce"
    torch = None
    value = constraints.ordering
    parameters = {"logits": constraints.real_vector}
    symbols = {"logits": "z"}

    @staticmethod
    def sample(rng, shape, logits, **arguments):
        """Full orderings (k = K) of shape ``shape`` (samples, *batch) + (K,) from numpy's Generator
        ``rng``, by Gumbel-top-k: the categories sorted by z_i + g_i, g_i ~ Gumbel(0, 1), descending
        (the argmax is a softmax(z) draw, and given it the rest is the same draw among the rest)."""
        import numpy as np

        keys = logits + rng.gumbel(size=tuple(shape) + np.shape(logits)[-1:])
        return np.argsort(-keys, axis=-1, kind="stable")

    @staticmethod
    def log_prob(x, logits):
        z = logits
        # the categories not yet placed at step r: all of them less the r placed before
        remaining = Sum(exp(z[i]), (i, 0, K - 1)) - Sum(exp(z[x[q]]), (q, 0, r - 1))
        return Sum(z[x[r]] - log(remaining), (r, 0, n_placed - 1))

    @parametrization(logits=constraints.real_vector)
    def logits():
        """Log-weights (scores) of the categories: at each step the next one is drawn with the
        softmax of the logits of those not yet placed.

        Identifiability: z and z + c give the same distribution, and the eligibility sums to zero
        over j.  A category never placed (k < K) still gets a non-zero eligibility: it competed
        at every step.
        """
        return {}
