"""A family as a lab would register it in its own code (not shipped with symelig): the whole
parametrized test suite runs over it too, through ``symelig.catalog()``."""
from sympy import log

import symelig
from symelig import constraints
from symelig.family import Family, positive_parametrizations
from symelig.functions import softplus


@symelig.register
class Logistic(Family):
    """Logistic distribution with location μ and scale s: z = (x − μ)/s,
    log p(x | μ, s) = −z − log s − 2 log(1 + e^(−z))."""

    name = "lab_logistic"
    value = constraints.real
    parameters = {"loc": constraints.real, "scale": constraints.positive}
    symbols = {"loc": "mu", "scale": "s", "log_scale": "u", "raw_scale": "r"}

    @staticmethod
    def log_prob(x, loc, scale):
        z = (x - loc) / scale
        return -z - log(scale) - 2 * softplus(-z)

    scale, log_scale, softplus_scale = positive_parametrizations(
        "scale", {"scale": constraints.positive}, {"loc": constraints.real}
    )
