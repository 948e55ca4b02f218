"""Second order: the Hessian of log p(x | θ) and the Fisher information, derived by the engine.

    H_ab(x) = ∂² log p(x | θ) / ∂θ_a ∂θ_b        (components j, l of a vector parameter)
    F_ab    = −E[H_ab] = E[e_a e_b]              (x ~ p(x | θ))

The second equality (Bartlett's identity) needs log p twice differentiable in θ for almost every
x and differentiation under the integral; where log p is not (the Laplace density at x = μ,
whose Hessian is a Dirac delta) F is taken as E[e eᵀ] instead, which is its definition.  The
expectations are symbolic (:mod:`symelig.expectation`).

A vector parameter's K×K block is kept in the structured form every catalog entry has,

    H_jl = δ_jl·d_j + c·u_j·u_l      (diagonal plus rank one),

e.g. F = diag(π) − π πᵀ for softmax logits, so kernels never build a dense K×K matrix.  When
1 + c Σ_i u_i²/d_i = 0 the block is singular and its null space is spanned by n_j = u_j/d_j
(the all-ones vector for logits, p itself for relative probabilities): the natural gradient
then applies the Moore–Penrose inverse.
"""
from __future__ import annotations

from dataclasses import dataclass

from sympy import Add, Basic, DiracDelta, Dummy, IndexedBase, KroneckerDelta, Mul, S, Sum, count_ops, diff, exp, factor

from . import constraints, rules
from .engine import SymbolicDerivation, context, rewrite
from .expectation import NoClosedForm, expectation, m
from .family import K, j, l
from .functions import Softmax, sigmoid, sigmoid_over_softplus, softplus


@dataclass(frozen=True)
class RankOne:
    """A K×K block δ_jl·diagonal_j + scale·vector_j·vector_l (diagonal and vector in j)."""

    diagonal: Basic
    scale: Basic
    vector: Basic



@dataclass(frozen=True)
class SecondOrder:
    """The second-order math of one catalog entry; printers and emitters consume this."""

    first: SymbolicDerivation
    hessian: dict            # (a, b) -> ∂² log p/∂θ_a∂θ_b, a before b in parameter order
    fisher: dict | None      # same keys; None where no closed form was derived
    method: str              # how F was obtained, in words
    assumptions: tuple       # what makes F valid, in words
    no_closed_form: str = "" # why ``fisher`` is None
    structure: dict = None   # (a, a) of a vector parameter -> {"hessian": RankOne, "fisher": RankOne}
    null_space: dict = None  # (a, a) -> n_j spanning the null space of a singular Fisher block


def derive_second_order(first: SymbolicDerivation) -> SecondOrder:
    family, symbols = first.family, first.symbols
    log_prob = first.parametrized_log_prob
    ctx = context(family, symbols, (j, l))
    log_prob = rewrite(log_prob, rules.ALGEBRA, ctx)
    names = first.parameters
    score = {n: rewrite(diff(log_prob, first.wrt(n)), rules.ALGEBRA, ctx) for n in names}
    pairs = [(a, b) for n, a in enumerate(names) for b in names[n:]]
    # the second derivative is taken w.r.t. component l of a vector parameter (j for the first)
    raw = {(a, b): _diagonal_in_j(rewrite(diff(score[a], first.wrt(b).subs(j, l)), rules.ALGEBRA, ctx)) for a, b in pairs}
    tidy_hessian = {pair: _tidy(h, ctx) for pair, h in raw.items()}
    hessian = {pair: _grouped(_name(h, ctx)) for pair, h in tidy_hessian.items()}

    smooth = not any(h.has(DiracDelta) for h in raw.values())
    mean, unknown = _mean_score(score, first, ctx)
    outer = {(a, b): _diagonal_in_j(rewrite(score[a] * score[b].subs(j, l), rules.ALGEBRA, ctx)) for a, b in pairs}
    if mean:
        # Free coordinates of a constrained parameter (π on the simplex, treated as free): log p
        # is not a log-density off the constraint set, E[e] ≠ 0, and −E[H] ≠ E[e eᵀ] (for the
        # multinomial they differ by n(n−1)·𝟙𝟙ᵀ).  F keeps its definition, E[e eᵀ].
        from .emit.text import readable  # prose: ψ(a), not SymPy's polygamma(0, a)

        shown = ", ".join(f"E[e_{n}] = {readable(_name(v, ctx))}" for n, v in mean.items())
        method = f"F = E[e eᵀ] (the score has mean {shown} ≠ 0 in these free coordinates, so −E[H] is a different matrix)"
        assumptions = ("the eligibility is square-integrable",
                       "F is E[e eᵀ], not the covariance of e: they differ by E[e]E[e]ᵀ here")
        integrands = outer
    elif unknown and _free_simplex(first):
        # E[e] = 0 is what makes −E[H] equal F; on free simplex coordinates it can fail, and
        # here it could not be checked: only the definition is safe
        listed = ", ".join(f"E[e_{n}]" for n in unknown)
        method = (f"F = E[e eᵀ] ({listed} has no closed form, and in free simplex coordinates the score "
                  "need not have mean 0, so −E[H] is not used)")
        assumptions = ("the eligibility is square-integrable",)
        integrands = outer
    elif smooth:
        method = "F = −E[H]"
        assumptions = ("log p is twice differentiable in θ and differentiation under the integral is allowed",)
        integrands = {pair: -h for pair, h in raw.items()}
    else:
        method = "F = E[e eᵀ] (log p is not twice differentiable everywhere: its Hessian holds a Dirac delta)"
        assumptions = ("the eligibility is square-integrable",)
        integrands = outer
    try:
        taken = {pair: expectation(f, first, ctx) for pair, f in integrands.items()}
    except NoClosedForm as reason:
        return SecondOrder(first, hessian, None, method, assumptions, str(reason), *_structures(first, tidy_hessian, None, ctx))
    routes = sorted({how for _, how in taken.values() if how != "free of x"})
    if routes:
        method += ", the expectation by " + " and ".join(routes)
    elif integrands is outer:
        method += "; e does not depend on x, so F = e eᵀ"
    else:
        method += "; H does not depend on x, so F = −H"
    tidy_fisher = {pair: _tidy(value, ctx) for pair, (value, _) in taken.items()}
    fisher = {pair: _name(f, ctx) for pair, f in tidy_fisher.items()}
    return SecondOrder(first, hessian, fisher, method, assumptions, "", *_structures(first, tidy_hessian, tidy_fisher, ctx))


def _mean_score(score: dict, first, ctx) -> tuple:
    """({parameter: E[e]} for the parameters whose score does not average to 0, [parameters
    whose E[e] has no closed form]).  Both are empty where the score identity E[e] = 0 is seen
    to hold."""
    mean, unknown = {}, []
    for name, e in score.items():
        try:
            value, _ = expectation(e, first, ctx)
        except NoClosedForm:
            unknown.append(name)
            continue
        value = _tidy(value, ctx)
        # ψ(α_j) − ψ(Σα) cancels only once expanded, I₁/I₀ only once named: try both orders
        if value != 0 and _name(value.expand(), ctx).expand() != 0 and _name(value, ctx).expand() != 0:
            mean[name] = _name(value, ctx)
    return mean, unknown


def _free_simplex(first) -> bool:
    """Whether a canonical parameter lives on the simplex: then θ's coordinates may leave it
    (normalized_probs treated as free) and the score's mean is not 0 by construction."""
    return any(c is constraints.simplex for c in first.family.parameters.values())


def _tidy(expr, ctx):
    # sigmoid/softplus is opened so that terms cancel (Jᵀ F J is all that survives E[H] of a
    # softplus parametrization), then closed again: the whole function does not underflow
    expr = expr.replace(lambda e: isinstance(e, sigmoid_over_softplus), lambda e: sigmoid(e.args[0]) / softplus(e.args[0]))
    expr = _diagonal_in_j(rewrite(_diagonal_in_j(expr), rules.ALGEBRA + rules.TIDY, ctx))
    return expr.replace(_over_softplus, _as_sigmoid_over_softplus)


def _over_softplus(e) -> bool:
    """A product holding sigmoid(u)^a / softplus(u)^b with a, b ≥ 1."""
    return e.is_Mul and bool(_softplus_pairs(e))


def _softplus_pairs(e) -> list:
    powers = dict(f.as_base_exp() for f in Mul.make_args(e))
    return [(b.args[0], powers[b], powers.get(sigmoid(b.args[0]), 0)) for b in powers
            if isinstance(b, softplus) and powers[b].is_Integer and powers[b] < 0 and powers.get(sigmoid(b.args[0]), 0) > 0]


def _as_sigmoid_over_softplus(e):
    for u, down, up in _softplus_pairs(e):
        n = min(-down, up)
        e = e / (sigmoid(u) ** n / softplus(u) ** n) * sigmoid_over_softplus(u) ** n
    return e


def _name(expr, ctx):
    return rewrite(expr, rules.NAMING, ctx)


def _diagonal_in_j(expr):
    """Under δ_jl the components are equal: write terms carrying δ_jl (or δ_jx δ_lx) in j only."""
    if not expr.has(l):
        return expr
    out = []
    for term in Add.make_args(_expanded(expr) if expr.has(KroneckerDelta) else expr):
        factors = list(Mul.make_args(term))
        deltas = [f for f in factors if isinstance(f, KroneckerDelta)]
        # δ_jx δ_lx = δ_jl δ_jx: both components are the sample's category
        for a in deltas:
            for b in deltas:
                if a is not b and j in a.args and l in b.args:
                    other_a = a.args[1] if a.args[0] == j else a.args[0]
                    other_b = b.args[1] if b.args[0] == l else b.args[0]
                    if other_a == other_b:
                        factors.remove(b)
                        factors.append(KroneckerDelta(j, l))
        term = Mul(*factors)
        if KroneckerDelta(j, l) in Mul.make_args(term):
            term = KroneckerDelta(j, l) * (term / KroneckerDelta(j, l)).subs(l, j)
        out.append(term)
    return Add(*out)


def _grouped(expr):
    """A block with softmax factors, its terms collected by their δ_jl and softmax factors, each
    coefficient factored, where that is shorter: a mixture's ∂²/∂μ_j∂μ_l reads
    δ_jl·r_j·((x − μ_j)² − σ_j²)/σ_j⁴ − r_j·r_l·(x − μ_j)(x − μ_l)/(σ_j²σ_l²), not as 8 expanded terms."""
    def structural(f):
        base = f.base if f.is_Pow else f
        return isinstance(base, (KroneckerDelta, Softmax))

    groups: dict = {}
    for term in Add.make_args(expr):
        key = Mul(*[f for f in Mul.make_args(term) if structural(f)])
        groups.setdefault(key, []).append(term / key)
    if not expr.has(Softmax) or set(groups) == {S.One} or len(groups) == len(Add.make_args(expr)):
        return expr
    out = Add(*[_factored(key, Add(*terms)) for key, terms in groups.items()])
    return out if count_ops(out) < count_ops(expr) else expr


def _factored(key, coefficient):
    """key·coefficient with the coefficient factored, unless that gives more than two brackets:
    a product of four ((x − μ_j − σ_j)(x − μ_j + σ_j)(…)(…)) is longer than a printed line and
    cannot be broken; its terms are left apart, where a line may break."""
    factored = factor(coefficient)
    brackets = [f for f in Mul.make_args(factored) if f.is_Add or (f.is_Pow and f.base.is_Add)]
    return key * factored if len(brackets) <= 2 else Add(*[key * t for t in Add.make_args(coefficient)])


def _expanded(expr):
    """``expr`` expanded into terms, each exponential kept whole: e^(z_j − (x − μ_j)²/(2σ_j²)) split
    into e^(z_j)·e^(−x²/(2σ_j²))·… would no longer be seen as a mixture component's weight
    (softmax naming, :mod:`symelig.rules`)."""
    exponentials = {e: Dummy() for e in expr.atoms(exp)}
    return expr.xreplace(exponentials).expand().xreplace({d: e for e, d in exponentials.items()})


def _structures(first: SymbolicDerivation, hessian: dict, fisher: dict | None, ctx) -> tuple:
    """({(a, a): {"hessian": RankOne, "fisher": RankOne}}, {(a, a): null vector}) for the
    vector parameters, from the unnamed forms (where Σ_i π_i = 1 is visible to the rules), with
    the stable quantities named afterwards.  A block is the parameter's whether or not its
    entries mention j and l: H = 0 (log p linear in θ, normalized_probs = exp(w)) is a block too."""
    structure, null = {}, {}
    for pair, h in hessian.items():
        if pair[0] != pair[1] or not isinstance(first.symbols[pair[0]], IndexedBase):
            continue
        try:
            forms = {"hessian": rank_one(h)}
            if fisher is not None:
                forms["fisher"] = rank_one(fisher[pair])
            named = {kind: _named(block, ctx) for kind, block in forms.items()}
        except ValueError:
            # another form (Plackett–Luce's sum of rank-one terms, one per step; a mixture's logits: δ_jl(r_j − π_j) − r_j r_l + π_j π_l, rank two):
            # printed, with no structured kernels (emit.second_order.supported)
            continue
        if fisher is not None:
            n = _null_vector(forms["fisher"], ctx)
            if n is not None:
                null[pair] = _name(n, ctx)
        structure[pair] = named
    return structure, null


def _named(block: RankOne, ctx) -> RankOne:
    """The same block with softmax named; c·u_j·u_l = c'·softmax_j·softmax_l when u_j = exp(z_j)
    and c holds (Σ exp z)⁻², so the kernels evaluate it stably."""
    product = _name(block.scale * block.vector * block.vector.subs(j, l), ctx)
    return rank_one(KroneckerDelta(j, l) * _name(block.diagonal, ctx) + product)


def rank_one(expr) -> RankOne:
    """Split a (j, l) block into δ_jl·d_j + c·u_j·u_l; ValueError when it has another form."""
    delta = KroneckerDelta(j, l)
    diagonal, rest = [], []
    for term in Add.make_args(_expanded(expr) if expr.has(delta) else expr):
        factors = Mul.make_args(term)
        (diagonal if delta in factors else rest).append(Mul(*[f for f in factors if f != delta]))
    diagonal = Add(*diagonal)
    if diagonal.has(l):
        raise ValueError(f"the diagonal of {expr} depends on the second component")
    rest = Add(*rest)
    if rest == 0:
        return RankOne(diagonal, S.Zero, S.One)
    rest = rest.factor() if rest.is_Add else rest
    scale, u_j, u_l = [], [], []
    for f in Mul.make_args(rest):
        if f.has(j) and f.has(l):
            raise ValueError(f"{expr} is not a diagonal plus a rank-one term")
        (u_j if f.has(j) else u_l if f.has(l) else scale).append(f)
    u_j, u_l = Mul(*u_j), Mul(*u_l)
    if u_l.subs(l, j) != u_j:
        raise ValueError(f"{expr} is not symmetric in j and l")
    return RankOne(diagonal, Mul(*scale), u_j)


def _null_vector(block: RankOne, ctx):
    """n_j ∝ u_j/d_j when 1 + c Σ_m u_m²/d_m = 0 (then F n = 0), else None; factors free of j
    are dropped (the direction is what matters)."""
    if block.scale == 0:
        return None
    condition = 1 + block.scale * Sum((block.vector**2 / block.diagonal).subs(j, m), (m, 0, K - 1))
    if rewrite(condition, rules.ALGEBRA + rules.TIDY, ctx) != 0:
        return None
    n = rewrite(block.vector / block.diagonal, rules.ALGEBRA + rules.TIDY, ctx)
    return Mul(*[f for f in Mul.make_args(n) if f.has(j)])
