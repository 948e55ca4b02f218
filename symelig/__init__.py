"""symelig: closed-form eligibilities (score functions) e = ∂ log p(x | θ) / ∂θ, derived by SymPy.

    >>> import symelig
    >>> d = symelig.derive("categorical", param="probs")
    >>> d.eligibility(0, probs=[0.69, 0.1, 0.2, 0.01])["probs"]     # δ_jx / p_x − 1 / Σ_i p_i
    array([ 0.44927536, -1.        , -1.        , -1.        ])

Sign convention: the eligibility is the gradient of the log-likelihood (Williams 1992), never
the gradient of a loss.
"""
from .version import __version__  # noqa: E402

from .errors import SymeligError  # noqa: E402  (light: no SymPy)


def catalog():
    """Every (family, parametrization) entry: ``.family``, ``.param``, ``.parameters``."""
    from .family import catalog as _catalog

    return _catalog()


def derive(family: str, param: str | None = None, backend: str = "numpy"):
    """The :class:`~symelig.derivation.Derivation` of ``family`` in parametrization ``param``;
    ``backend="numba"`` runs its kernels compiled by numba (``pip install 'symelig[numba]'``)."""
    from .derivation import derive as _derive
    from .matrix import derive as _derive_matrix, is_matrix_family

    if is_matrix_family(family):  # a matrix parameter: derived in matrix form (symelig.matrix)
        if backend != "numpy":
            raise SymeligError(f"{family} has numpy and array API kernels only (d.kernels, d.array_api_kernels); no {backend} backend")
        return _derive_matrix(family, param)
    return _derive(family, param, backend)


def explain(family, param: str | None = None, **values):
    """The derivation step by step, each step one rule the engine applied; ``family`` is a family
    name or a derivation (``derive``, ``reparametrize``, ``custom``).  With values for one sample,
    e.g. ``explain("categorical", "probs", probs=[0.69, 0.1, 0.2, 0.01], x=0)``, every step is
    evaluated and ``.numbers`` holds log p, p, e and p·e.  Renderings: ``.text()``,
    ``.markdown()``, ``.latex()`` (math only), ``.latex_fragment()``; notebooks display it."""
    from .explanation import explain_subject

    return explain_subject(family, param, values)


def reparametrize(family: str, via: str, wrt, positive=(), vector=None):
    """A catalog family with one parameter replaced by an expression, e.g.
    ``reparametrize("categorical", "logits = z / tau", wrt=["z", "tau"], positive=["tau"])``;
    parsed by a whitelist (never evaluated), derived and verified like a catalog entry.
    ``wrt``, ``positive`` and ``vector`` take a name, comma-separated names, or a list."""
    from .user import reparametrize as _reparametrize

    return _reparametrize(family, via, wrt, positive, vector)  # "mu" is one name: user.names_of reads it


def custom(log_prob: str, wrt, x: str = "x", positive=()):
    """A scalar log-density typed as text, e.g. ``custom("-(x-m)**2/(2*s**2) - log(s)",
    wrt=["m", "s"], positive=["s"])``: parsed by a whitelist, derived and verified."""
    from .user import custom as _custom

    return _custom(log_prob, wrt, x, positive)


def audit_kl(family: str, param: str | None = None):
    """What E[∇] of each KL estimator (k1, k2, k3, importance-weighted k3; in the loss and in
    the reward) is: an :class:`~symelig.audit.Audit` whose ``verdicts`` say which KL it is the
    gradient of, or the bias as a formula; ``symelig.audit.records(result)`` gives dicts."""
    from .audit import audit_kl as _audit_kl

    return _audit_kl(family, param)


def token_policy_gradient(hidden, weight, tokens, advantages, temperature=1.0, **options):
    """Σ_t A_t log π(x_t | h_t) for logits W h_t/τ, its gradients w.r.t. hidden, weight and τ,
    and the per-token entropy, in chunks of tokens (no tokens × vocabulary array); numpy or
    torch (array API) inputs.  See :mod:`symelig.token_policy`."""
    from .token_policy import token_policy_gradient as _token_policy_gradient

    return _token_policy_gradient(hidden, weight, tokens, advantages, temperature, **options)


def register(cls):
    """Class decorator for a lab's own :class:`symelig.family.Family`: it joins ``catalog()``."""
    from .family import register as _register

    return _register(cls)


__all__ = ["catalog", "derive", "explain", "audit_kl", "reparametrize", "custom", "token_policy_gradient", "register", "SymeligError", "__version__"]


def compat_log_prob(library: str, family: str, param: str | None, x, **params):
    """log p of a tanh-squashed policy as Stable-Baselines3, CleanRL or Spinning Up computes it
    (``library`` = "sb3", "cleanrl", "spinningup"), with ``.exact`` and ``.difference``; see
    :mod:`symelig.squash`."""
    from .squash import compat_log_prob as _compat_log_prob

    return _compat_log_prob(library, family, param, x, **params)


__all__.append("compat_log_prob")
