"""π_θ, a reference π_ref and a behaviour policy π_old of one catalog entry, and symbolic
expectations under each: what the entropy/KL closed forms (:mod:`symelig.entropy_kl`) and the
KL-estimator audit (:mod:`symelig.audit`) are built from.

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

from sympy import (Add, I, IndexedBase, besseli, Mul, S, Sum, Symbol, Wild, count_ops, diff, exp, expand, expand_func,
                   expand_mul, factor_terms, fraction, log, pi, powsimp, together)

from . import constraints, rules
from .engine import SymbolicDerivation, context, derive_symbolic, rewrite
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
        expr = expand_mul(opened(rewrite(expr, rules.ALGEBRA, self.ctx)))
        expr = rewrite(expr, _bounded(expr), self.ctx)
        # σ(u)/softplus(u) closed again into the one function that does not underflow
        expr = rewrite(expr, rules.NAMING, self.ctx).replace(_over_softplus, _as_sigmoid_over_softplus)
        # SymPy's expand opens softplus inside some functions' arguments: closed again
        u = Wild("u")
        expr = expr.replace(log(exp(u) + 1), softplus(u))
        # a common factor (softmax_j) taken out of sums, which TIDY leaves alone
        # and e^a e^b as one e^(a+b): e^{−μ/β} e^{μ_q/β} overflows where e^{(μ_q−μ)/β} does not
        best = min((expr, factor_terms(expr), powsimp(expr, combine="exp")), key=count_ops)
        # I₁(u)/I₀(u) that a distributed product left apart (the von Mises entropy's gradient in
        # softplus(r)): overflows to inf/inf at u ≈ 700 where the named ratio stays below 1
        best = best.replace(besseli(1, u) / besseli(0, u), bessel_i1_i0(u))
        # and e^u/(e^u + 1) as σ(u) (softplus′): inf/inf at u = 800
        return best.replace(lambda e: e.is_Mul and _sigmoid_pair(e) is not None, _as_sigmoid)

    def is_zero(self, expr) -> bool:
        """Whether ``expr`` is 0 by the engine's rules; False means "not shown to be 0"."""
        expr = rewrite(expr, rules.ALGEBRA, self.ctx)
        if expr == 0:
            return True
        expanded = expand_mul(opened(expr))
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


def _sigmoid_pair(product):
    """u where ``product`` has the factors e^u and 1/(e^u + 1), else None."""
    factors = Mul.make_args(product)
    for f in factors:
        if isinstance(f, exp) and (f + 1) ** -1 in factors:
            return f.args[0]
    return None


def _as_sigmoid(product):
    u = _sigmoid_pair(product)
    return product / (exp(u) / (exp(u) + 1)) * sigmoid(u)


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
    expr = opened(expr).replace(lambda e: isinstance(e, sigmoid), lambda e: 1 / (1 + exp(-e.args[0])))
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
        # (named in a fixed order, not Dummy(): the message below prints them, and a Dummy's
        # place in the printed order changed from run to run, and with it derivations/ pages)
        hidden = {f: Internal(f"hidden{n}") for n, f in enumerate(sorted(inside.atoms(log) - {f for f in inside.atoms(log) if f.has(x)}, key=str))}
        try:
            value, _ = expectation(inside.xreplace(hidden), first, ctx)
        except NoClosedForm as reason:
            message = str(reason)
            from sympy.printing.pretty.pretty_symbology import pretty_symbol

            for f, d in hidden.items():  # as the message printed them (hidden₀)
                message = message.replace(pretty_symbol(str(d)), str(f)).replace(str(d), str(f))
            raise NoClosedForm(message) from None
        total += value.xreplace({d: f for f, d in hidden.items()})
    return total


def _real_logs(expr):
    """log u of a negative u written log(−u) + iπ, so that the imaginary parts the Mellin route's
    forced log expansion leaves (x = t/β with β = −η₂) cancel and every log is of a positive."""
    return expand_mul(expr.replace(lambda e: isinstance(e, log) and e.args[0].is_negative,
                                   lambda e: log(-e.args[0]) + I * pi)) if expr.has(I) else expr


def opened(expr):
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
    # the reference π_ref is written in the canonical parameters: without them (a masked
    # categorical's π depends on its mask), no closed form is derived
    raise NoClosedForm(f"{cls.name} has no parametrization in its own parameters for the reference")


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
