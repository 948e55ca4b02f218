"""Entropy and KL divergence of catalog entries, derived by the engine's expectation routes.

    H(π_θ)            = E_{x∼π_θ}[−log π_θ(x)]
    KL(π_θ ‖ π_ref)   = E_{x∼π_θ}[log π_θ(x) − log π_ref(x)]      (reverse: the RLHF penalty)
    KL(π_ref ‖ π_θ)   = E_{x∼π_ref}[log π_ref(x) − log π_θ(x)]    (forward: TRPO's constraint)

π_ref is a second member of the same family written in the family's canonical parameters
(π_ref, μ_ref, σ_ref…), a constant for every gradient.  The expectations are the symbolic ones
of :mod:`symelig.expectation` (exact sums over categories, declared moments, Mellin transforms),
the same routes as the Fisher information; an expectation under π_ref is taken by the same code
with the reference's parameters in the place of θ.  Where no route applies,
:class:`~symelig.expectation.NoClosedForm` names the part that could not be averaged.

Change of measure.  The estimators that use a likelihood ratio r(x) = π_ref(x)/π_θ(x) are
averaged without integrating r itself: E_{π_θ}[r f] = E_{π_ref}[f] (π_ref ≪ π_θ).  The ratio
is therefore kept as the abstract symbol :data:`RATIO` while differentiating and averaging,
with ∂r/∂θ = −r ∂log π_θ/∂θ; likewise ρ(x) = π_θ(x)/π_old(x) (:data:`WEIGHT`) for off-policy
samples x ∼ π_old, with E_{π_old}[ρ f] = E_{π_θ}[f] and ∂ρ/∂θ = ρ ∂log π_θ/∂θ.
"""
from __future__ import annotations

import dataclasses
import functools

from sympy import Add, Dummy, I, IndexedBase, Mul, S, Sum, Symbol, Wild, count_ops, diff, exp, expand, expand_func, expand_mul, fraction, together, factor_terms, log, pi, powsimp

from . import constraints, rules
from .engine import SymbolicDerivation, context, derive_symbolic, rewrite
from .errors import SymeligError
from .expectation import NoClosedForm, expectation
from .family import Internal, K, i, lookup
from .second_order import _as_sigmoid_over_softplus, _over_softplus
from .functions import bessel_i1_i0, log_bessel_i0, log_softplus, sigmoid, sigmoid_over_softplus, softplus

RATIO = Internal("r", positive=True)       # π_ref(x)/π_θ(x), kept abstract
WEIGHT = Internal("rho", positive=True)    # π_θ(x)/π_old(x), kept abstract


@dataclasses.dataclass(frozen=True)
class Setting:
    """Everything the divergences of one entry are built from.

    ``first`` is the entry's derivation (θ); ``reference`` and ``behaviour`` are pseudo-derivations
    of the same family in its canonical parametrization with renamed parameters (π_ref and
    π_old), usable wherever :func:`~symelig.expectation.expectation` takes a derivation."""

    first: SymbolicDerivation
    reference: SymbolicDerivation
    behaviour: SymbolicDerivation
    ctx: rules.Context
    log_prob: object        # log π_θ(x), θ the parametrization's parameters
    log_prob_ref: object    # log π_ref(x)
    score: dict             # parameter -> ∂ log π_θ(x)/∂θ (component j of a vector)

    @property
    def parameters(self) -> tuple:
        return self.first.parameters

    def wrt(self, name):
        return self.first.wrt(name)

    def tidy(self, expr):
        """The bounded rewrites of the engine (collapse, together, cancel), then the stable names."""
        # multiplied out first: ∂/∂z_j of Σ_i e^{z_i} z_i / Σ_i e^{z_i} collapses to
        # (e^{z_j} z_j + e^{z_j})/Σ, which only term by term is named softmax_j (z_j + 1)
        expr = expand_mul(_opened(rewrite(expr, rules.ALGEBRA, self.ctx)))
        expr = rewrite(expr, _bounded(expr), self.ctx)
        # σ(u)/softplus(u) closed again into the one function that does not underflow
        expr = rewrite(expr, rules.NAMING, self.ctx).replace(_over_softplus, _as_sigmoid_over_softplus)
        # SymPy's expand opens softplus inside some functions' arguments: closed again
        u = Wild("u")
        expr = expr.replace(log(exp(u) + 1), softplus(u))
        # a common factor (softmax_j) taken out of sums, which TIDY leaves alone
        # and e^a e^b as one e^(a+b): e^{−μ/β} e^{μ_q/β} overflows where e^{(μ_q−μ)/β} does not
        return min((expr, factor_terms(expr), powsimp(expr, combine="exp")), key=count_ops)

    def is_zero(self, expr) -> bool:
        """Whether ``expr`` is 0 by the engine's rules; False means "not shown to be 0"."""
        expr = rewrite(expr, rules.ALGEBRA, self.ctx)
        if expr == 0:
            return True
        expanded = expand_mul(_opened(expr))
        expanded = rewrite(expanded, _bounded(expanded), self.ctx)
        if expanded == 0 or expand_mul(expanded) == 0:
            return True
        if expanded.has(Sum):
            return False
        # powers multiplied out ((log(−η₂) + iπ)²), ψ⁽ⁿ⁾(a + 1) shifted to ψ⁽ⁿ⁾(a), one denominator
        full = expand(expand_func(expanded), log=False)
        if full == 0:
            return True
        return count_ops(full) <= 4 * _SIMPLIFY_OPS and expand(fraction(together(full))[0], log=False) == 0

    def expect(self, expr, under: str = "policy"):
        """E[expr] over x ∼ π_θ ("policy"), π_ref ("reference") or π_old ("behaviour"), with the
        abstract ratios averaged by change of measure; raises NoClosedForm."""
        total = S.Zero
        for (ratio, weight), part in _by_ratio(expand_mul(expr)).items():
            measure = under
            if weight:
                if measure != "behaviour":
                    raise NoClosedForm("the importance weight π_θ/π_old averages only under π_old")
                measure = "policy"  # E_old[ρ f] = E_θ[f]
            elif measure == "behaviour":
                raise NoClosedForm("a term without the importance weight under π_old")
            if ratio:
                if measure != "policy":
                    raise NoClosedForm("the ratio π_ref/π_θ averages only under π_θ")
                measure = "reference"  # E_θ[r f] = E_ref[f]
            first = {"policy": self.first, "reference": self.reference, "behaviour": self.behaviour}[measure]
            # logs free of x are constants of the average; hidden, the Mellin route's forced
            # expansion cannot split log(−1/η₂) into log(−1) − log η₂ = iπ − log η₂
            total += _average(part, first, self.ctx)
        return rewrite(_real_logs(total), rules.ALGEBRA, self.ctx)

    def total_derivative(self, expr, name):
        """d expr/dθ with the abstract ratios differentiated through the chain rule:
        ∂r/∂θ = −r e_θ, ∂ρ/∂θ = ρ e_θ (e_θ the eligibility at x)."""
        score = self.score[name]
        wrt = self.wrt(name)
        out = diff(expr, wrt) - diff(expr, RATIO) * RATIO * score + diff(expr, WEIGHT) * WEIGHT * score
        return rewrite(out, rules.ALGEBRA, self.ctx)


# Above this many operations the whole-expression simplification (together, cancel, factor) is
# skipped: on the Gumbel audit's k2 terms one cancel ran for minutes (polynomial gcds).
_SIMPLIFY_OPS = 250


def numerically_zero(expr, points: int = 3) -> bool:
    """Whether a sum-free ``expr`` evaluates to 0 (to 25 digits) at random values that respect
    its symbols' signs: the check that a "not shown to be 0" is not a missed cancellation.
    False for expressions with sums or symbols of unknown sign."""
    import random

    if expr.has(Sum) or expr.has(IndexedBase):
        return False
    expr = _opened(expr).replace(lambda e: isinstance(e, sigmoid), lambda e: 1 / (1 + exp(-e.args[0])))
    expr = expr.replace(lambda e: isinstance(e, softplus), lambda e: log(1 + exp(e.args[0])))
    chooser = random.Random(0)
    for _ in range(points):
        values = {}
        for symbol in expr.free_symbols:
            magnitude = chooser.uniform(0.3, 1.7)
            values[symbol] = -magnitude if symbol.is_negative else magnitude if symbol.is_nonnegative else chooser.uniform(-1, 1)
        value = expr.subs(values).evalf(40)
        try:
            if abs(complex(value)) > 1e-25:
                return False
        except TypeError:  # not a number (a function evalf does not know)
            return False
    return True


def _bounded(expr) -> tuple:
    """The rules for ``expr``: the engine's algebra, with its simplification when ``expr`` is small."""
    return rules.ALGEBRA + rules.TIDY if count_ops(expr) <= _SIMPLIFY_OPS else rules.ALGEBRA


def _average(expr, first, ctx):
    """E[expr] over x ∼ ``first``, term by term; a sum over the categories of statistics of a
    vector sample (Σ_i α_i log x_i) is averaged inside the sum (linearity)."""
    x = first.symbols["x"]
    total = S.Zero
    inside = S.Zero
    for term in Add.make_args(expr):
        coefficient, sums = S.One, []
        for factor in Mul.make_args(term):
            if isinstance(factor, Sum) and factor.has(x) and not sums:
                sums.append(factor)
            else:
                coefficient *= factor
        if sums and isinstance(x, IndexedBase) and not coefficient.has(x):
            (inner,) = sums
            body, limits = inner.function, inner.limits
            total += coefficient * Sum(_average(body, first, ctx), *limits)
        else:
            inside += term
    if inside != 0:
        # logs free of x are constants of the average; hidden, the Mellin route's forced
        # expansion cannot split log(−1/η₂) into log(−1) − log η₂ = iπ − log η₂
        hidden = {f: Dummy() for f in inside.atoms(log) if not f.has(x)}
        try:
            value, _ = expectation(inside.xreplace(hidden), first, ctx)
        except NoClosedForm as reason:
            message = str(reason)
            for f, d in hidden.items():
                message = message.replace(str(d), str(f))
            raise NoClosedForm(message) from None
        total += value.xreplace({d: f for f, d in hidden.items()})
    return total


def _real_logs(expr):
    """log u of a negative u written log(−u) + iπ, so that the imaginary parts the Mellin route's
    forced log expansion leaves (x = t/β with β = −η₂) cancel and every log is of a positive."""
    return expand_mul(expr.replace(lambda e: isinstance(e, log) and e.args[0].is_negative,
                                   lambda e: log(-e.args[0]) + I * pi)) if expr.has(I) else expr


def _opened(expr):
    """The stable one-function forms written as the plain quotients and logs they stand for
    (σ(u)/softplus(u), log softplus(u)), so that terms written either way cancel."""
    expr = expr.replace(lambda e: isinstance(e, sigmoid_over_softplus), lambda e: sigmoid(e.args[0]) / softplus(e.args[0]))
    expr = expr.replace(lambda e: isinstance(e, log_softplus), lambda e: log(softplus(e.args[0])))
    # I₁/I₀ and log I₀ have no derivative of their own: differentiated as the Bessel functions
    return expr.replace(lambda e: isinstance(e, (bessel_i1_i0, log_bessel_i0)), lambda e: e.doit())


def _by_ratio(expr) -> dict:
    """{(power of r, power of ρ): coefficient}, each power 0 or 1 (the estimators are affine in
    the ratios, and E[r² f] is not a change of measure)."""
    parts: dict = {}
    for term in Add.make_args(expr):
        powers = term.as_powers_dict()
        a, b = powers.get(RATIO, 0), powers.get(WEIGHT, 0)
        if a not in (0, 1) or b not in (0, 1):
            raise NoClosedForm(f"the term {term} is not linear in the likelihood ratios")
        rest = term / (RATIO**a * WEIGHT**b)
        parts[(int(a), int(b))] = parts.get((int(a), int(b)), S.Zero) + rest
    return parts


def canonical_parametrization(cls):
    """The parametrization that is the family's canonical parameters themselves."""
    for p in cls.parametrizations().values():
        if set(p.parameters) == set(cls.parameters):
            symbols = cls.make_symbols(p)
            if not p.substitution(symbols):
                return p
    raise SymeligError(f"{cls.name} has no parametrization in its own parameters")


def _measure(first: SymbolicDerivation, suffix: str) -> SymbolicDerivation:
    """The same family in its canonical parameters, each renamed with ``suffix`` (σ → σ_ref)."""
    cls = first.family
    canonical = canonical_parametrization(cls)
    own = cls.make_symbols(canonical)
    symbols = {"x": first.symbols["x"], **{a: first.symbols[a] for a in cls.arguments}}
    for name in cls.parameters:
        made = own[name]
        letter = str(made.label if isinstance(made, IndexedBase) else made)
        kind = IndexedBase if isinstance(made, IndexedBase) else Symbol
        symbols[name] = kind(f"{letter}_{suffix}", **cls.parameters[name].assumptions)
    log_prob = rewrite(cls.log_prob(**{n: symbols[n] for n in ("x", *cls.arguments, *cls.parameters)}), rules.ALGEBRA, context(cls, symbols))
    return dataclasses.replace(first, parametrization=canonical, symbols=symbols, log_prob=log_prob, eligibility={}, steps=())


def _simplex_identities(measure: SymbolicDerivation) -> dict:
    """Σ_i π_i = 1 for a canonical parameter on the simplex (the reference is a distribution)."""
    out = {}
    for name, constraint in measure.family.parameters.items():
        if constraint is constraints.simplex:
            out[Sum(measure.symbols[name][i], (i, 0, K - 1))] = S.One
    return out


@functools.lru_cache(maxsize=None)
def setting(family: str, param: str | None) -> Setting:
    cls, parametrization = lookup(family, param)
    first = derive_symbolic(cls, parametrization)
    reference, behaviour = _measure(first, "ref"), _measure(first, "old")
    base = context(cls, first.symbols)
    identities = {**base.identities, **_simplex_identities(reference), **_simplex_identities(behaviour)}
    ctx = rules.Context(base.category_indices, base.free_index, identities)
    log_prob = rewrite(first.parametrized_log_prob, rules.ALGEBRA, ctx)
    score = {n: rewrite(diff(log_prob, first.wrt(n)), rules.ALGEBRA, ctx) for n in first.parameters}
    return Setting(first, reference, behaviour, ctx, log_prob, reference.log_prob, score)


# ---- entropy and KL(p ‖ q) of two members in one parametrization ---------------------------

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
    value = _opened(value)
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
    mapped = s.first.parametrization.substitution(symbols_for_q(s.first, q))
    canonical = {n: mapped.get(n, q.get(n)) for n in s.first.family.parameters}
    from .engine import substitute

    value = substitute(value, canonical, ref)
    value = rewrite(value, rules.ALGEBRA, s.ctx)
    own = {n: s.first.symbols[n] for n in s.parameters}
    how = _routes(s, integrand, s.first)
    return ClosedForm("kl", family, s.first.param, s.tidy(value),
                      {"p": _gradients(s, value, own), "q": _gradients(s, value, q)},
                      {"p": own, "q": q}, how, {"p": own, "q": q})


def symbols_for_q(first: SymbolicDerivation, q: dict) -> dict:
    """The symbols a substitution is called with, q's parameters in the place of θ's."""
    return {**first.symbols, **q}


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
