from sympy import Lambda, S, gamma, log, pi, sqrt

from .. import constraints
from ..family import EPSILON, Family, Standard, parametrization, positive_parametrizations, register, s, t


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
    def sample(rng, shape, loc, scale, **arguments):
        """Draws of shape ``shape`` (samples, *batch) from numpy's Generator ``rng``: rng.normal."""
        return rng.normal(loc, scale, shape)

    @staticmethod
    def log_prob(x, loc, scale):
        return -log(scale) - log(2 * pi) / 2 - (x - loc) ** 2 / (2 * scale**2)

    @classmethod
    def moments(cls, x, loc, scale, **symbols):
        """E[x] = μ, E[(x − μ)²] = σ²."""
        return {x: loc, (x - loc) ** 2: scale**2}

    @classmethod
    def standard(cls, loc, scale, **symbols):
        """x = μ + ε σ √(2t) with t = (x − μ)²/(2σ²) ~ Gamma(½, 1) and a fair sign ε:
        E[t^s] = Γ(½ + s)/Γ(½).  Only used where the moments do not suffice (the polynomials
        of degree above 2 in an entropy, KL or KL-estimator average)."""
        law = "t = (x − μ)²/(2σ²) ~ Gamma(1/2, 1), E[t^s] = Γ(1/2 + s)/Γ(1/2)"
        return Standard(loc + EPSILON * scale * sqrt(2 * t), Lambda(s, gamma(S.Half + s) / gamma(S.Half)), law, symmetric=True)

    scale, log_scale, softplus_scale = positive_parametrizations("scale", {"scale": constraints.positive}, {"loc": constraints.real})

    @parametrization(eta1=constraints.real, eta2=constraints.negative, natural=True)
    def natural(eta1, eta2):
        """Natural parameters η₁ = μ/σ², η₂ = −1/(2σ²) < 0."""
        return {"loc": -eta1 / (2 * eta2), "scale": sqrt(-1 / (2 * eta2))}
