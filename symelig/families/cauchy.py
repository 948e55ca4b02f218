from sympy import Lambda, S, gamma, log, pi, sqrt

from .. import constraints
from ..family import EPSILON, Family, Standard, positive_parametrizations, register, s, t


@register
class Cauchy(Family):
    """Cauchy distribution: log p(x | μ, γ) = −log π − log γ − log(1 + ((x − μ)/γ)²)."""

    name = "cauchy"
    torch = "Cauchy"
    value = constraints.real
    parameters = {"loc": constraints.real, "scale": constraints.positive}
    symbols = {"loc": "mu", "scale": "gamma", "log_scale": "s", "raw_scale": "r"}

    @staticmethod
    def sample(rng, shape, loc, scale, **arguments):
        """Draws of shape ``shape`` (samples, *batch) from numpy's Generator ``rng``: μ + σ·rng.standard_cauchy."""
        return loc + scale * rng.standard_cauchy(shape)

    @staticmethod
    def log_prob(x, loc, scale):
        return -log(pi) - log(scale) - log(1 + ((x - loc) / scale) ** 2)

    @classmethod
    def standard(cls, loc, scale, **symbols):
        """x = μ + ε γ √(1/t − 1) with t = 1/(1 + z²) ~ Beta(½, ½): E[t^s] = Γ(½ + s)/(Γ(½) Γ(1 + s))."""
        law = "t = 1/(1 + ((x − μ)/γ)²) ~ Beta(1/2, 1/2), E[t^s] = Γ(1/2 + s)/(Γ(1/2) Γ(1 + s))"
        mellin = Lambda(s, gamma(S.Half + s) / (gamma(S.Half) * gamma(1 + s)))
        return Standard(loc + EPSILON * scale * sqrt(1 / t - 1), mellin, law, symmetric=True)

    scale, log_scale, softplus_scale = positive_parametrizations("scale", {"scale": constraints.positive}, {"loc": constraints.real})
