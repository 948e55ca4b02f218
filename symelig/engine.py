"""The derivation engine: from a family's log-likelihood to its eligibility, with the steps.

Sign convention, stated once for the whole package: the *eligibility* (Williams 1992, the
characteristic eligibility; the score function) is

    e_θ(x) = ∂ log p(x | θ) / ∂θ,

the gradient of the log-likelihood, never the gradient of a loss.  For a vector parameter θ
with a symbolic number K of components the engine derives the component e_{θ_j}.

The engine is generic: it differentiates with SymPy, then applies the named rules of
:mod:`symelig.rules` until nothing changes, recording each application as a :class:`Step`,
and finally names the stable quantities (softmax, log-sum-exp) that the printers and kernels
know how to typeset and evaluate.  No general ``simplify`` is run: on sums and Kronecker deltas
it can raise or hang (SymPy 1.14), and the targeted rules give the paper's form directly.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

from sympy import Add, Basic, Indexed, IndexedBase, KroneckerDelta, Lambda, Mul, S, Sum, diff, log

from . import constraints, rules
from .family import Family, Parametrization, call_with, j

_MAX_PASSES = 20


@dataclass(frozen=True)
class Step:
    """One rewrite: which rule turned ``before`` into ``after``, for which quantity."""

    target: str      # "log_prob" or a parameter name
    rule: str
    statement: str
    before: Basic
    after: Basic
    # "rewrite": after equals before; "derivative": after = ∂ before / ∂ wrt
    kind: str = "rewrite"
    wrt: Basic = None


@dataclass(frozen=True)
class SymbolicDerivation:
    """The finished math of one catalog entry; printers and emitters consume this."""

    family: type
    parametrization: Parametrization
    symbols: dict          # argument name -> Symbol or IndexedBase
    log_prob: Basic        # log p(x | θ), stable quantities named
    eligibility: dict      # parameter name -> ∂ log p / ∂θ (component j for vectors)
    steps: tuple

    @property
    def param(self) -> str:
        return self.parametrization.name

    @property
    def parameters(self) -> tuple:
        return tuple(self.parametrization.parameters)

    def wrt(self, name: str) -> Basic:
        """The symbol the eligibility of ``name`` is taken with respect to (θ or θ_j)."""
        s = self.symbols[name]
        return s[j] if isinstance(s, IndexedBase) else s

    @property
    def constraints(self) -> dict:
        """{argument name: Constraint} for x, the arguments and the parameters, in call order."""
        return {"x": self.family.value, **self.family.arguments, **self.parametrization.parameters}

    @property
    def is_vector(self) -> bool:
        return any(isinstance(s, IndexedBase) for s in self.symbols.values())

    @property
    def discrete(self) -> bool:
        """x is a count or category: log p is a log-probability, printed log P(x | θ)."""
        return bool(self.family.value.integer)

    def definitions(self) -> list:
        """[(canonical quantity, its expression in θ)]: how the parametrization maps onto the
        family's canonical parameters, e.g. (σ, exp(s)) or (π_i, p_i / Σ_k p_k); [] for the identity."""
        return _definitions(self.substitution, self.symbols)

    def abbreviations(self) -> list:
        """[(letter, its expression in the canonical parameters)] named in print only
        (:meth:`Family.abbreviations`), e.g. (α, (a − μ)/σ)."""
        from .family import Internal

        taken = {str(s) for s in self.symbols.values()}  # a --via name "alpha" keeps its letter
        named = self.family.abbreviations(**self.symbols)
        # Internal: the engine's own letter never equals a user's symbol of that name
        return [(Internal(letter, real=True), value) for letter, value in named.items() if letter not in taken]

    # What every consumer needs and would otherwise work out again.  (cached_property writes the
    # instance __dict__ directly, which a frozen dataclass allows.)
    @functools.cached_property
    def substitution(self) -> dict:
        """{canonical parameter name: its expression in θ} (a Lambda for a vector); {} for the
        identity."""
        return self.parametrization.substitution(self.symbols)

    @functools.cached_property
    def parametrized_log_prob(self) -> Basic:
        """log p written in the parametrization's parameters, no rule applied."""
        return substitute(call_with(self.family.log_prob, self.symbols),
                           self.substitution, self.symbols)

    @property
    def sample_index(self):
        """The sample x where it is a category index (it indexes the vectors: δ_jx, z[x]), else None."""
        return self.symbols["x"] if self.family.value is constraints.category else None

    @functools.cached_property
    def eligibility_split(self) -> dict:
        """{name: (rest, at_x)} with e = rest + δ_jx·at_x for a categorical sample (at_x = 0
        otherwise): the δ_jx part becomes one scatter at x in a kernel, onehot(x) in a vector
        explanation."""
        return {name: split_delta(e, self.sample_index) for name, e in self.eligibility.items()}


def _rewrite(expr, rule_set, ctx, target, steps):
    for _ in range(_MAX_PASSES):
        before_pass = expr
        for rule in rule_set:
            new = rules.bottom_up(expr, rule, ctx)
            if new != expr:
                steps.append(Step(target, rule.name, rule.statement, expr, new))
                expr = new
        if expr == before_pass:
            return expr
    raise RuntimeError(f"rewriting {target} did not settle after {_MAX_PASSES} passes")


def substitute(expr, substitution: dict, symbols: dict):
    """Write the canonical parameters in terms of the parametrization's (θ)."""
    for name, value in substitution.items():
        target = symbols[name]
        if isinstance(value, Lambda):  # a vector: π_k = f(k) for every index k
            expr = expr.replace(lambda e: isinstance(e, Indexed) and e.base == target, lambda e: value(*e.indices))
        else:
            expr = expr.subs(target, value)
    return expr


def split_delta(expr, sample):
    """(rest, coefficient) with expr = rest + δ(j, sample)·coefficient, the delta linear;
    (expr, 0) where ``sample`` is None."""
    if sample is None:
        return expr, S.Zero
    delta = KroneckerDelta(j, sample)
    rest, coefficient = [], []
    for term in Add.make_args(expr):
        factors = Mul.make_args(term)
        if delta in factors:
            coefficient.append(Mul(*[f for f in factors if f != delta]))
        else:
            rest.append(term)
    rest, coefficient = Add(*rest), Add(*coefficient)
    if rest.has(KroneckerDelta) or coefficient.has(KroneckerDelta) or coefficient.has(j):
        raise NotImplementedError(f"cannot vectorize {expr}: δ(j,x) must appear as a linear factor")
    return rest, coefficient


def parametrized_log_prob(family: type[Family], parametrization: Parametrization, symbols: dict):
    """(canonical log p, log p written in the parametrization's parameters), nothing rewritten."""
    canonical = call_with(family.log_prob, symbols)
    return canonical, substitute(canonical, parametrization.substitution(symbols), symbols)


def derive_symbolic(family: type[Family], parametrization: Parametrization) -> SymbolicDerivation:
    """Differentiate the family's log-likelihood w.r.t. every parameter of the parametrization."""
    symbols = family.make_symbols(parametrization)
    canonical, log_prob = parametrized_log_prob(family, parametrization, symbols)
    substitution = parametrization.substitution(symbols)
    ctx = context(family, symbols)
    steps: list = []
    if substitution:
        steps.append(Step("log_prob", "parametrize", _parametrize_statement(substitution, symbols), canonical, log_prob))
    log_prob = _rewrite(log_prob, rules.ALGEBRA, ctx, "log_prob", steps)
    eligibility = {}
    for name in parametrization.parameters:
        wrt = symbols[name][j] if isinstance(symbols[name], IndexedBase) else symbols[name]
        raw = _differentiate(log_prob, wrt, name, steps)
        e = _rewrite(raw, rules.ALGEBRA + rules.TIDY, ctx, name, steps)
        eligibility[name] = _rewrite(e, rules.NAMING, ctx, name, steps)
    named_log_prob = _rewrite(log_prob, rules.NAMING, ctx, "log_prob", steps)
    return SymbolicDerivation(family, parametrization, symbols, named_log_prob, eligibility, tuple(steps))


def context(family: type[Family], symbols: dict, free_indices=(j,)) -> rules.Context:
    """What the rules may assume for this family: the category indices and support identities."""
    # a categorical sample is itself a category index, which is what lets δ_ij sums collapse onto it
    sample = {symbols["x"]} if family.value is constraints.category else set()
    return rules.Context(
        category_indices=frozenset({*free_indices, *sample}),
        free_index=free_indices[0],
        identities=family.identities(**symbols),
    )


def rewrite(expr, rule_set, ctx, target="expr", steps=None):
    """``expr`` with the rules applied until nothing changes (steps recorded when a list is given)."""
    return _rewrite(expr, rule_set, ctx, target, [] if steps is None else steps)


def _differentiate(log_prob, wrt, target: str, steps: list):
    """∂ log p/∂wrt term by term, one recorded step per term, then their sum (linearity)."""
    parts = []
    for term in Add.make_args(log_prob):
        derivative = diff(term, wrt)
        rule, statement = _derivative_rule(term, wrt, derivative)
        steps.append(Step(target, rule, statement, term, derivative, kind="derivative", wrt=wrt))
        parts.append(derivative)
    raw = Add(*parts)
    statement = "the derivative of log p is the sum of the terms' derivatives (linearity)"
    steps.append(Step(target, "differentiate", statement, log_prob, raw, kind="derivative", wrt=wrt))
    return raw


def _derivative_rule(term, wrt, derivative) -> tuple:
    """Name the calculus rule that ∂term/∂wrt uses, from the factors of the term that depend on
    the parameter."""
    if derivative == 0:
        return "constant", "the term does not depend on the parameter: its derivative is 0"
    dependent = [f for f in Mul.make_args(term) if diff(f, wrt) != 0]
    if len(dependent) > 1:
        return "product_rule", "product rule: ∂(u v) = (∂u) v + u (∂v)"
    (factor,) = dependent
    if isinstance(factor, log):
        if factor.args[0].has(Sum):
            return "chain_rule_log", "chain rule through the log of the normalizer: ∂ log Σ = (∂Σ)/Σ"
        return "chain_rule_log", "chain rule through the log: ∂ log u = (∂u)/u"
    if isinstance(factor, (Sum, Add)):
        return "sum_rule", "the derivative of a sum is the sum of the derivatives: ∂/∂θ Σ_i f_i = Σ_i ∂f_i/∂θ"
    if isinstance(factor, Indexed):
        return "indexed_derivative", "∂θ_i/∂θ_j = δ_ij: a component depends only on itself"
    if factor.is_Pow:
        return "power_rule", "power rule with the chain rule: ∂ u^n = n u^(n−1) ∂u"
    if factor == wrt:
        return "linear", "a linear term: ∂(c θ)/∂θ = c"
    return "chain_rule", f"chain rule through {type(factor).__name__}: ∂ f(u) = f′(u) ∂u"


def _definitions(substitution: dict, symbols: dict) -> list:
    out = []
    for name, value in substitution.items():
        target = symbols[name]
        if isinstance(value, Lambda):
            (index,) = value.variables
            out.append((target[index], value.expr))
        else:
            out.append((target, value))
    return out


def _parametrize_statement(substitution: dict, symbols: dict) -> str:
    parts = [f"{target} = {value}" for target, value in _definitions(substitution, symbols)]
    return "write the family's parameters in terms of the ones differentiated: " + ", ".join(parts)
