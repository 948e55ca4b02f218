from sympy import log, loggamma, pi

from .. import constraints
from ..family import Family, positive_parametrizations, register


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
    def log_prob(x, df, loc, scale):
        nu = df
        return (
            loggamma((nu + 1) / 2) - loggamma(nu / 2) - log(nu * pi) / 2 - log(scale)
            - (nu + 1) / 2 * log(1 + ((x - loc) / scale) ** 2 / nu)
        )

    scale, log_scale, softplus_scale = positive_parametrizations(
        "scale", {"scale": constraints.positive}, {"df": constraints.positive, "loc": constraints.real}
    )
