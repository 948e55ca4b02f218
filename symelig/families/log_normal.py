from sympy import log, pi, sqrt

from .. import constraints
from ..family import Family, parametrization, positive_parametrizations, register


@register
class LogNormal(Family):
    """Log-normal distribution: log x ~ N(μ, σ²), x > 0.

    log p(x | μ, σ) = −log x − log σ − ½ log 2π − (log x − μ)² / (2σ²).
    Exponential family with T(x) = (log x, (log x)²) and the normal's natural parameters.
    """

    name = "log_normal"
    torch = "LogNormal"
    value = constraints.positive
    parameters = {"loc": constraints.real, "scale": constraints.positive}
    symbols = {"loc": "mu", "scale": "sigma", "log_scale": "s", "raw_scale": "r", "eta1": "eta1", "eta2": "eta2"}

    @staticmethod
    def sample(rng, shape, loc, scale, **arguments):
        """Draws of shape ``shape`` (samples, *batch) from numpy's Generator ``rng``: rng.lognormal."""
        return rng.lognormal(loc, scale, shape)

    @staticmethod
    def log_prob(x, loc, scale):
        return -log(x) - log(scale) - log(2 * pi) / 2 - (log(x) - loc) ** 2 / (2 * scale**2)

    @classmethod
    def moments(cls, x, loc, scale, **symbols):
        """E[log x] = μ, E[(log x − μ)²] = σ²."""
        return {log(x): loc, (log(x) - loc) ** 2: scale**2}

    scale, log_scale, softplus_scale = positive_parametrizations("scale", {"scale": constraints.positive}, {"loc": constraints.real})

    @parametrization(eta1=constraints.real, eta2=constraints.negative, natural=True)
    def natural(eta1, eta2):
        """Natural parameters η₁ = μ/σ², η₂ = −1/(2σ²) < 0."""
        return {"loc": -eta1 / (2 * eta2), "scale": sqrt(-1 / (2 * eta2))}
