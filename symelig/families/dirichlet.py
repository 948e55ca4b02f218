from sympy import Lambda, Sum, digamma, log, loggamma

from .. import constraints
from ..family import Family, K, i, k, parametrization, positive_parametrizations, register


@register
class Dirichlet(Family):
    """Dirichlet distribution over the simplex with concentrations α_0, …, α_{K−1}.

    log p(x | α) = Σ_i (α_i − 1) log x_i + log Γ(Σ_i α_i) − Σ_i log Γ(α_i).
    Exponential family with T(x) = log x, η = α − 1.
    """

    name = "dirichlet"
    torch = "Dirichlet"
    value = constraints.open_simplex
    parameters = {"concentration": constraints.positive_vector}
    symbols = {"concentration": "alpha", "log_concentration": "a", "raw_concentration": "r", "eta": "eta"}

    @staticmethod
    def sample(rng, shape, concentration, **arguments):
        """Draws of shape ``shape`` + (K,) from numpy's Generator ``rng``: independent
        rng.standard_gamma(α_k) divided by their sum (rng.dirichlet takes one α, not a batch)."""
        import numpy as np

        g = rng.standard_gamma(concentration, tuple(shape) + np.shape(concentration)[-1:])
        return g / np.sum(g, axis=-1, keepdims=True)

    @staticmethod
    def log_prob(x, concentration):
        a = concentration
        return Sum((a[i] - 1) * log(x[i]), (i, 0, K - 1)) + loggamma(Sum(a[i], (i, 0, K - 1))) - Sum(loggamma(a[i]), (i, 0, K - 1))

    @classmethod
    def moments(cls, x, concentration, **symbols):
        """E[log x_i] = ψ(α_i) − ψ(Σ_k α_k)."""
        return {log(x[i]): digamma(concentration[i]) - digamma(Sum(concentration[k], (k, 0, K - 1)))}

    concentration, log_concentration, softplus_concentration = positive_parametrizations(
        "concentration", {"concentration": constraints.positive_vector}
    )

    @parametrization(eta=constraints.above_minus_one_vector, natural=True)
    def natural(eta):
        """Natural parameters η_i = α_i − 1 (each > −1)."""
        return {"concentration": Lambda(i, eta[i] + 1)}
