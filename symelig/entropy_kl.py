"""Entropy and KL(p ‖ q) of catalog entries in closed form, with gradients, and their numbers.

    H(p)      = E_{x∼p}[−log p(x | θ)]
    KL(p ‖ q) = E_{x∼p}[log p(x | θ_p) − log p(x | θ_q)]

for two members of one family in one parametrization, derived through the expectation routes
of :class:`symelig.divergence.Setting` (those of the Fisher information) and differentiated by
SymPy; ``closed_form`` names what could not be averaged where no closed form is derived.
``evaluate`` runs the forms on batches (:mod:`symelig.emit.closed_form`).
"""
from __future__ import annotations

import dataclasses
import functools

from sympy import IndexedBase, Symbol, diff

from . import rules
from .divergence import Setting, opened, setting
from .engine import SymbolicDerivation, rewrite
from .errors import SymeligError
from .expectation import NoClosedForm, expectation
from .family import lookup


@dataclasses.dataclass(frozen=True)
class ClosedForm:
    """A divergence or entropy in closed form, with its gradients.

    ``value`` is written in p's parameters (the parametrization's own symbols) and, for the KL,
    q's (the same names with ``_q``); ``gradients`` is {"p": {parameter: ∂value/∂θ_p}, "q": …}
    (component j of a vector parameter)."""

    quantity: str         # "entropy" or "kl"
    family: str
    param: str
    value: object
    gradients: dict
    symbols: dict         # {"p": {name: symbol}, "q": {name: symbol}}
    how: str              # the expectation routes used, in words
    wrt: dict             # {"p": {name: symbol differentiated}, "q": …}


def _renamed(first: SymbolicDerivation, suffix: str) -> dict:
    """The parametrization's parameter symbols with ``suffix`` (z → z_q, σ → σ_q)."""
    out = {}
    for name in first.parameters:
        made = first.symbols[name]
        letter = str(made.label if isinstance(made, IndexedBase) else made)
        kind = IndexedBase if isinstance(made, IndexedBase) else Symbol
        out[name] = kind(f"{letter}_{suffix}", **first.parametrization.parameters[name].assumptions)
    return out


def _component(symbol):
    from .family import j

    return symbol[j] if isinstance(symbol, IndexedBase) else symbol


def _gradients(s: Setting, value, wrt: dict) -> dict:
    value = opened(value)
    return {name: s.tidy(rewrite(diff(value, _component(symbol)), rules.ALGEBRA, s.ctx)) for name, symbol in wrt.items()}


@functools.lru_cache(maxsize=None)
def entropy_form(family: str, param: str | None) -> ClosedForm:
    """H(p) = E_{x∼p}[−log p(x | θ)] and ∂H/∂θ; raises NoClosedForm."""
    s = setting(family, param)
    value = s.expect(-s.log_prob, "policy")
    own = {n: s.first.symbols[n] for n in s.parameters}
    how = _routes(s, -s.log_prob, s.first)
    return ClosedForm("entropy", family, s.first.param, s.tidy(value), {"p": _gradients(s, value, own)},
                      {"p": own, "q": {}}, how, {"p": own, "q": {}})


@functools.lru_cache(maxsize=None)
def kl_form(family: str, param: str | None) -> ClosedForm:
    """KL(p ‖ q) = E_{x∼p}[log p(x | θ_p) − log p(x | θ_q)] for two members of the family in
    one parametrization, and its gradients w.r.t. θ_p and θ_q; raises NoClosedForm.

    Derived as KL(π_θ ‖ π_ref) with π_ref's canonical parameters then written in θ_q by the
    parametrization's own map (σ_ref = exp(s_q), π_ref,i = softmax(z_q)_i)."""
    s = setting(family, param)
    integrand = s.log_prob - s.log_prob_ref
    value = s.expect(integrand, "policy")
    q = _renamed(s.first, "q")
    ref = s.reference.symbols
    mapped = s.first.parametrization.substitution({**s.first.symbols, **q})
    canonical = {n: mapped.get(n, q.get(n)) for n in s.first.family.parameters}
    from .engine import substitute

    value = substitute(value, canonical, ref)
    value = rewrite(value, rules.ALGEBRA, s.ctx)
    own = {n: s.first.symbols[n] for n in s.parameters}
    how = _routes(s, integrand, s.first)
    return ClosedForm("kl", family, s.first.param, s.tidy(value),
                      {"p": _gradients(s, value, own), "q": _gradients(s, value, q)},
                      {"p": own, "q": q}, how, {"p": own, "q": q})


def _routes(s: Setting, integrand, first) -> str:
    try:
        return expectation(integrand, first, s.ctx)[1]
    except NoClosedForm:
        return ""


# ---- numbers: the closed forms evaluated on batches ----------------------------------------

def _batched(d, arrays: dict, vectors: set):
    """(batch shape, category count or None, float dtype) of checked argument arrays."""
    import numpy as np

    shapes = [a.shape[:-1] if n in vectors else a.shape for n, a in arrays.items()]
    size = next((a.shape[-1] for n, a in arrays.items() if n in vectors), None)
    floats = [a.dtype for a in arrays.values() if a.dtype.kind == "f"]
    dtype = np.result_type(*floats) if floats else np.dtype(np.float64)
    return np.broadcast_shapes(*shapes), size, dtype


def _shaped(value, batch, size, vector: bool, dtype):
    import numpy as np

    value = np.asarray(value)
    if vector:
        return np.broadcast_to(value, batch + (size,)).astype(dtype)
    if size is not None and value.ndim and value.shape[-1:] == (1,):
        value = value[..., 0]  # a sum over the category axis, kept for broadcasting
    return np.broadcast_to(value, batch).astype(dtype)


@functools.lru_cache(maxsize=None)
def _functions(quantity: str, family: str, param: str, arguments: tuple):
    from .emit.closed_form import function

    form = {"entropy": entropy_form, "kl": kl_form}[quantity](family, param)
    made = {"value": function(form.value, list(arguments))}
    for side, grads in form.gradients.items():
        for name, g in grads.items():
            made[(side, name)] = function(g, list(arguments))
    return made


def evaluate(d, form: ClosedForm, sides: dict, gradient: bool, validate: bool):
    """The value of ``form`` (or {"p": {name: ∂}, "q": …} with ``gradient``) at the parameter
    dicts ``sides`` ({"p": {...}} or {"p": {...}, "q": {...}}) of derivation ``d``."""
    import numpy as np

    from .derivation import as_array

    first = setting(form.family, form.param).first
    arguments = tuple(first.family.arguments)
    checked = {}
    for side, params in sides.items():
        if not isinstance(params, dict):
            raise SymeligError(f"{side} must be a dict of {', '.join([*arguments, *d.parameters])}; got {type(params).__name__}")
        checked[side] = d._checked(None, params) if validate else {n: as_array(n, v) for n, v in params.items()}
    for a in arguments:  # KL between members with the same total_count only
        if "q" in checked and not np.array_equal(checked["p"][a], checked["q"][a]):
            raise SymeligError(f"p and q must have the same {a}: the KL is between members with one {a}")
    symbols, arrays = [], []
    for a in arguments:
        symbols.append(first.symbols[a])
        arrays.append(checked["p"][a])
    for side in sides:
        for n in d.parameters:
            symbols.append(form.symbols[side][n])
            arrays.append(checked[side][n])
    vectors = {n for n, c in first.parametrization.parameters.items() if c.event_dim}
    everything = {f"{side}.{n}": a for side in checked for n, a in checked[side].items()}
    batch, size, dtype = _batched(d, everything, {f"{side}.{n}" for side in checked for n in vectors})
    if size is not None and len({a.shape[-1] for k, a in everything.items() if k.split(".")[1] in vectors}) > 1:
        raise SymeligError("p and q must have the same number of categories (last axis)")
    functions = _functions(form.quantity, form.family, form.param, tuple(symbols))
    computed = [a if at < len(arguments) else a.astype(dtype, copy=False) for at, a in enumerate(arrays)]
    if size is not None:  # one number per batch element lines up with the kept category axis
        computed = [a if isinstance(symbol, IndexedBase) else np.asarray(a)[..., None] for symbol, a in zip(symbols, computed)]
    with np.errstate(all="ignore"):
        if not gradient:
            return _shaped(functions["value"](*computed), batch, size, False, dtype)
        return {side: {n: _shaped(functions[(side, n)](*computed), batch, size, n in vectors, dtype) for n in d.parameters}
                for side in form.gradients}


def closed_form(quantity: str, family: str, param: str | None) -> ClosedForm:
    """entropy_form or kl_form, with a one-line SymeligError where no closed form is derived."""
    derive = {"entropy": entropy_form, "kl": kl_form}[quantity]
    try:
        return derive(family, param)
    except NoClosedForm as reason:
        name = "entropy" if quantity == "entropy" else "KL divergence"
        _, parametrization = lookup(family, param)
        raise SymeligError(f"{family} --param {parametrization.name} has no closed-form {name} from the "
                           f"engine's expectation routes ({str(reason)[:160]})") from None
