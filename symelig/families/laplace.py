from sympy import Abs, Lambda, gamma, log

from .. import constraints
from ..family import EPSILON, Family, Standard, positive_parametrizations, register, s, t


@register
class Laplace(Family):
    """Laplace distribution: log p(x | μ, b) = −log 2b − |x − μ| / b."""

    name = "laplace"
    torch = "Laplace"
    value = constraints.real
    parameters = {"loc": constraints.real, "scale": constraints.positive}
    symbols = {"loc": "mu", "scale": "b", "log_scale": "s", "raw_scale": "r"}

    @staticmethod
    def sample(rng, shape, loc, scale, **arguments):
        """Draws of shape ``shape`` (samples, *batch) from numpy's Generator ``rng``: rng.laplace."""
        return rng.laplace(loc, scale, shape)

    @staticmethod
    def log_prob(x, loc, scale):
        return -log(2 * scale) - Abs(x - loc) / scale

    @classmethod
    def standard(cls, loc, scale, **symbols):
        """x = μ + ε b t with t ~ Exponential(1) and a fair sign ε: E[t^s] = Γ(1 + s)."""
        law = "t = |x − μ|/b ~ Exponential(1), E[t^s] = Γ(1 + s)"
        return Standard(loc + EPSILON * scale * t, Lambda(s, gamma(1 + s)), law, symmetric=True)

    scale, log_scale, softplus_scale = positive_parametrizations("scale", {"scale": constraints.positive}, {"loc": constraints.real})
