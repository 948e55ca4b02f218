from sympy import log, pi

from .. import constraints
from ..family import Family, positive_parametrizations, register
from ..functions import log_ndtr_difference, normal_pdf_over_mass


@register
class TruncatedNormal(Family):
    """Normal distribution N(μ, σ²) truncated to [low, high]: log p(x | μ, σ) = −log σ − ½ log 2π − (x − μ)²/(2σ²) − log(Φ(β) − Φ(α)), α = (low − μ)/σ, β = (high − μ)/σ.

    The bounded-action policy (torch.distributions has no class; scipy.stats.truncnorm has a =
    α, b = β).  The bounds ``low`` < ``high`` are arguments, not differentiated.  The
    log-normalizer is kept whole (log_ndtr_difference) and evaluated through log Φ, so that
    bounds far in a tail (10σ, 40σ from μ) give finite values; its derivatives are the ratios
    φ(α)/(Φ(β) − Φ(α)) (normal_pdf_over_mass), evaluated as exponentials of log differences.
    """

    name = "truncated_normal"
    torch = None
    value = constraints.between_bounds
    arguments = {"low": constraints.lower_bound, "high": constraints.above_low}
    parameters = {"loc": constraints.real, "scale": constraints.positive}
    symbols = {"loc": "mu", "scale": "sigma", "log_scale": "s", "raw_scale": "r", "low": "a", "high": "b"}

    @staticmethod
    def sample(rng, shape, loc, scale, low, high, **arguments):
        """Draws of shape ``shape`` (samples, *batch) from numpy's Generator ``rng`` by inverting
        the CDF in logs: z = Φ⁻¹(Φ(α) + u(Φ(β) − Φ(α))), u ~ U[0, 1), with
        log(Φ(α) + u(Φ(β) − Φ(α))) = log Φ(β) + log(u + (1 − u)e^{log Φ(α) − log Φ(β)})
        and Φ⁻¹ of a log (ndtri_exp), so bounds 40σ into a tail, where Φ underflows, still draw.
        An interval whose mass lies mostly above 0 is drawn mirrored (−x from [−β, −α]): there
        Φ is near 1 and its complement, which sets the draw, would lose its digits."""
        import numpy as np
        from scipy.special import log_ndtr, ndtri_exp

        alpha, beta = (low - loc) / scale, (high - loc) / scale
        mirror = alpha + beta > 0
        a, b = np.where(mirror, -beta, alpha), np.where(mirror, -alpha, beta)
        log_a, log_b = log_ndtr(a), log_ndtr(b)
        u = rng.random(shape)
        z = ndtri_exp(log_b + np.log(u + (1 - u) * np.exp(log_a - log_b)))
        # the last ulp of Φ⁻¹ may step past a bound, where log p is refused
        return np.clip(loc + scale * np.where(mirror, -z, z), low, high)

    @staticmethod
    def log_prob(x, low, high, loc, scale):
        alpha, beta, width = (low - loc) / scale, (high - loc) / scale, (high - low) / scale
        return -log(scale) - log(2 * pi) / 2 - (x - loc) ** 2 / (2 * scale**2) - log_ndtr_difference(alpha, beta, width)

    @classmethod
    def abbreviations(cls, low, high, loc, scale, **_):
        """The standardized bounds, named so that φ(α)/(Φ(β) − Φ(α)) fits a printed line."""
        return {"alpha": (low - loc) / scale, "beta": (high - loc) / scale}

    @classmethod
    def moments(cls, x, low, high, loc, scale, **symbols):
        """E[x] = μ + σ(R(α, β) + R(β, α)) and E[(x − μ)²] = σ²(1 + α·R(α, β) + β·R(β, α)), with
        R(a, b) = φ(a)/(Φ(b) − Φ(a)) (so R(β, α) = −φ(β)/(Φ(β) − Φ(α)))."""
        alpha, beta, width = (low - loc) / scale, (high - loc) / scale, (high - low) / scale
        forward, backward = normal_pdf_over_mass(alpha, beta, width), normal_pdf_over_mass(beta, alpha, -width)
        return {x: loc + scale * (forward + backward), (x - loc) ** 2: scale**2 * (1 + alpha * forward + beta * backward)}

    scale, log_scale = positive_parametrizations("scale", {"scale": constraints.positive}, {"loc": constraints.real})[:2]
