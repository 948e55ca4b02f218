from sympy import Lambda, exp, log

from .. import constraints
from ..family import Family, parametrization, register, moments_from_mgf, mgf_variable as u
from ..functions import logfactorial, softplus


@register
class Poisson(Family):
    """Poisson distribution with rate λ: log p(x | λ) = x log λ − λ − log x!.

    Exponential family with T(x) = x, η = log λ, A(η) = e^η: ``log_rate`` is the natural one.
    """

    name = "poisson"
    torch = "Poisson"
    value = constraints.nonnegative_integer
    parameters = {"rate": constraints.positive}
    symbols = {"rate": "lambda", "log_rate": "eta", "raw_rate": "r"}

    @staticmethod
    def sample(rng, shape, rate, **arguments):
        """Draws of shape ``shape`` (samples, *batch) from numpy's Generator ``rng``: rng.poisson."""
        return rng.poisson(rate, shape)

    @staticmethod
    def log_prob(x, rate):
        return x * log(rate) - rate - logfactorial(x)

    @classmethod
    def moments(cls, x, rate, **symbols):
        """E[x^k] for k ≤ 4 from the MGF exp(λ(eᵘ − 1)): E[x] = λ, E[x²] = λ(λ + 1), …"""
        return moments_from_mgf(x, Lambda(u, exp(rate * (exp(u) - 1))), 4)

    @parametrization(rate=constraints.positive)
    def rate():
        """The rate λ > 0: e = x / λ − 1."""
        return {}

    @parametrization(log_rate=constraints.real, natural=True)
    def log_rate(log_rate):
        """λ = exp(η), the natural parametrization: e = x − e^η."""
        return {"rate": exp(log_rate)}

    @parametrization(raw_rate=constraints.real)
    def softplus_rate(raw_rate):
        """λ = softplus(r) for a raw network output r."""
        return {"rate": softplus(raw_rate)}
