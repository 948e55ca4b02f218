from sympy import Lambda, exp, log, pi, sqrt

from .. import constraints
from ..family import Family, parametrization, positive_parametrizations, register, moments_from_mgf, mgf_variable as u


@register
class HalfNormal(Family):
    """Half-normal distribution: |N(0, σ²)|, log p(x | σ) = ½ log(2/π) − log σ − x² / (2σ²), x ≥ 0.

    Exponential family with T(x) = x², η = −1/(2σ²) < 0, A(η) = −½ log(−2η).
    """

    name = "half_normal"
    torch = "HalfNormal"
    value = constraints.positive
    parameters = {"scale": constraints.positive}
    symbols = {"scale": "sigma", "log_scale": "s", "raw_scale": "r", "eta": "eta"}

    @staticmethod
    def sample(rng, shape, scale, **arguments):
        """Draws of shape ``shape`` (samples, *batch) from numpy's Generator ``rng``: |rng.normal(0, σ)|."""
        import numpy as np

        return np.abs(rng.normal(0.0, scale, shape))

    @staticmethod
    def log_prob(x, scale):
        return log(2 / pi) / 2 - log(scale) - x**2 / (2 * scale**2)

    @classmethod
    def moments(cls, x, scale, **symbols):
        """E[x²] = σ², E[x⁴] = 3σ⁴, E[x⁶] = 15σ⁶: the even moments of |N(0, σ²)| are those of
        N(0, σ²), from its MGF exp(σ²u²/2)."""
        return moments_from_mgf(x, Lambda(u, exp(scale**2 * u**2 / 2)), 6, only_even=True)

    scale, log_scale, softplus_scale = positive_parametrizations("scale", {"scale": constraints.positive})

    @parametrization(eta=constraints.negative, natural=True)
    def natural(eta):
        """Natural parameter η = −1/(2σ²) < 0."""
        return {"scale": sqrt(-1 / (2 * eta))}
