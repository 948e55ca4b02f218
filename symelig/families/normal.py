from sympy import log, pi, sqrt

from .. import constraints
from ..family import Family, parametrization, positive_parametrizations, register


@register
class Normal(Family):
    """Normal distribution N(μ, σ²): log p(x | μ, σ) = −log σ − ½ log 2π − (x − μ)² / (2σ²).

    Exponential family with T(x) = (x, x²), η = (μ/σ², −1/(2σ²)), A(η) = −η₁²/(4η₂) − ½ log(−2η₂).
    """

    name = "normal"
    torch = "Normal"
    value = constraints.real
    parameters = {"loc": constraints.real, "scale": constraints.positive}
    symbols = {"loc": "mu", "scale": "sigma", "log_scale": "s", "raw_scale": "r", "eta1": "eta1", "eta2": "eta2"}

    @staticmethod
    def log_prob(x, loc, scale):
        return -log(scale) - log(2 * pi) / 2 - (x - loc) ** 2 / (2 * scale**2)

    @classmethod
    def moments(cls, x, loc, scale, **symbols):
        """E[x] = μ, E[(x − μ)²] = σ²."""
        return {x: loc, (x - loc) ** 2: scale**2}

    scale, log_scale, softplus_scale = positive_parametrizations("scale", {"scale": constraints.positive}, {"loc": constraints.real})

    @parametrization(eta1=constraints.real, eta2=constraints.negative, natural=True)
    def natural(eta1, eta2):
        """Natural parameters η₁ = μ/σ², η₂ = −1/(2σ²) < 0."""
        return {"loc": -eta1 / (2 * eta2), "scale": sqrt(-1 / (2 * eta2))}
