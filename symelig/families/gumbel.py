from sympy import Lambda, exp, gamma, log

from .. import constraints
from ..family import Family, Standard, positive_parametrizations, register, s, t


@register
class Gumbel(Family):
    """Gumbel distribution: with z = (x − μ)/β, log p(x | μ, β) = −log β − z − exp(−z)."""

    name = "gumbel"
    torch = "Gumbel"
    value = constraints.real
    parameters = {"loc": constraints.real, "scale": constraints.positive}
    symbols = {"loc": "mu", "scale": "beta", "log_scale": "s", "raw_scale": "r"}

    @staticmethod
    def sample(rng, shape, loc, scale, **arguments):
        """Draws of shape ``shape`` (samples, *batch) from numpy's Generator ``rng``: rng.gumbel."""
        return rng.gumbel(loc, scale, shape)

    @staticmethod
    def log_prob(x, loc, scale):
        z = (x - loc) / scale
        return -log(scale) - z - exp(-z)

    @classmethod
    def standard(cls, loc, scale, **symbols):
        """x = μ − β log t with t ~ Exponential(1): E[t^s] = Γ(1 + s)."""
        return Standard(loc - scale * log(t), Lambda(s, gamma(1 + s)), "t ~ Exponential(1), E[t^s] = Γ(1 + s)")

    scale, log_scale, softplus_scale = positive_parametrizations("scale", {"scale": constraints.positive}, {"loc": constraints.real})
