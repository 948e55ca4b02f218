"""symelig: closed-form eligibilities (score functions) e = ∂ log p(x | θ) / ∂θ, derived by SymPy.

    >>> import symelig
    >>> d = symelig.derive("categorical", param="probs")
    >>> d.eligibility(0, probs=[0.69, 0.1, 0.2, 0.01])["probs"]     # δ_jx / p_x − 1 / Σ_i p_i
    array([ 0.44927536, -1.        , -1.        , -1.        ])

Sign convention: the eligibility is the gradient of the log-likelihood (Williams 1992), never
the gradient of a loss.
"""
__version__ = "0.1.0"

from .errors import SymeligError  # noqa: E402  (light: no SymPy)


def catalog():
    """Every (family, parametrization) entry: ``.family``, ``.param``, ``.parameters``."""
    from .family import catalog as _catalog

    return _catalog()


def derive(family: str, param: str | None = None):
    """The :class:`~symelig.derivation.Derivation` of ``family`` in parametrization ``param``."""
    from .derivation import derive as _derive

    return _derive(family, param)


__all__ = ["catalog", "derive", "SymeligError", "__version__"]
