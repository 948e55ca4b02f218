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
    steps: tuple = ()     # (rule, sentence, lhs, expression): what the engine held, in order (``explain``)


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
    gradients = {"p": _gradients(s, value, own)}
    tidy = s.tidy(value)
    steps = (("model", "log p(x | θ) in the parametrization's parameters, as the engine derived it", "log p(x | θ)", s.log_prob),
             ("integrand", "the entropy averages −log p(x | θ) over x drawn from p", "−log p(x | θ)", -s.log_prob),
             ("expectation", f"the expectation under p, term by term: {how or 'symbolic expectation'}", "H(p)", value),
             ("simplify", "the engine's algebra and stable names (softplus, log-sum-exp, softmax)", "H(p)", tidy),
             *_gradient_steps("H", gradients, own, {}))
    return ClosedForm("entropy", family, s.first.param, tidy, gradients, {"p": own, "q": {}}, how, {"p": own, "q": {}}, steps)


def _gradient_steps(name: str, gradients: dict, own: dict, q: dict) -> tuple:
    from sympy import IndexedBase

    from .family import j

    out = []
    for side, grads in gradients.items():
        for n, g in grads.items():
            symbol = (own if side == "p" else q)[n]
            wrt = symbol[j] if isinstance(symbol, IndexedBase) else symbol
            out.append(("differentiate", f"differentiate with respect to {n}" + (" of q" if side == "q" else "")
                        + ", then simplify", (name, wrt), g))
    return tuple(out)


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

    averaged = value
    value = substitute(value, canonical, ref)
    value = rewrite(value, rules.ALGEBRA, s.ctx)
    own = {n: s.first.symbols[n] for n in s.parameters}
    how = _routes(s, integrand, s.first)
    gradients = {"p": _gradients(s, value, own), "q": _gradients(s, value, q)}
    tidy = s.tidy(value)
    from .emit.text import formula

    in_q = ", ".join(f"{formula(ref[n])} = {formula(v)}" for n, v in canonical.items() if v != ref[n]) or "the same parameters"
    steps = (("model", "log p(x | θ_p) in the parametrization's parameters, as the engine derived it", "log p(x | θ_p)", s.log_prob),
             ("model", "log q(x) in the family's canonical parameters, renamed _ref", "log q(x)", s.log_prob_ref),
             ("integrand", "the KL averages log p − log q over x drawn from p", "log p − log q", integrand),
             ("expectation", f"the expectation under p, term by term: {how or 'symbolic expectation'}", "KL(p ‖ q)", averaged),
             ("parametrize", f"q's canonical parameters through the parametrization's own map at θ_q ({in_q})", "KL(p ‖ q)", value),
             ("simplify", "the engine's algebra and stable names (softplus, log-sum-exp, softmax)", "KL(p ‖ q)", tidy),
             *_gradient_steps("KL", gradients, own, q))
    return ClosedForm("kl", family, s.first.param, tidy, gradients, {"p": own, "q": q}, how, {"p": own, "q": q}, steps)


def _routes(s: Setting, integrand, first) -> str:
    try:
        return expectation(integrand, first, s.ctx)[1]
    except NoClosedForm:
        return ""


# ---- numbers: the closed forms' generated kernels on batches ---------------------------------

@functools.lru_cache(maxsize=None)
def kernels(quantity: str, family: str, param: str, backend: str = "numpy"):
    """The generated module (``value``, ``gradient``) of the closed form, for ``backend`` "numpy"
    or "array-api" (:mod:`symelig.emit.closed_form`); SymeligError where there is none."""
    import hashlib
    import linecache
    import types

    from .emit.closed_form import module_source

    form = closed_form(quantity, family, param)
    source = module_source(form, setting(family, param).first, backend)
    # our own printer's output over validated identifiers, never user text
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    filename = f"<symelig {family} {form.param} {quantity} {backend} {digest}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    module = types.ModuleType(f"symelig_generated_{family}_{form.param}_{quantity}_{backend.replace('-', '_')}")
    exec(compile(source, filename, "exec"), module.__dict__)
    return module


def _inputs(d, sides: dict) -> dict:
    """The kernel's keyword arguments: the entry's arguments (p's), p's parameters, q's as ``<name>_q``."""
    from .emit.closed_form import Q_SUFFIX

    out = {a: sides["p"][a] for a in d.arguments}
    for side, params in sides.items():
        out.update({(n if side == "p" else n + Q_SUFFIX): params[n] for n in d.parameters})
    return out


def evaluate(d, form: ClosedForm, sides: dict, gradient: bool, validate: bool):
    """The value of ``form`` (or {"p": {name: ∂}, "q": …} with ``gradient``) at the parameter
    dicts ``sides`` ({"p": {...}} or {"p": {...}, "q": {...}}) of derivation ``d``.

    numpy input runs the numpy kernels after the checks of ``eligibility``, and a result that
    is not finite is a one-line error; tensors of another library (torch, JAX, CuPy) run the
    array-API kernels on their device and dtype, with only their names checked (checking values
    would copy them to the host), as ``fisher`` does."""
    import numpy as np

    from .derivation import _foreign, as_array

    for side, params in sides.items():
        if not isinstance(params, dict):
            raise SymeligError(f"{side} must be a dict of {', '.join([*d.arguments, *d.parameters])}; got {type(params).__name__}")
    function = "gradient" if gradient else "value"
    if any(_foreign(None, params) for params in sides.values()):
        for params in sides.values():
            d.check_names(params)
        _same_arguments(d, sides, foreign=True)
        return getattr(kernels(form.quantity, form.family, form.param, "array-api"), function)(**_inputs(d, sides))
    checked = {side: d._checked(None, params) if validate else {n: as_array(n, v) for n, v in params.items()}
               for side, params in sides.items()}
    _same_arguments(d, checked, foreign=False)
    sizes = {np.shape(checked[s][n])[-1:] for s in checked for n in d._vectors}
    if len(sizes) > 1:
        raise SymeligError("p and q must have the same number of categories (last axis)")
    with np.errstate(all="ignore"):
        result = getattr(kernels(form.quantity, form.family, form.param, "numpy"), function)(**_inputs(d, checked))
    if validate:
        _require_finite(d, form, result, checked)
    return result


def _same_arguments(d, sides: dict, foreign: bool) -> None:
    """The KL is between members with one total_count: p's and q's arguments must agree."""
    import numpy as np

    if "q" not in sides:
        return
    for a in d.arguments:
        p, q = sides["p"][a], sides["q"][a]
        if foreign:
            try:
                from array_api_compat import array_namespace

                xp = array_namespace(p, q)
                same = bool(xp.all(p == q))
            except Exception:  # noqa: BLE001 -- a traced value (jax.jit) or mixed libraries: not checked here
                continue
        else:
            same = np.array_equal(np.broadcast_to(p, np.broadcast_shapes(np.shape(p), np.shape(q))), q)
        if not same:
            raise SymeligError(f"p and q must have the same {a}: the KL is between members with one {a}")


def _require_finite(d, form: ClosedForm, result, checked: dict) -> None:
    """A one-line error where a value or gradient is inf or nan: beyond the dtype's range, or
    infinite (a KL where q gives probability 0 to what p does not)."""
    import numpy as np

    parts = [result] if not isinstance(result, dict) else [v for side in result.values() for v in side.values()]
    what = ("the entropy" if form.quantity == "entropy" else "KL(p ‖ q)") + (" gradient" if isinstance(result, dict) else "")
    for value in parts:
        value = np.asarray(value)
        if np.all(np.isfinite(value)):
            continue
        where = np.argwhere(~np.isfinite(value))[0]
        batch = len(np.broadcast_shapes(*(np.shape(a)[:-1] if n in d._vectors else np.shape(a)
                                          for side in checked.values() for n, a in side.items())))
        at = f" at batch index {[int(w) for w in where[:batch]]}" if batch else ""
        zero = [f"{side}.{n}" for side in checked for n in d.parameters
                if d.symbolic.constraints[n].lower == 0 and np.any(np.asarray(checked[side][n]) == 0)]
        why = (f"{zero[0]} has an entry 0 (a probability 0), where it is infinite" if zero
               else "the parameters are too extreme for this precision" + ("" if value.dtype == np.float64 else "; float64 has more range"))
        raise SymeligError(f"{what}{at} is not finite in {value.dtype} ({value[tuple(where)].item()}): {why}")


def closed_form(quantity: str, family: str, param: str | None) -> ClosedForm:
    """entropy_form or kl_form, with a one-line SymeligError where no closed form is derived."""
    derive = {"entropy": entropy_form, "kl": kl_form}[quantity]
    try:
        return derive(family, param)
    except NoClosedForm as reason:
        name = "entropy" if quantity == "entropy" else "KL divergence"
        _, parametrization = lookup(family, param)
        raise SymeligError(f"{family} --param {parametrization.name} has no closed-form {name} from the "
                           f"engine's expectation routes ({str(reason)[:160]}){_offer(family, parametrization, quantity)}") from None


def _offer(family: str, parametrization, quantity: str) -> str:
    """The Monte Carlo estimate, where the family declares a sampler."""
    from .family import lookup
    from .monte_carlo import has_sampler

    cls = lookup(family, None)[0]
    if not has_sampler(cls):
        return ""
    call = "d.entropy(method='monte_carlo', **params)" if quantity == "entropy" else "d.kl(p, q, method='monte_carlo')"
    names = [*cls.arguments, *parametrization.parameters] + ([f"{n}_q" for n in parametrization.parameters] if quantity == "kl" else [])
    values = " ".join(f"--{n.replace('_', '-')} V" for n in names)
    return (f"; a Monte Carlo estimate with its standard error: {call}, or `symelig eval {family} --param "
            f"{parametrization.name} --quantity {quantity} --samples N {values}`")
