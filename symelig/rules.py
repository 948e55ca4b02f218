"""Rewrite rules the engine applies by name, each one a step a reader can check.

SymPy differentiates sums over a symbolic number of categories correctly but leaves the result
as sums against Kronecker deltas, which it cannot collapse without knowing that the free index
lies in 0..K−1 (see shared/design-notes.md).  These rules do that collapse and the few other
rewrites a paper would do by hand.  Each rule is a function ``node -> node`` applied bottom-up;
it returns the node unchanged when it does not apply.  Every rule is an equality on the
support declared by the family, which is what makes the explanation steps trustworthy.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from sympy import Add, Indexed, KroneckerDelta, Mul, Pow, Sum, cancel, count_ops, exp, expand, expand_log, expand_mul, factor, factor_terms, log, together

from .family import K, i
from .functions import LogSumExp, LogSumExpBlock, LogSumExpRemaining, Softmax, SoftmaxBlock, SoftmaxRemaining, bessel_i1_i0, log_bessel_i0, log_softplus, sigmoid, softplus, xlogy


@dataclass(frozen=True)
class Context:
    """What the rules may assume: which symbols index categories, and the support identities."""

    category_indices: frozenset   # symbols known to lie in 0..K−1 (j, and a categorical x)
    free_index: object            # j: the component of a vector eligibility
    identities: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Rule:
    name: str
    statement: str   # the rule in words, as an explanation step would say it
    apply: object    # (node, Context) -> node
    whole: bool = False  # apply once to the whole expression instead of to every node


def _category_sum(node):
    """(function, index) of a Sum over one index from 0 to K − 1, else None."""
    if isinstance(node, Sum) and len(node.limits) == 1:
        index, lower, upper = node.limits[0]
        if lower == 0 and upper == K - 1:
            return node.function, index
    return None


def _linearity(node, ctx):
    found = _category_sum(node)
    if found is None:
        return node
    f, v = found
    if f.is_Mul and any(g.is_Add for g in f.args):
        f = expand_mul(f)
    if f.is_Add:
        return Add(*[Sum(term, (v, 0, K - 1)) for term in f.args])
    if v not in f.free_symbols:
        return K * f
    if f.is_Mul:
        outside = [g for g in f.args if v not in g.free_symbols]
        if outside:
            inside = [g for g in f.args if v in g.free_symbols]
            return Mul(*outside) * Sum(Mul(*inside), (v, 0, K - 1))
    return node


def _delta_sum(node, ctx):
    found = _category_sum(node)
    if found is None:
        return node
    f, v = found
    factors = Mul.make_args(f)
    for delta in factors:
        if isinstance(delta, KroneckerDelta) and v in delta.args:
            other = delta.args[1] if delta.args[0] == v else delta.args[0]
            if other in ctx.category_indices:
                rest = Mul(*[g for g in factors if g is not delta])
                return rest.subs(v, other)
    return node


def _delta_select(node, ctx):
    if not node.is_Mul:
        return node
    for delta in node.args:
        if isinstance(delta, KroneckerDelta) and ctx.free_index in delta.args:
            other = delta.args[1] if delta.args[0] == ctx.free_index else delta.args[0]
            rest = Mul(*[g for g in node.args if g is not delta])
            if other in ctx.category_indices and rest.has(ctx.free_index):
                return delta * rest.subs(ctx.free_index, other)
    return node


def _support_identity(node, ctx):
    found = _category_sum(node)
    if found is None:
        return node
    f, v = found
    return ctx.identities.get(Sum(f.subs(v, i), (i, 0, K - 1)), node)


def _log_product(node, ctx):
    if isinstance(node, log) and node.args[0].free_symbols and (
        node.args[0].is_Mul or node.args[0].is_Pow or isinstance(node.args[0], exp)
    ):
        return expand_log(node)  # valid: SymPy checks the factors are positive
    return node


def _xlogy_split(node, ctx):
    """x·log(u·v) = x·log u + x·log v, keeping 0·log 0 = 0 for the factors indexed like x."""
    if isinstance(node, xlogy):
        a, b = node.args
        if isinstance(b, exp):
            return a * b.args[0]
        if b.is_Mul or (b.is_Pow and b.exp.is_negative):
            factors = Mul.make_args(b)
            inside = [f for f in factors if f.free_symbols & a.free_symbols]
            outside = [f for f in factors if not f.free_symbols & a.free_symbols]
            if outside and inside:
                return xlogy(a, Mul(*inside)) + a * expand_log(log(Mul(*outside)))
    return node


def _tidy(node, ctx):
    """The shortest of a few bounded rewrites (together, cancel, factor), for sum-free results.

    General ``simplify`` is avoided on purpose: it can raise or hang on these trees (SymPy 1.14).
    """
    if node.has(Sum) or not node.free_symbols:
        return node
    candidates = [node]
    for rewrite in (together, cancel, factor, factor_terms, expand):
        try:
            candidates.append(rewrite(node))
        except Exception:  # noqa: BLE001 -- a rewrite that fails is simply not a candidate
            pass
    return min(candidates, key=lambda c: (count_ops(c), len(str(c))))


def _log_sigmoid(node, ctx):
    if isinstance(node, log):
        arg = node.args[0]
        if isinstance(arg, sigmoid):
            return -softplus(-arg.args[0])
        rest = arg - 1
        if isinstance(-rest, sigmoid):  # log(1 − sigmoid(u))
            return -softplus((-rest).args[0])
    return node


def _log_softplus(node, ctx):
    if isinstance(node, log) and isinstance(node.args[0], softplus):
        return log_softplus(node.args[0].args[0])
    return node


def _sigmoid_reflection(node, ctx):
    if isinstance(node, sigmoid) and node.args[0].could_extract_minus_sign():
        return 1 - sigmoid(-node.args[0])
    return node


def _bessel(node, ctx):
    from sympy import besseli

    if isinstance(node, log) and isinstance(node.args[0], besseli) and node.args[0].args[0] == 0:
        return log_bessel_i0(node.args[0].args[1])
    if isinstance(node, besseli) and node.args[0] == 2:  # from ∂I₁/∂κ = (I₀ + I₂)/2
        u = node.args[1]
        return besseli(0, u) - 2 * besseli(1, u) / u
    if node.is_Mul:
        powers = [f.as_base_exp() for f in node.args]
        ones = [(b, e) for b, e in powers if isinstance(b, besseli) and b.args[0] == 1 and e.is_Integer and e > 0]
        zeros = [(b, e) for b, e in powers if isinstance(b, besseli) and b.args[0] == 0 and e.is_Integer and e < 0]
        for one, up in ones:
            for zero, down in zeros:
                if one.args[1] == zero.args[1]:
                    n = min(up, -down)
                    return node / (one**n * zero**-n) * bessel_i1_i0(one.args[1]) ** n
        if zeros and any(f.is_Add and f.has(besseli) for f in node.args):
            return expand_mul(node)  # (I₀ − 2I₁/κ)/I₀ = 1 − 2 (I₁/I₀)/κ, one ratio per term
    return node


def _rename_index(node, ctx):
    found = _category_sum(node)
    if found is None or found[1] == i or i in found[0].free_symbols:
        return node
    return Sum(found[0].subs(found[1], i), (i, 0, K - 1))


def _exponent(summand):
    """f with ``summand`` = exp(f), where the summand is a product of exponentials and positive
    factors (e^{z_i}/σ_i = e^{z_i − log σ_i}: a mixture's weighted densities), else None."""
    factors = Mul.make_args(summand)
    exponentials = [g for g in factors if isinstance(g, exp)]
    others = [g for g in factors if not isinstance(g, exp)]
    if not exponentials or not all(g.is_positive for g in others):
        return None
    return Add(*(g.args[0] for g in exponentials), *(expand_log(log(g)) for g in others))


def _log_sum_exp(node, ctx):
    if isinstance(node, log):
        found = _category_sum(node.args[0])
        body = _exponent(found[0]) if found else None
        if body is not None:
            return LogSumExp(body.subs(found[1], i), i, K)
    return node


def _softmax(node, ctx):
    """w_j / Σ_i w_i = softmax(f)_j for w_i = exp(f_i) (:func:`_exponent`: exponentials times
    positive factors), where the numerator holds an exponential of w_j; a sum in the numerator
    is factored first, (x − μ_j)·w_j/σ_j² − … has w_j in every term."""
    if not node.is_Mul:
        return node
    for denominator in node.args:
        # exp(f_j) exp(f_l) / (Σ_i exp f_i)² is named one softmax at a time: softmax_j · softmax_l
        if isinstance(denominator, Pow) and denominator.exp.is_Integer and denominator.exp < 0:
            found = _category_sum(denominator.base)
            body = _exponent(found[0]) if found else None
            if body is None:
                continue
            body, weight = body.subs(found[1], i), found[0].subs(found[1], i)
            numerator = Mul(*[factor_terms(g) if g.is_Add else g for g in node.args if g is not denominator])
            if not any(isinstance(g, exp) for g in Mul.make_args(numerator)):
                continue
            for at in sorted(ctx.category_indices, key=str):
                # w_j is a factor of the numerator where dividing it out leaves less (its
                # exponentials cancel): e^(f_j) e^(f_l)/Σ² names softmax_j, then softmax_l
                rest = _merged_exponentials(numerator / weight.subs(i, at))
                if count_ops(rest) < count_ops(numerator):
                    return rest * Pow(denominator.base, denominator.exp + 1) * Softmax(body, i, K, at)
    return node


def _merged_exponentials(product):
    """e^a·e^b = e^(a + b) in a product, so that w_j's factor e^(−f_j) cancels the numerator's e^(f_j)."""
    factors = Mul.make_args(product)
    exponentials = [g for g in factors if isinstance(g, exp)]
    if len(exponentials) < 2:
        return product
    return Mul(*[g for g in factors if not isinstance(g, exp)]) * exp(Add(*(g.args[0] for g in exponentials)))


def _softmax_average(node, ctx):
    """Σ_i g_i exp(f_i) / Σ_i exp(f_i) = Σ_i g_i softmax(f)_i, for any f (z_i/τ as well as z_i):
    the sums of exponentials overflow at f ≈ 710 although the average does not."""
    if not node.is_Mul:
        return node
    for denominator in node.args:
        if not (isinstance(denominator, Pow) and denominator.exp.is_Integer and denominator.exp < 0):
            continue
        found = _category_sum(denominator.base)
        if not (found and isinstance(found[0], exp)):
            continue
        body = found[0].args[0].subs(found[1], i)
        for numerator in node.args:
            summed = _category_sum(numerator)
            if summed is None or numerator is denominator:
                continue
            factors = Mul.make_args(summed[0].subs(summed[1], i))
            weight = next((f for f in factors if isinstance(f, exp) and f.args[0] == body), None)
            if weight is None:
                continue
            rest = Mul(*[f for f in factors if f is not weight])
            others = [g for g in node.args if g is not numerator and g is not denominator]
            average = Sum(rest * Softmax(body, i, K, i), (i, 0, K - 1))
            return Mul(*others) * average * Pow(denominator.base, denominator.exp + 1)
    return node


def _remaining_sum(node):
    """(f, x, step, placed index) where ``node`` is Σ_i e^{f(i)} − Σ_{q<step} e^{f(x_q)}, the sum of
    exponentials over the categories an ordering x has not placed by ``step``, else None."""
    if not node.is_Add or len(node.args) != 2:
        return None
    for total, placed in (node.args, node.args[::-1]):
        found = _category_sum(total)
        if not (found and isinstance(found[0], exp)) or not (placed.could_extract_minus_sign() and isinstance(-placed, Sum)):
            continue
        placed = -placed
        (index, lower, upper), = placed.limits
        body = found[0].args[0].subs(found[1], i)
        orderings = [a for a in placed.function.atoms(Indexed) if a.indices == (index,)]
        for entry in orderings:
            if lower == 0 and placed.function == exp(body.subs(i, entry)):
                return body, entry.base, upper + 1, index
    return None


def _remaining(node, ctx):
    """log of the remaining sum → LogSumExpRemaining; (e^{f(a)} − Σ_{q<step} δ(a, x_q) e^{f(x_q)})
    over it → SoftmaxRemaining at a."""
    if isinstance(node, log):
        found = _remaining_sum(node.args[0])
        if found:
            body, x, step, _ = found
            return LogSumExpRemaining(body, i, K, x, step)
        return node
    if not node.is_Mul:
        return node
    for denominator in node.args:
        if not (isinstance(denominator, Pow) and denominator.exp == -1):
            continue
        found = _remaining_sum(denominator.base)
        if not found:
            continue
        body, x, step, index = found
        for at in ctx.category_indices:
            named = SoftmaxRemaining(body, i, K, x, step, at)
            numerator = expand(named.doit() * denominator.base)
            rest = node / denominator
            for sign in (1, -1):
                if expand(rest - sign * numerator) == 0:
                    return sign * named
    return node


def _block_sum(node):
    """(f, i, lo, hi) of Σ_{i=lo}^{hi} e^{f(i)} over part of the category axis (not 0..K−1), else None."""
    if isinstance(node, Sum) and len(node.limits) == 1 and isinstance(node.function, exp) and _category_sum(node) is None:
        index, lower, upper = node.limits[0]
        return node.function.args[0], index, lower, upper
    return None


def _block(node, ctx):
    """log Σ_{i=lo}^{hi} e^{f} → LogSumExpBlock; Σ_{i=lo}^{hi} δ(i, a) e^{f} over Σ_{i=lo}^{hi} e^{f} →
    SoftmaxBlock at a (one block of a multi-discrete action's categories)."""
    if isinstance(node, log):
        found = _block_sum(node.args[0])
        return LogSumExpBlock(*found) if found else node
    if not node.is_Mul:
        return node
    for denominator in node.args:
        if not (isinstance(denominator, Pow) and denominator.exp == -1):
            continue
        found = _block_sum(denominator.base)
        if not found:
            continue
        f, index, lower, upper = found
        for at in ctx.category_indices:
            named = SoftmaxBlock(f, index, lower, upper, at)
            numerator = named.doit() * denominator.base
            for candidate in node.args:
                if candidate == numerator:
                    return node / denominator / numerator * named
    return node


LINEARITY = Rule("linearity", "a sum of terms is the sum of the sums, and factors free of the summation index move out", _linearity)
DELTA_SUM = Rule("delta_sum", "a sum against a Kronecker delta picks out one term: Σ_i f(i) δ_ij = f(j)", _delta_sum)
DELTA_SELECT = Rule("delta_select", "under δ_jx the component j equals the sample x, so j may be written as x", _delta_select)
SUPPORT_IDENTITY = Rule("support_identity", "an identity that holds on the support (the counts sum to total_count)", _support_identity)
LOG_PRODUCT = Rule("log_product", "the log of a product or quotient of positive factors is the sum or difference of their logs", _log_product)
XLOGY_SPLIT = Rule("log_product", "x log(u v) = x log u + x log v (0 log 0 = 0 kept for the factor indexed like x)", _xlogy_split)
SIMPLIFY = Rule("simplify", "collect the terms over a common denominator and factor", _tidy, whole=True)
LOG_SIGMOID = Rule("log_sigmoid", "log sigmoid(u) = −softplus(−u) and log(1 − sigmoid(u)) = −softplus(u), exact and stable", _log_sigmoid)
LOG_SOFTPLUS = Rule(
    "log_softplus", "log softplus(u) is one function, = u below the underflow of softplus(u)", _log_softplus
)
SIGMOID_REFLECTION = Rule("sigmoid_reflection", "sigmoid(−u) = 1 − sigmoid(u)", _sigmoid_reflection)
BESSEL = Rule("bessel", "log I₀(κ) and I₁(κ)/I₀(κ) are evaluated with exponentially scaled Bessel functions (I₂ = I₀ − 2I₁/κ)", _bessel)
RENAME_INDEX = Rule("rename_index", "the name of a summation index does not matter; call it i", _rename_index)
LOG_SUM_EXP = Rule("log_sum_exp", "log Σ_i exp(f_i) is the log-sum-exp, evaluated stably with a max shift", _log_sum_exp)
SOFTMAX = Rule("softmax", "exp(f_j) / Σ_i exp(f_i) is the softmax, evaluated stably with a max shift", _softmax)
SOFTMAX_AVERAGE = Rule(
    "softmax", "Σ_i g_i exp(f_i) / Σ_i exp(f_i) = Σ_i g_i softmax(f)_i, an average over the softmax, evaluated stably", _softmax_average
)

ALGEBRA = (LOG_SIGMOID, LOG_SOFTPLUS, SIGMOID_REFLECTION, LOG_PRODUCT, XLOGY_SPLIT, LINEARITY, DELTA_SUM, DELTA_SELECT, SUPPORT_IDENTITY, RENAME_INDEX)
TIDY = (SIMPLIFY,)
REMAINING = Rule(
    "remaining", "log Σ and softmax over the categories an ordering has not yet placed (Σ_i less the placed ones), "
    "evaluated stably as reverse cumulative log-sum-exps", _remaining)
BLOCK = Rule(
    "block", "log Σ and softmax over one block of the categories (a multi-discrete action's own categorical), "
    "evaluated stably with each block's max", _block)
NAMING = (REMAINING, BLOCK, LOG_SUM_EXP, SOFTMAX, SOFTMAX_AVERAGE, BESSEL)


def bottom_up(expr, rule: Rule, ctx: Context):
    """Apply ``rule`` to every node, children first (or once to the whole, for ``whole`` rules)."""
    if rule.whole:
        return rule.apply(expr, ctx)
    if expr.args and not expr.is_Atom:
        new_args = [bottom_up(a, rule, ctx) for a in expr.args]
        if any(a is not b for a, b in zip(new_args, expr.args)):
            expr = expr.func(*new_args)
    return rule.apply(expr, ctx)
