from sympy import Lambda, gamma, log, loggamma, pi, sqrt

from .. import constraints
from ..family import EPSILON, Family, Standard, positive_parametrizations, register, s, t


@register
class StudentT(Family):
    """Student's t distribution with df ν, location μ and scale σ.

    log p(x | ν, μ, σ) = log Γ((ν + 1)/2) − log Γ(ν/2) − ½ log(νπ) − log σ
                         − (ν + 1)/2 · log(1 + ((x − μ)/σ)² / ν).
    """

    name = "student_t"
    torch = "StudentT"
    value = constraints.real
    parameters = {"df": constraints.positive, "loc": constraints.real, "scale": constraints.positive}
    symbols = {"df": "nu", "loc": "mu", "scale": "sigma", "log_scale": "s", "raw_scale": "r"}

    @staticmethod
    def sample(rng, shape, df, loc, scale, **arguments):
        """Draws of shape ``shape`` (samples, *batch) from numpy's Generator ``rng``: μ + σ·rng.standard_t(ν)."""
        return loc + scale * rng.standard_t(df, shape)

    @staticmethod
    def log_prob(x, df, loc, scale):
        nu = df
        return (
            loggamma((nu + 1) / 2) - loggamma(nu / 2) - log(nu * pi) / 2 - log(scale)
            - (nu + 1) / 2 * log(1 + ((x - loc) / scale) ** 2 / nu)
        )

    @classmethod
    def standard(cls, df, loc, scale, **symbols):
        """x = μ + ε σ √(ν(1/t − 1)) with t = 1/(1 + z²/ν) ~ Beta(ν/2, ½)."""
        law = "t = 1/(1 + ((x − μ)/σ)²/ν) ~ Beta(ν/2, 1/2), E[t^s] = B(ν/2 + s, 1/2)/B(ν/2, 1/2)"
        mellin = Lambda(s, gamma(df / 2 + s) * gamma((df + 1) / 2) / (gamma(df / 2) * gamma((df + 1) / 2 + s)))
        return Standard(loc + EPSILON * scale * sqrt(df * (1 / t - 1)), mellin, law, symmetric=True)

    scale, log_scale, softplus_scale = positive_parametrizations(
        "scale", {"scale": constraints.positive}, {"df": constraints.positive, "loc": constraints.real}
    )
