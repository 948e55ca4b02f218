from sympy import Sum, exp, log

from .. import constraints
from ..family import Family, b, c, i, n_blocks, parametrization, register


@register
class MultiCategorical(Family):
    """Multi-discrete action: B independent categoricals over one flat logits vector, block b
    holding the categories o_b, …, o_b + n_b − 1 (o_b = Σ_{c<b} n_c), as SB3's and RLlib's
    MultiCategorical split ``logits`` by ``nvec``.

    log p(x | z) = Σ_{b<B} [z_{o_b + x_b} − log Σ_{i=o_b}^{o_b+n_b−1} e^{z_i}], derived for a symbolic
    number B of blocks of symbolic sizes n_b.
    """

    name = "multi_categorical"
    torch = None
    value = constraints.multi_category
    arguments = {"nvec": constraints.sizes}
    parameters = {"logits": constraints.real_vector}
    symbols = {"logits": "z", "nvec": "n"}

    @staticmethod
    def sample(rng, shape, logits, nvec, **arguments):
        """Draws of shape ``shape`` (samples, *batch) + (B,) from numpy's Generator ``rng``: per block
        the Gumbel-max argmax_j (z_{o_b + j} + g_j), g_j ~ Gumbel(0, 1), over the blocks laid side by
        side in a (B, max n_b) table padded with −∞ (no loop over the blocks)."""
        import numpy as np

        nvec = np.asarray(nvec).reshape(-1)
        starts = np.cumsum(nvec) - nvec
        column = np.arange(nvec.max())
        inside = column < nvec[:, None]
        index = np.where(inside, starts[:, None] + column, 0)
        keys = logits + rng.gumbel(size=tuple(shape) + np.shape(logits)[-1:])
        return np.argmax(np.where(inside, keys[..., index], -np.inf), axis=-1)

    @staticmethod
    def log_prob(x, nvec, logits):
        z, n = logits, nvec
        start = Sum(n[c], (c, 0, b - 1))  # the block's first category
        return Sum(z[start + x[b]] - log(Sum(exp(z[i]), (i, start, start + n[b] - 1))), (b, 0, n_blocks - 1))

    @parametrization(logits=constraints.real_vector)
    def logits(logits, nvec):
        """Flat logits, Σ nvec of them: the softmax of block b (z_{o_b}, …, z_{o_b + n_b − 1}, o_b =
        Σ_{c<b} n_c) gives the law of x_b: one ``Categorical(logits=s)`` per piece s of
        ``torch.split(z, nvec, -1)``.

        Identifiability: adding a constant to one block's logits leaves the law unchanged, and
        the eligibility sums to zero over each block.
        """
        return {}
