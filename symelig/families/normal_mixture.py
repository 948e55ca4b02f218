from sympy import Sum, exp, log, pi

from .. import constraints
from ..family import Family, K, i, k, positive_parametrizations, register


@register
class NormalMixture(Family):
    """Mixture of K normals: log p(x | z, μ, σ) = log Σ_i softmax(z)_i N(x | μ_i, σ_i²).

    The Gaussian-mixture policy, ``MixtureSameFamily(Categorical(logits=z), Normal(μ, σ))``:
    one real x, K components with mixing logits z, locations μ and scales σ.  The eligibilities
    go through the responsibilities r_j = softmax(z − log σ − (x − μ)²/(2σ²))_j, the posterior
    weight of component j given x: ∂/∂z_j = r_j − softmax(z)_j, ∂/∂μ_j = r_j (x − μ_j)/σ_j².
    The kernels evaluate them max-shifted (log-sum-exp), so x far from every component gives
    finite values.  The Fisher information has no closed form (E over x of the responsibilities).
    """

    name = "normal_mixture"
    torch = "MixtureSameFamily(Categorical, Normal)"
    value = constraints.real
    parameters = {"logits": constraints.real_vector, "loc": constraints.real_vector, "scale": constraints.positive_vector}
    symbols = {"logits": "z", "loc": "mu", "scale": "sigma", "log_scale": "s", "raw_scale": "r"}

    @staticmethod
    def sample(rng, shape, logits, loc, scale, **arguments):
        """Draws of shape ``shape`` (samples, *batch) from numpy's Generator ``rng``: a component by
        Gumbel-max over the logits, then a normal draw from it."""
        import numpy as np

        logits, loc, scale = np.broadcast_arrays(logits, loc, scale)
        gumbel = rng.gumbel(size=tuple(shape) + logits.shape[-1:])
        component = np.argmax(logits + gumbel, axis=-1)[..., None]
        pick = lambda v: np.take_along_axis(np.broadcast_to(v, gumbel.shape), component, -1)[..., 0]  # noqa: E731
        return pick(loc) + pick(scale) * rng.normal(size=tuple(shape))

    @staticmethod
    def log_prob(x, logits, loc, scale):
        # each component's weight e^(z_i) N(x | μ_i, σ_i²) written as one exponential: the engine
        # names log Σ_i e^(f_i) a log-sum-exp and e^(f_j)/Σ_i e^(f_i) a softmax
        component = logits[i] - log(scale[i]) - log(2 * pi) / 2 - (x - loc[i]) ** 2 / (2 * scale[i] ** 2)
        return log(Sum(exp(component), (i, 0, K - 1))) - log(Sum(exp(logits[k]), (k, 0, K - 1)))

    scale, log_scale, softplus_scale = positive_parametrizations(
        "scale", {"scale": constraints.positive_vector}, {"logits": constraints.real_vector, "loc": constraints.real_vector}
    )
