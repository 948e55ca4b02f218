"""Forms that keep their digits in floating point, for the kernels only.

The derivation keeps the paper's forms (e^η − 1, log(1 − p), log(w·e^a + …)); evaluated as
written they lose every digit where the terms cancel (η → 0) or overflow before they divide
(e^800/e^801).  Before a kernel is printed, :func:`stable` rewrites, anywhere in an expression:

* an Add that is a Laurent polynomial in one t = e^u (or b^e, = e^(e·log b)) and vanishes at
  t = 1, factored: each (t − 1) is expm1(u), so e^u − 1, 1 − e^(−u), e^u + e^(−u) − 2 =
  e^(−u)·expm1(u)², b^k − 1 are exact near u = 0;
* 1 − sigmoid(u) = sigmoid(−u), exact where sigmoid(u) rounds to 1;
* log(1 + a) = log1p(a), and log(1 − e^u) = log1mexp(u) (log(−expm1(u)) near u = 0);
* c·log(1 + t) + r·t/(1 + t) with r ≈ −c (:func:`log1p_pairs`: Student's t ∂/∂ν), as
  c·[log(1 + t) − t/(1 + t)] + (c + r)·t/(1 + t), the bracket −log1pmx(−y) at y = t/(1 + t) < ½;
* A·σ(−u) + B·σ(u)/softplus(u), where A + B is simpler than A and B apart (σ(−u)/s − σ(u)/s²,
  σ(−u)·s − σ(u): the Hessians of a softplus parametrization), as A·s·E(u) + (A + B)·σ(u)/s with
  E = log_softplus_curvature = (σ(−u)·s − σ(u))/s² (→ −1/2, evaluated without cancelling), so
  that σ(−u) − σ(u)/s = s·E keeps its −e^u/2 where both terms are 1 − O(e^u) (0 from u ≈ −37,
  1e-7 relative at u = −20); the poles of ψ_n(softplus(u)) the same way:
  σ(u)²·ψ₁(s) = σ(u)²·ψ₁(s + 1) + (σ(u)/s)², −σ(−u)·ψ(s) − σ(u)·ψ₁(s) = … + E(u), bounded where
  ψ_n(s) overflows and σ(u) underflows (u < −355), and σ(u)/s kept together in a product;
* c·a² − 2c·a·b + c·b² = c·(a − b)² for logarithms a, b;
* a quotient N/D^n, where D is a sum of terms c_k·e^(f_k), or log D: every e^(f_k) becomes
  e^(f_k − m) with m = max_k f_k (log D = m + log Σ c_k e^(f_k − m)), when N is homogeneous of
  degree n in the e^(f_k), so that the quotient is unchanged and nothing overflows: the
  finite-sum counterpart of the max-shifted softmax and log-sum-exp over categories;
* c·[log Γ(n) − Σ log Γ(a_k) + Σ a_k log y_k] with n = Σa_k (beta, Dirichlet; with log n! and log
  x_k!: binomial, multinomial; negative binomial), and −log Γ(a) + a log m − m (gamma, Poisson),
  whose terms of order a·log a cancel to O(log a) near the mode: where a is large, in Loader's
  saddle-point form, −bd0(a_k, m_k) and Stirling's remainders, each term as small as the value
  (:func:`_saddle_point`).

Each rewrite is an identity; the kernels' tests compare them with 50-digit references.
"""
from __future__ import annotations

from itertools import combinations

from sympy import (
    Abs, Add, And, Dummy, Piecewise, Integer, Max, Mul, Poly, PolynomialError, Rational, S, Sum, binomial, cancel, count_ops, exp, expand_log, expand_mul, factor,
    factorial, gcd, log, loggamma, pi, polygamma,
)
from sympy.codegen.cfunctions import expm1, log1p

from ..functions import (
    LogSumExp, Softmax, SoftmaxExcept, SumExcept, bd0, betaln, factorial_remainder, fms, gamma_difference, log1mexp, log1pmx,
    log_softplus, log_softplus_curvature, logfactorial, quotient, select, sigmoid, sigmoid_over_softplus, softplus, stirlerr, xlogy,
)


def bound_arguments(derivation) -> list:
    """The symbols of a derivation's real scalar arguments (a truncation's low and high), which
    :func:`offsets` writes relative to the parameters."""
    return [derivation.symbols[n] for n, c in derivation.family.arguments.items()
            if not c.integer and not c.event_dim and not c.assumptions.get("integer")]


def offsets(expr, bounds):
    """``expr`` with each sum in a bound a written through a − c (c another symbol, a parameter)
    where that has fewer terms: the expectations of a Fisher information come expanded, a³·R −
    3a²μ·R + 3aμ²·R − μ³·R, which cancels to (a − μ)³·R from terms 1e5 times larger where
    |a − μ| ≪ |a| (a truncation bound near the mean); written (a − μ)³·R it does not."""
    from .tidy import _shifted

    for bound in bounds:
        expr = _shifted(expr, bound)
    return expr


def stable(expr, parameters=(), unit_interval=(), sample=None, identities=None):
    """``expr`` with the cancelling and overflowing forms above replaced (bottom-up);
    ``parameters`` are the differentiated symbols (the rest is data: x, total_count),
    ``unit_interval`` those of them that lie in (0, 1), ``sample`` a categorical sample x,
    ``identities`` the family's equalities on the support ({Σ_i x_i: n})."""
    return _Stable(tuple(parameters), tuple(unit_interval), sample)(
        _saddle_point(log1p_pairs(_sigmoid_into_polygamma_sums(expr)), identities))


def log1p_pairs(expr, variable=None):
    """An Add's c·log(1 + t) + r·t/(1 + t) where c + r is simpler than r (they cancel: Student's t
    ∂/∂ν has −½·log(1 + w²/ν) + (ν + 1)/(2ν)·t/(1 + t), whose sum is O(t² + t/ν) from terms
    of O(t)) as c·G + (c + r)·y, y = t/(1 + t), G = log(1 + t) − y: G is −log1pmx(−y)
    (= t²/2 + … without cancellation) where y < ½, and the log as written above (no cancellation
    there, and log(1 + t) keeps its range where y rounds to 1).  ``variable`` (the sample's w),
    if given, must be absent from r; otherwise r must lack one of t's symbols."""
    if not expr.is_Add:
        return expr
    terms = list(expr.args)
    for i, term in enumerate(terms):
        logs = [f for f in Mul.make_args(term) if isinstance(f, log)]
        if len(logs) != 1:
            continue
        c = term / logs[0]
        t = logs[0].args[0] - 1
        if t.is_number or c.has(log) or (variable is not None and not t.has(variable)):
            continue
        for k, other in enumerate(terms):
            if k == i or not other.has(*t.free_symbols):
                continue
            r = cancel(other * (1 + t) / t)
            if r.has(log) or (variable is not None and r.has(variable)) or (variable is None and not r.free_symbols < t.free_symbols):
                continue
            rest = cancel(c + r)
            if rest != 0 and count_ops(rest) >= count_ops(r):
                continue
            y = cancel(t / (1 + t))
            g = Piecewise((-log1pmx(-y), y < S.Half), (logs[0] - y, True))
            kept = [a for n, a in enumerate(terms) if n not in (i, k)]
            return Add(*kept, c * g, rest * y)
    return expr


class _Stable:
    def __init__(self, parameters, unit_interval, sample=None):
        self.parameters = parameters
        self.unit_interval = unit_interval
        self.sample = sample

    def __call__(self, expr, in_sum=False):
        if not expr.args or expr.is_Atom:
            return expr
        args = [self(a, in_sum=expr.is_Add) for a in expr.args]
        if any(a is not b for a, b in zip(args, expr.args)):
            expr = expr.func(*args)
        if expr.is_Mul and not in_sum and expr.has(polygamma):
            # a product alone, σ(u)²·ψ₁(softplus(u)): its pole taken out as in a sum (in a sum,
            # the sum's own terms decide, where the poles of several terms cancel together)
            expr = _gamma_differences(expr)
        if expr.is_Add:
            if self.sample is not None:
                expr = _others_at(expr, self.sample)
                if not expr.is_Add:
                    return expr
            expr = _add(expr)
            expr = _fold_for_curvature(expr) if expr.is_Add else expr
            return self._bernstein(expr) if expr.is_Add else expr
        if isinstance(expr, log):
            if self.sample is not None and isinstance(expr.args[0], Softmax) and expr.args[0].at == self.sample:
                return _log_softmax_at(expr.args[0])
            return _log(expr)
        if expr.is_Mul:
            from ..second_order import _as_sigmoid_over_softplus, _over_softplus

            expr = _softplus_into_sum(expr)
            if not expr.is_Mul:
                return expr
            expr = _sigmoid_over_softplus_times_softplus(expr)
            if _over_softplus(expr):  # sigmoid(u)/softplus(u) whole again: it does not underflow
                expr = _as_sigmoid_over_softplus(expr)
            expr = self._horner_in_reciprocal(expr) if expr.is_Mul else expr
            return _shifted_quotient(expr) if expr.is_Mul else expr
        return expr

    def _horner_in_reciprocal(self, expr):
        """N(p)/p^k with N a polynomial in a parameter p of degree d ≤ k, k ≥ 2, as Horner's rule
        in q = 1/p: (η₁² − η₂)/(2η₂³) = ((η₁²q − 1)q)q/2.  η₂³ leaves float64 from |η₂| = 1e±103 while
        the value does not; the partial results of Horner's rule stay near the value."""
        for factor_ in Mul.make_args(expr):
            base, power = factor_.as_base_exp()
            if base not in self.parameters or not (power.is_Integer and power <= -2):
                continue
            rest = expr / factor_
            if not rest.has(base):
                continue
            try:
                polynomial = Poly(rest, base)
            except PolynomialError:
                continue
            k, coefficients = -int(power), polynomial.all_coeffs()  # highest degree first
            d = len(coefficients) - 1
            if d > k or any(c.has(base) for c in coefficients):
                continue
            q = 1 / base
            horner = coefficients[-1]
            for c in reversed(coefficients[:-1]):  # a_0 + q(a_1 + q(…)) written from the inside
                horner = Add(Mul(horner, q, evaluate=False), c, evaluate=False)
            out = Mul(horner, q ** (k - d), evaluate=False) if k > d else horner
            return out
        return expr

    def _bernstein(self, expr):
        """A polynomial in t ∈ (0, 1) (sigmoid(u), or a probability p),
        written in the Bernstein basis t^k (1 − t)^(d−k) with 1 − t = sigmoid(−u) (or 1 − p, exact
        near 1): x − n·sigmoid(u) = x·sigmoid(−u) − (n − x)·sigmoid(u) and p² − p = −p(1 − p)
        keep their digits where t rounds to 1, as they already do where t is near 0."""
        generators = [s for s in expr.atoms(sigmoid) if not s.args[0].could_extract_minus_sign()]
        generators += [-s for s in expr.atoms(sigmoid) if s.args[0].could_extract_minus_sign() and -s not in generators]
        generators += [p for p in self.unit_interval if expr.has(p)]
        for g in generators:  # each in turn: the result is a polynomial in the next one too
            expr = self._bernstein_in(expr, g)
        return expr

    def _bernstein_in(self, expr, g):
        if not expr.is_Add:
            return expr
        t = Dummy("t")
        if isinstance(g, sigmoid):
            complement = sigmoid(-g.args[0])
            body = expr.xreplace({g: t, complement: 1 - t})
        else:
            complement = 1 - g
            body = expr.xreplace({g: t})
        try:
            polynomial = Poly(body, t)
        except PolynomialError:
            return expr
        coefficients = polynomial.all_coeffs()[::-1]
        d = polynomial.degree()
        if d < 1:
            return expr
        terms = []
        for k in range(d + 1):
            beta = Add(*[binomial(k, i) / binomial(d, i) * coefficients[i] for i in range(k + 1)])
            if beta != 0:  # (its terms may cancel as a polynomial in an exponential)
                terms.append(_add(beta) * binomial(d, k) * g**k * complement ** (d - k))
        return Add(*terms)


# -- log Γ and log-factorial terms against a·log θ: Loader's saddle-point form --------------------

SADDLE_POINT = 100  # the size (the total n, or a lone component a) above which the form is taken


def _saddle_point(expr, identities=None):
    """``expr`` with each sum of log-gamma terms that cancels against its a·log θ terms taken in
    Loader's (2000) saddle-point form where its size is above SADDLE_POINT, and as derived
    elsewhere (a :class:`select`, which the numpy kernels evaluate piece by piece).  Write
    G_s(a) = log Γ(a + s): s = 0 for log Γ(a), s = 1 for log a! (a count, 0 included), and
    R_s(a) = G_s(a) − a log a + a: R_0(a) = stirlerr(a) − ½ log a + ½ log 2π, R_1(a) =
    factorial_remainder(a) = stirlerr(a) + ½ log(2πa), 0 at a = 0.  With the deviance bd0(a, m) =
    a log(a/m) + m − a (a log m − m = −bd0(a, m) + a log a − a),

        −G_s(a) + a log m − m = −bd0(a, m) − R_s(a),      G_s(n) − n log n + n = R_s(n),

    every term of the order of the value, where as derived the terms are of order a·log a and the
    value of order log a at the mode (the gamma's log-density at α = 1e20, x = α was 0 for
    −23.94; the binomial's at n = 1e15, x = n/2 −21.25 for −17.50).  Two shapes take it:

    * a total: c·[G_s(n) − Σ_k G_{s_k}(a_k) + Σ_k a_k log y_k] with n = Σ_k a_k (symbolically, or
      through the family's identities: Σ_i x_i = n), components written out or Σ_i over the
      categories, is c·[R_s(n) − Σ_k (bd0(a_k, n y_k) + R_{s_k}(a_k)) + n(Σ_k y_k − 1)], the last
      term 0 on its face for y and 1 − y, σ(z) and σ(−z), f_i/Σ_k f_k.  Beta and Dirichlet (s = 0),
      binomial and multinomial (s = 1: R's dbinom_raw), negative binomial (log Γ(r + x) − log Γ(r)
      − log x!: R's dnbinom).  Taken where n > SADDLE_POINT, at max(n, SADDLE_POINT) so that the
      piece not taken stays finite (the array-API kernels' where() computes both);
    * a component alone against its linear term: c·[−G_s(a) + a log m − m] = −c·[bd0(a, m) +
      R_s(a)]: the gamma (a = α, m = βx from α log β + α log x − βx, or the standardized w = βx),
      the Poisson (a = x, m = λ).  Taken where a > SADDLE_POINT, at max(a, SADDLE_POINT).

    log y is recognised as written: log y, log_softplus(u) (y = softplus u), −softplus(u)
    (y = σ(−u): a logit's log p), xlogy(a, y), −LogSumExp(f) (y = 1/Σe^f: n·LogSumExp is
    Σ_i x_i·LogSumExp on the support) and a linear a·u (y = e^u: log_rate, natural parameters),
    its coefficient being c·a plus terms free of a's symbols; the rest (the −1 of (α − 1) log x)
    stays as it is.  The deviation a − m, of the order of √a, is passed to bd0 without the
    rounding of m (_deviance, fms)."""
    if not expr.has(loggamma, logfactorial):
        return expr
    identities = dict(identities or {})
    return expr.replace(lambda e: e.is_Add and any(_gamma_term(t) is not None for t in e.args),
                        lambda e: _saddle_point_in(e, identities))


def _gamma_term(term):
    """(c, a, s, limits) for a term c·G_s(a) or c·Σ_i G_s(a(i)) (``limits`` those of the sum, else
    None), G_0 = log Γ and G_1 = log-factorial; None for any other term."""
    c, rest = term.as_coeff_Mul()
    limits = None
    if _category_sum(rest) is not None:
        rest, limits = rest.function, rest.limits[0]
    if isinstance(rest, loggamma):
        return c, rest.args[0], 0, limits
    if isinstance(rest, logfactorial):
        return c, rest.args[0], 1, limits
    return None


def _saddle_point_in(add, identities):
    terms = list(Add.make_args(add))
    gammas = [(t, *g) for t in terms if (g := _gamma_term(t)) is not None]
    signed = [g for g in gammas if g[1].is_positive or g[1].is_negative]
    for total in signed:
        t, c, n, _, limits = total
        if limits is not None:
            continue
        parts = [g for g in signed if g[0] is not t and g[1] == -c]
        singles = [g for g in parts if g[4] is None]
        for size in range(len(singles), 1, -1) if len(singles) <= 8 else ():  # (2^8 subsets at most)
            for subset in combinations(singles, size):
                if _same(Add(*[g[2] for g in subset]), n, identities):
                    found = _with_total(terms, total, subset)
                    if found is not None:
                        return found
        for g in parts:
            if g[4] is not None and _same(Sum(g[2], g[4]), n, identities):
                found = _with_total_summed(terms, total, g)
                if found is not None:
                    return found
    for g in signed:
        if g[4] is None:
            found = _alone(terms, g, identities)
            if found is not None:
                return found
    return add


_INDEX = Dummy("k", integer=True, nonnegative=True)


def _opened(e):
    """``e`` with each Σ_{i=0}^{K−1} g(i) written as Σ over the terms of g that depend on i (at one
    common index) plus K·(the others): K + Σ η_i and Σ (η_i + 1) compare equal."""
    def split(s):
        (i, lower, upper), = s.limits
        out = []
        for term in Add.make_args(expand_mul(s.function)):
            out.append(Sum(term.xreplace({i: _INDEX}), (_INDEX, lower, upper)) if term.has(i) else term * (upper - lower + 1))
        return Add(*out)

    return e.replace(lambda a: isinstance(a, Sum) and len(a.limits) == 1, split)


def _same(a, b, identities):
    """a = b, sums compared term by term, on the support (the family's identities applied)."""
    difference = expand_mul(_opened(a) - _opened(b))
    for lhs, rhs in identities.items():
        difference = expand_mul(difference.xreplace({_opened(lhs): _opened(rhs)}))
    return difference == 0


_LOG_LIKE = (log, log_softplus, softplus, xlogy, LogSumExp)


def _log_like(piece, exclude=frozenset()):
    """(q, L, y) with ``piece`` = q·L and L = log y, for a piece with one logarithm in any of its
    written forms (log y; log_softplus(u), y = softplus(u); −softplus(u), y = σ(−u); xlogy(q, y);
    LogSumExp(f), y = Σ_i e^f) free of the symbols ``exclude``, else None."""
    found = [f for f in Mul.make_args(piece)
             if isinstance(f, _LOG_LIKE) and not (f.args[1] if isinstance(f, xlogy) else f).free_symbols & exclude]
    if len(found) != 1:
        return None
    f = found[0]
    q = piece / f
    if isinstance(f, log):
        return q, f, f.args[0]
    if isinstance(f, log_softplus):
        return q, f, softplus(f.args[0])
    if isinstance(f, softplus):
        return -q, -f, sigmoid(-f.args[0])
    if isinstance(f, xlogy):
        return q * f.args[0], log(f.args[1]), f.args[1]
    k = Dummy("k", integer=True, nonnegative=True)
    return q, f, Sum(exp(f.body.xreplace({f.index: k})), (k, 0, f.size - 1))


def _symbols_of(a, index=None):
    """The symbols a coefficient is matched on: a's, without the category index of a sum."""
    return a.free_symbols - {index}


def _pieces(terms):
    """[(term, piece)]: the pieces of each expanded term (xlogy kept whole)."""
    return [(t, p) for t in terms for p in Add.make_args(expand_mul(t))]


def _logs_of(pieces, c, a, taken=(), index=None):
    """([(L, y)], carriers) for the component ``a`` with coefficient −c: the logs L = log y whose
    total coefficient over ``pieces`` is c·a plus terms free of a's symbols (y free of them, and
    holding ``index`` if given), and the linear pieces c·a·u (L = u, y = e^u); ``carriers`` the
    terms holding them."""
    symbols = _symbols_of(a, index)
    totals, holders, found, carriers = {}, {}, [], set()
    for term, piece in pieces:
        like = _log_like(piece, symbols)
        if like is not None:
            q, L, y = like
            totals[L] = (totals.get(L, (0, y))[0] + q, y)
            holders.setdefault(L, []).append(term)
            continue
        u = piece / (c * a)
        if (u.free_symbols and not u.free_symbols & symbols and not u.has(*_LOG_LIKE) and u not in taken
                and (index is None or u.has(index))):
            found.append((u, exp(u)))
            carriers.add(term)
    for L, (q, y) in totals.items():
        if L in taken or y.free_symbols & symbols or (index is not None and not y.has(index)):
            continue
        if not expand_mul(q - c * a).free_symbols & symbols:
            found.append((L, y))
            carriers.update(holders[L])
    return found, carriers


def _as_logs(e):
    """``e`` with xlogy(a, y) written a·log y: the form's rest (xlogy's 0·log 0 is its direct form's)."""
    return e.replace(lambda f: isinstance(f, xlogy), lambda f: f.args[0] * log(f.args[1]))


def _log_of(a):
    return log_softplus(a.args[0]) if isinstance(a, softplus) else log(a)


def _remainder(a, s):
    """G_s(a) − a log a + a: stirlerr(a) − ½ log a + ½ log 2π for log Γ(a); for log a!,
    factorial_remainder(a) = stirlerr(a) + ½ log(2πa), 0 at a count of 0."""
    if s == 1:
        return factorial_remainder(a)
    return stirlerr(a) - _log_of(a) / 2 + log(2 * pi) / 2


def _deviance(a, n, y, counts=False):
    """bd0(a, n·y) with its difference a − n·y written as n·(a/n − y): p = a/n, the component's
    mean, is one division (exact for a = b: a quotient, which CSE does not split into a·(1/n)),
    and a − n·y keeps its digits where it is of the order of √a.  A y with a constant term
    (1 − x) is taken as it stands only where it is computed exactly (x ≥ ½, Sterbenz); below, 1 − x
    rounds by ε/4, n·ε/4 would swamp √b for b ≪ n, and b − n(1 − x) is written n·(x − a/n), with
    the other component's mean as it stands in its own difference.  Where the components are
    counts (``counts``: integers, exact as n is), a − n·y instead, the product taken exactly
    (fms): exact wherever n·y is, at p = ½ or ¼, where a/n rarely is."""
    constant, rest = y.as_coeff_Add()
    if counts:  # a − n·y with n·y exact: a − n = −x symbolically for y = 1 − p
        return bd0(a, n * y, fms(expand_mul(a - n * constant), n, rest))
    direct = n * (quotient(a, n) - y)
    if constant == 0:
        return bd0(a, n * y, direct)
    complement = n * (-quotient(expand_mul(n * constant - a), n) - rest)
    return bd0(a, n * y, Piecewise((direct, Abs(rest) >= Abs(constant) / 2), (complement, True)))


def _balance(n, ys, index=None, upper=None):
    """n(Σ_k y_k − 1), 0 where it is 0 on its face: y and 1 − y, σ(u) and σ(−u), f_i/Σ_k f_k."""
    if index is None:
        total = Add(*ys).replace(lambda e: isinstance(e, sigmoid) and e.args[0].could_extract_minus_sign(),
                                 lambda e: 1 - sigmoid(-e.args[0]))
        return 0 if expand_mul(total - 1) == 0 else n * (Add(*ys) - 1)
    y, = ys
    for f in Mul.make_args(y):
        base, power = f.as_base_exp()
        if power == -1 and _category_sum(base) is not None and base.limits[0][2] == upper:
            g, k = _category_sum(base)
            if expand_mul(y * base - g.xreplace({k: index})) == 0:
                return 0
    return n * (Sum(y, (index, 0, upper)) - 1)


def _normalized(y, index, upper):
    """y = e^f(i)/Σ_k e^f(k) as the softmax it is (max-shifted in the kernels), else y."""
    for f in Mul.make_args(y):
        base, power = f.as_base_exp()
        if power == -1 and _category_sum(base) is not None and base.limits[0][2] == upper:
            g, k = _category_sum(base)
            if isinstance(g, exp) and expand_mul(y * base - g.xreplace({k: index})) == 0:
                return Softmax(g.args[0], k, upper + 1, index)
    return y


def _with_total(terms, total, components):
    """c·[G_s(n) − Σ_k G_{s_k}(a_k) + Σ_k a_k log y_k], components written out."""
    t_total, c, n, s_n, _ = total
    used = {t_total, *(g[0] for g in components)}
    pieces = _pieces([t for t in terms if t not in used and _gamma_term(t) is None])
    matched, carriers, taken = [], set(), []
    for _, _, a, s, _ in components:
        logs, held = _logs_of(pieces, c, a, taken)
        if not logs:
            return None
        taken += [L for L, _ in logs]
        carriers |= held
        matched.append((a, s, logs))
    ys = [Mul(*[y for _, y in logs]) for _, _, logs in matched]
    counts = any(s == 1 for _, s, _ in matched)
    near = Add(*[-_deviance(a, n, y, counts) - _remainder(a, s) for (a, s, _), y in zip(matched, ys)],
               _remainder(n, s_n), _balance(n, ys))
    consumed = [t for t in terms if t in carriers]
    rest = expand_mul(_as_logs(Add(*consumed)) - c * Add(*[a * Add(*[L for L, _ in logs]) for a, _, logs in matched]))
    direct = Add(*[t for t in terms if t in used or t in carriers])
    others = [t for t in terms if t not in used and t not in carriers]
    return Add(*others, select(n > SADDLE_POINT, c * _clipped(near, n) + rest, direct))


def _with_total_summed(terms, total, gammas):
    """c·[G_s(n) − Σ_i G_s(a(i)) + Σ_i a(i) log y(i)], the components a sum over categories;
    a term c·w·n·L (w a number, L free of i) is Σ_i c·a(i)·w·L where n = Σ_i a(i)."""
    t_total, c, n, s_n, _ = total
    t_gammas, _, a, s, (i, _, upper) = gammas
    used = {t_total, t_gammas}
    pieces, outer = [], []
    for t in terms:
        coefficient, rest = t.as_coeff_Mul()
        if t in used:
            continue
        if _category_sum(rest) is not None and rest.limits[0][1:] == (0, upper):
            body = coefficient * rest.function.xreplace({rest.limits[0][0]: i})
            pieces += [(t, p) for p in Add.make_args(expand_mul(body))]
            continue
        like = _log_like(t)
        if like is not None and i not in like[1].free_symbols:
            w = like[0] / (c * n)
            if w.is_number and w != 0:
                outer.append((t, w, like[1], like[2]))
    logs, carriers = _logs_of(pieces, c, a, index=i)
    if not logs:
        return None
    y = Mul(*[y for _, y in logs], *[y**w for _, w, _, y in outer])
    balance = _balance(n, [y], i, upper)
    y = _normalized(y, i, upper)
    bodies = Add(*[coefficient * rest.function.xreplace({rest.limits[0][0]: i})
                   for coefficient, rest in (t.as_coeff_Mul() for t in terms if t in carriers)])
    rest = expand_mul(_as_logs(bodies) - c * a * Add(*[L for L, _ in logs]))
    body = c * (-_deviance(a, n, y, s == 1) - _remainder(a, s)) + rest
    near = Sum(body, (i, 0, upper)) + c * (_remainder(n, s_n) + balance)
    consumed = carriers | {t for t, _, _, _ in outer}
    direct = Add(*[t for t in terms if t in used or t in consumed])
    others = [t for t in terms if t not in used and t not in consumed]
    return Add(*others, select(n > SADDLE_POINT, _clipped(near, n), direct))


def _alone(terms, gamma, identities):
    """c·[−G_s(a) + a log m − m]: a component against its linear term −c·m (as written: the
    standardized w = βx that the kernel computes once)."""
    t_gamma, coefficient, a, s, _ = gamma
    c = -coefficient
    others = [t for t in terms if t is not t_gamma and _gamma_term(t) is None]
    logs, carriers = _logs_of(_pieces(others), c, a)
    if not logs:
        return None
    m = Mul(*[y for _, y in logs])
    linear = next((t for t in others if t not in carriers and _same(t, -c * m, identities)), None)
    if linear is None:
        return None
    ys = [y for _, y in logs]
    deviation = fms(a, ys[0], Mul(*ys[1:])) if len(ys) > 1 else a - ys[0]  # α − βx with βx exact
    m = -linear / c
    near = c * (-bd0(a, m, deviation) - _remainder(a, s))
    rest = expand_mul(_as_logs(Add(*carriers)) - c * a * Add(*[L for L, _ in logs]))
    direct = Add(t_gamma, linear, *carriers)
    kept = [t for t in others if t is not linear and t not in carriers]
    return Add(*kept, select(a > SADDLE_POINT, _clipped(near, a) + rest, direct))


def _clipped(form, n):
    """The saddle-point form at max(n, SADDLE_POINT), which is n where it is taken: a where()
    computes both pieces, and n·x_k would underflow to 0 at n = 1e-150, x = 1e-300.  (n is
    replaced where it stands whole, after SymPy has simplified b − (a + b) to −a.)"""
    return form.xreplace({n: Max(n, SADDLE_POINT)})


# -- the sampled category against all of them -----------------------------------------------

def _others_at(expr, x):
    """Where one category x holds almost all of a sum, Σ_i f(i) − f(x), 1 − softmax(f)_x and
    log f(x) − log Σ_i f(i) (= log π_x) lose every digit of the other categories' share; they are
    written through that share, Σ_{i≠x} f(i) (SumExcept), which the kernels add up themselves."""
    terms = list(Add.make_args(expr))
    for term in terms:
        for factor_ in Mul.make_args(term):
            if isinstance(factor_, Softmax) and factor_.at == x:  # c − c·softmax_x
                c = -term / factor_
                if c in terms:
                    rest = [t for t in terms if t is not term and t != c]
                    return Add(*rest, c * SoftmaxExcept(*factor_.args))
            if isinstance(factor_, LogSumExp):  # c·f(x) − c·log Σ e^f = c·log softmax_x
                c = -term / factor_
                at_x = c * factor_.body.subs(factor_.index, x)
                if at_x in terms:
                    rest = [t for t in terms if t is not term and t != at_x]
                    return Add(*rest, c * _log_softmax_at(Softmax(*factor_.args, x)))
            found = _category_sum(factor_)
            if found is not None:  # c·Σ_i f(i) − c·f(x)
                c = term / factor_
                f, i = found
                at_x = c * f.subs(i, x)
                if -at_x in terms:
                    rest = [t for t in terms if t is not term and t != -at_x]
                    return Add(*rest, c * SumExcept(f, i, K_of(factor_), x))
                # c·Σ_i softmax_i·h(i) − c·h(x) = c·Σ_i softmax_i·(h(i) − h(x)): the softmax mean
                # minus the sampled value (∂/∂τ of logits z/τ) is 0 where x dominates, yet
                # −1e-211 is representable; the term at x is exactly 0, the others keep their digits
                weights = [g for g in Mul.make_args(f) if isinstance(g, Softmax) and g.at == i]
                if len(weights) == 1:
                    h = f / weights[0]
                    at_x = c * h.subs(i, x)
                    if -at_x in terms and h.has(i):
                        rest = [t for t in terms if t is not term and t != -at_x]
                        return Add(*rest, c * Sum(weights[0] * (h - h.subs(i, x)), factor_.limits[0]))
            if isinstance(factor_, log) and isinstance(factor_.args[0], Sum):  # log f(x) − log Σ f
                f, i = _category_sum(factor_.args[0]) or (None, None)
                if f is None:
                    continue
                c = -term / factor_
                # log f(x) as the terms show it: log(m_x·p_x) is log m_x + log p_x (a mask m > 0)
                at_x = Add.make_args(expand_mul(c * expand_log(log(f.subs(i, x)))))
                if all(t in terms for t in at_x):
                    rest = [t for t in terms if t is not term and t not in at_x]
                    return Add(*rest, c * _log_share(f, i, K_of(factor_.args[0]), x))
    return expr


def K_of(summed):
    return summed.limits[0][2] + 1


def _category_sum(node):
    if isinstance(node, Sum) and len(node.limits) == 1 and node.limits[0][1] == 0:
        return node.function, node.limits[0][0]
    return None


def _log_share(f, i, size, x):
    """log(f(x)/Σ_i f(i)): log1p(−others/Σ) where x holds most of the sum, the logs' difference
    elsewhere (where they differ by more than log 2 and keep their digits)."""
    total = Sum(f, (i, 0, size - 1))
    others = SumExcept(f, i, size, x)
    return Piecewise((log1p(-others / total), others < f.subs(i, x)), (log(f.subs(i, x)) - log(total), True))


def _log_softmax_at(softmax):
    """log softmax(f)_x: log1p(−(1 − softmax_x)) where x dominates, f(x) − log Σ e^f elsewhere."""
    f, i, size, x = softmax.args
    others = SoftmaxExcept(f, i, size, x)
    return Piecewise((log1p(-others), others < S.Half), (f.subs(i, x) - LogSumExp(f, i, size), True))


# -- e^u − 1 and friends ----------------------------------------------------------------------

def _exponent(factor_):
    """u where ``factor_`` is e^u or b^e (= e^(e log b), b > 0, e not a number), else None."""
    if isinstance(factor_, exp):
        return factor_.args[0]
    if factor_.is_Pow and not factor_.exp.is_number and factor_.base.is_positive:
        return factor_.exp * log(factor_.base)
    return None


def _terms(add):
    """[(coefficient, exponent or 0)] with at most one exponential factor per term."""
    out = []
    for term in Add.make_args(add):
        found = [f for f in Mul.make_args(term) if _exponent(f) is not None]
        if len(found) > 1:
            return None
        if found:
            out.append((term / found[0], _exponent(found[0])))
        else:
            out.append((term, S.Zero))
    return out


def _powers_of(add, unit):
    """[(coefficient, n)]: each term as coefficient·e^(n·unit) with n rational, exponentials of
    other arguments left in the coefficient; None if a term has e^(a·unit) with a irrational."""
    out = []
    for term in Add.make_args(add):
        n, coefficient = S.Zero, []
        for f in Mul.make_args(term):
            u = _exponent(f)
            ratio = (u / unit) if u is not None else None
            if ratio is not None and ratio.is_Rational:
                n += ratio
            elif ratio is not None and ratio.is_number:
                return None
            else:
                coefficient.append(f)
        out.append((Mul(*coefficient), n))
    return out


def _special(term):
    """(coefficient, function) for a term c·ψ_n(A) or c·log Γ(A), else None."""
    found = [f for f in Mul.make_args(term) if isinstance(f, (polygamma, loggamma))]
    if len(found) != 1:
        return None
    return term / found[0], found[0]


def _order(f):
    return -1 if isinstance(f, loggamma) else f.args[0]


def _pole(n, b):
    """The pole of ψ_n at 0: ψ_n(b) = ψ_n(b + 1) + (−1)^(n+1) n!/b^(n+1)."""
    return (-1) ** (n + 1) * factorial(n) / b ** (n + 1)


def _gamma_differences(expr):
    """Sums of c·ψ_n(A) (and c·log Γ(A)) written so that neither of their cancellations costs digits:

    * a pair c·ψ_n(b + d) − c·ψ_n(b) with d = A − B simpler than A is c·gamma_difference(n, b, d,
      A): ψ(a + b) − ψ(a) is 0 in floating point for b < 1e-16·a although it is b·ψ₁(a);
    * terms at one argument b whose poles at b = 0 cancel (−ψ(b) − b·ψ₁(b) ≈ 1/b − 1/b) are
      taken at b + 1 (ψ_n(b) = ψ_n(b + 1) + pole), pairs included (gamma_difference shifted), and
      the poles add up symbolically to a regular remainder;
    * log Γ(b) + log Γ(d) − log Γ(b + d) is betaln(b, d)."""
    terms = list(Add.make_args(expr))
    specials = {t: _special(t) for t in terms}
    pairs, used = [], set()
    for first in terms:
        one = specials[first]
        if one is None or first in used:
            continue
        for second in terms:
            two = specials[second] if second is not first and second not in used else None
            if two is None or type(one[1]) is not type(two[1]) or _order(one[1]) != _order(two[1]):
                continue
            if (one[0] + two[0]).expand() != 0:
                continue
            big, small = one[1].args[-1], two[1].args[-1]
            d = (big - small).expand()
            if d == 0 or d.has(Sum) or count_ops(d) >= count_ops(big):
                continue
            if isinstance(one[1], loggamma):
                third = next((t for t in terms if t not in used and t is not first and t is not second and specials[t] is not None
                              and isinstance(specials[t][1], loggamma) and (specials[t][0] - two[0]).expand() == 0
                              and (specials[t][1].args[0] - d).expand() == 0), None)
                if third is not None:
                    used |= {first, second, third}
                    pairs.append(("betaln", -one[0], small, d, big))
                    break
            used |= {first, second}
            pairs.append((_order(one[1]), one[0], small, d, big))
            break
    # poles: every ψ_n(b) taken alone (−c) or as the subtracted half of a pair (−c)
    poles: dict = {}
    for t in terms:
        if t not in used and specials[t] is not None and isinstance(specials[t][1], polygamma):
            c, f = specials[t]
            poles.setdefault(f.args[1], []).append(c * _pole(f.args[0], f.args[1]))
    for n, c, b, d, a in pairs:
        if n != "betaln" and n >= 0:
            poles.setdefault(b, []).append(-c * _pole(n, b))
    shift = {}
    for b, parts in poles.items():
        # b as one symbol while the poles add up: cancel() expands a denominator (s + 1)², which
        # would then no longer show the b = s + 1 it vanishes with
        z = Dummy("b")
        regular = cancel(Add(*parts).xreplace({b: z}))
        if len(parts) > 1 and not regular.as_numer_denom()[1].has(z):
            shift[b] = regular.xreplace({z: b})
        elif isinstance(b, softplus):
            regular = _softplus_poles(parts, b)
            if regular is not None:
                shift[b] = regular
    if not pairs and not shift:
        return expr
    def written(shifted):
        out = []
        for t in terms:
            if t in used:
                continue
            if specials[t] is not None and isinstance(specials[t][1], polygamma) and specials[t][1].args[1] in shifted:
                c, f = specials[t]
                out.append(c * polygamma(f.args[0], f.args[1] + 1))
            else:
                out.append(t)
        for n, c, b, d, a in pairs:
            # only ψ_n pairs are shifted: their poles were added up above; a log Γ pair's "pole"
            # log Γ(b) − log Γ(b + 1) = −log b was not, and shifting it alone lost that term
            # (the Student-t entropy at ν < 2 was off by 2 log(ν/2))
            out.append(c * (betaln(b, d) if n == "betaln" else gamma_difference(n, b, d, a, int(b in shifted and bool(n >= 0)))))
        return Add(*out, *[shift[b] for b in shifted])

    # with a pair at b, the shift pays only near the pole and away from the pair's Taylor
    # regime: ψ₁(α+β) − ψ₁(β) for α ≪ β ~ 1 is tiny, and 1/β² added and taken back would drown it
    always = {b for b in shift if not any(p[2] == b for p in pairs if p[0] != "betaln")}
    chosen = next((b for b in shift if b not in always), None)
    if chosen is None:
        return written(always)
    d = next(p[3] for p in pairs if p[2] == chosen and p[0] != "betaln")
    near_pole = And(Abs(d) > Rational(1, 1000) * Abs(chosen), Abs(chosen) < 1)
    return Piecewise((written(always | {chosen}), near_pole), (written(always), True))


def _sigmoid_into_polygamma_sums(expr):
    """(… + c·ψ_n(softplus(u) + …) + …)·sigmoid(u)^k with sigmoid(u)^k taken into the sum, whose
    terms then carry it to their poles: σ(u)²·(ψ₁(s) − ψ₁(s + d)) has the pole σ(u)²/s² =
    sigmoid_over_softplus(u)², bounded as u → −∞, where ψ₁(s) overflows and σ(u)² underflows."""
    def applies(e):
        if not e.is_Mul:
            return False
        sums = [f for f in e.args if f.is_Add and f.has(polygamma)]
        return len(sums) == 1 and bool(_sigmoid_powers(e, sums[0]))

    def distribute(e):
        (total,) = [f for f in e.args if f.is_Add and f.has(polygamma)]
        powers = _sigmoid_powers(e, total)
        factor_ = Mul(*powers)
        rest = Mul(*[f for f in e.args if f is not total and f not in powers])
        return rest * Add(*[t * factor_ for t in total.args])

    return expr.replace(applies, distribute)


def _sigmoid_powers(product, total):
    """The factors sigmoid(u)^k of ``product`` whose softplus(u) is in a polygamma of ``total``."""
    arguments = {a for f in total.atoms(polygamma) for a in (s_.args[0] for s_ in f.args[1].atoms(softplus))}
    out = []
    for f in product.args:
        base, power = f.as_base_exp()
        if isinstance(base, sigmoid) and base.args[0] in arguments and power.is_Integer and power > 0:
            out.append(f)
    return out


def _softplus_poles(parts, b):
    """The poles c·(−1)^(n+1) n!/b^(n+1) at b = softplus(u) written without b in a denominator,
    or None: σ(−u)/s − σ(u)/s² (−σ(−u)·ψ(s) − σ(u)·ψ₁(s), a Gamma or Dirichlet Hessian) is
    log_softplus_curvature(u), and a single σ(u)²/s² (σ(u)²·ψ₁(s), a Fisher information) is
    sigmoid_over_softplus(u)²: bounded as u → −∞, where ψ_n(s) overflows and σ(u) underflows."""
    total = Add(*[_softplus_tidy(p) for p in parts])
    total = _softplus_curvature(total) if total.is_Add else total
    total = Add(*[_softplus_tidy(t) for t in Add.make_args(total)])
    if any(term.as_numer_denom()[1].has(b) for term in Add.make_args(total)):
        return None
    return total


def _add(expr):
    """Each exponential argument u of the terms in turn: the sum as a polynomial in t = e^u."""
    expr = _gamma_differences(expr) if expr.has(polygamma, loggamma) else expr
    if not expr.is_Add:
        return expr
    expr = _sigmoid_complement(expr)
    expr = _squares(expr)
    if not expr.is_Add:
        return expr
    units = []
    for term in Add.make_args(expr):
        units += [u for u in (_exponent(f) for f in Mul.make_args(term)) if u is not None and u not in units]
    for unit in units:
        if not expr.is_Add:
            break
        expr = _in_powers_of(expr, unit)
    # after the powers: σ(u)·s·(e^v − 1) − s·(e^v − 1)·σ(−u) is (e^v − 1)·s²·E(u) once e^v − 1 is one factor
    return _softplus_curvature(expr) if expr.is_Add else expr


def _in_powers_of(expr, unit):
    powers = _powers_of(expr, unit)
    if powers is None or all(n == 0 for _, n in powers):
        return expr
    step = Integer(1)
    for q in [Rational(n).q for _, n in powers]:
        step = step * q / gcd(step, q)
    if step != 1:  # t = e^(unit/step): integer powers
        unit = unit / step
        powers = [(c, n * step) for c, n in powers]
    # one numeric polynomial in t per monomial m of the coefficients (x·e^u − x + 1/k is
    # x·(e^u − 1) + 1/k): each that vanishes at t = 1 is factored, the others stay as they are
    groups: dict = {}
    for coefficient, n in powers:
        for part in Add.make_args(expand_mul(coefficient)):
            number, monomial = part.as_coeff_Mul()
            groups.setdefault(monomial, []).append((number, n))
    t = Dummy("t")
    out, repaired = [], False
    for monomial, members in groups.items():
        lowest = min(n for _, n in members)
        polynomial = Add(*[c * t ** (n - lowest) for c, n in members])
        if len(members) > 1 and polynomial.subs(t, 1) == 0:
            factored = factor(polynomial, t)
            out.append(monomial * exp(unit * lowest) * Mul(*[_factor_in_t(f, t, unit) for f in Mul.make_args(factored)]))
            repaired = True
        else:
            out.append(monomial * Add(*[c * exp(unit * n) for c, n in members]))
    return Add(*out) if repaired else expr


def _factor_in_t(f, t, unit):
    """A factor of the polynomial in t with t = e^unit; (t − 1)^k becomes expm1(unit)^k."""
    base, power = f.as_base_exp()
    if base.has(t):
        if (base - (t - 1)).expand() == 0:
            return expm1(unit) ** power
        if (base - (1 - t)).expand() == 0:
            return (-expm1(unit)) ** power
    return f.subs(t, exp(unit))


def _squares(expr):
    """c·a² − 2c·a·b + c·b² = c·(a − b)² for logarithms a, b: a Weibull Hessian in its
    concentration holds −z·(log x − log λ)² expanded, each term 1e5 times the value at
    x ≈ λ ≈ 1e-150 (log x − log λ alone loses only 345/log(x/λ) ulp)."""
    logs = sorted({f for t in Add.make_args(expr) for f in (g.as_base_exp()[0] for g in Mul.make_args(t))
                   if isinstance(f, (log, log_softplus))}, key=str)
    for a, b in combinations(logs, 2):
        groups = {(2, 0): [], (1, 1): [], (0, 2): []}
        for term in Add.make_args(expr):
            powers = dict(g.as_base_exp() for g in Mul.make_args(term))
            key = (powers.get(a, 0), powers.get(b, 0))
            if key in groups:
                groups[key].append(term)
        if not all(groups.values()):
            continue
        aa, ab, bb = (Add(*groups[k]) / m for k, m in (((2, 0), a**2), ((1, 1), a * b), ((0, 2), b**2)))
        if aa.has(a, b) or ab.has(a, b) or bb.has(a, b) or cancel(ab + 2 * aa) != 0 or cancel(bb - aa) != 0:
            continue
        used = set(groups[(2, 0)] + groups[(1, 1)] + groups[(0, 2)])
        expr = Add(*[t for t in Add.make_args(expr) if t not in used], aa * (a - b) ** 2)
        if not expr.is_Add:
            break
    return expr


def _sigmoid_complement(expr):
    """c − c·sigmoid(u) = c·sigmoid(−u): 1 − sigmoid(u) is 0 in floating point for u > 37.  Every
    such pair of the sum (s − σ(u)·s and z·σ(u)·s − z·s in a Weibull Hessian), not only the first."""
    terms = list(Add.make_args(expr))
    out, changed = [], False
    while terms:
        term = terms.pop(0)
        found = [f for f in Mul.make_args(term) if isinstance(f, sigmoid)]
        coefficient = -term / found[0] if len(found) == 1 else None
        if coefficient is not None and coefficient in terms:
            terms.remove(coefficient)
            out.append(coefficient * sigmoid(-found[0].args[0]))
            changed = True
            continue
        if coefficient is not None and coefficient in out:  # (the coefficient came first)
            out.remove(coefficient)
            out.append(coefficient * sigmoid(-found[0].args[0]))
            changed = True
            continue
        out.append(term)
    return Add(*out) if changed else expr


def _softplus_curvature(expr):
    """A·sigmoid(−u) + B·sigmoid_over_softplus(u) where A + B is simpler than A and B apart:
    A·softplus(u)·E(u) + (A + B)·sigmoid_over_softplus(u), E = log_softplus_curvature, since
    sigmoid(−u) = softplus(u)·E(u) + sigmoid(u)/softplus(u).  As u → −∞ both sigmoid(−u) and
    sigmoid(u)/softplus(u) are 1 − O(e^u): σ(−u) − σ(u)/softplus(u) (Hessians of a softplus
    parametrization, ψ(softplus(u)) against ψ₁(softplus(u))) is 0 in floating point below u ≈ −37
    where it is −e^u/2, and E keeps it.  Monomials X^a·Q^b (X = sigmoid(−u), Q = sigmoid(u)/
    softplus(u), sigmoid(u) read as Q·softplus(u)) are paired with X^(a−1)·Q^(b+1): σ(−u)·s − σ(u)
    is s²·E, σ(−u)/s − σ(u)/s² is E."""
    for u in _curvature_arguments(expr):
        rewritten = _curvature_in(expr, u)
        if rewritten is not None:
            expr = rewritten
            if not expr.is_Add:
                break
    return expr


def _fold_for_curvature(expr):
    """Terms Piecewise((a_k, c), (b_k, True)) under one condition c (the tail forms of a
    location–scale Hessian, one per term) as one Piecewise((Σ a_k + rest, c), (Σ b_k + rest, True)),
    where that lets σ(−u) and sigmoid_over_softplus(u) of different terms meet (_softplus_curvature);
    the sum as it is otherwise."""
    pieces = [t for t in expr.args if isinstance(t, Piecewise)]
    if len(pieces) < 2 or not expr.has(sigmoid) or len({tuple(c for _, c in p.args) for p in pieces}) != 1:
        return expr
    rest = Add(*[t for t in expr.args if not isinstance(t, Piecewise)])
    branches, changed = [], False
    for k, (_, condition) in enumerate(pieces[0].args):
        value = Add(*[p.args[k][0] for p in pieces], rest)
        rewritten = _add(value) if value.is_Add else value
        changed |= rewritten.count(log_softplus_curvature) > value.count(log_softplus_curvature)
        branches.append((rewritten, condition))
    return Piecewise(*branches) if changed else expr


def _curvature_arguments(expr):
    """The u of each sigmoid(−u) in ``expr`` that also holds softplus(u) or sigmoid_over_softplus(u)."""
    out = []
    for s_ in expr.atoms(sigmoid):
        u = -s_.args[0]
        if u not in out and (expr.has(sigmoid_over_softplus(u)) or expr.has(softplus(u))):
            out.append(u)
    return out


def _curvature_in(expr, u):
    """``expr`` with the pairs of :func:`_softplus_curvature` in u rewritten, or None."""
    X, Y, S, Q = sigmoid(-u), sigmoid(u), softplus(u), sigmoid_over_softplus(u)
    terms = list(Add.make_args(expr))
    parts = []  # (a, b, rest) with term = X^a·Q^b·rest
    for term in terms:
        a = b = 0
        rest = []
        for f in Mul.make_args(term.xreplace({Y: Q * S})):
            base, power = f.as_base_exp()
            if base == X and power.is_Integer and power > 0:
                a += int(power)
            elif base == Q and power.is_Integer and power > 0:
                b += int(power)
            else:
                rest.append(f)
        parts.append((a, b, Mul(*rest)))
    complements, quotients = {}, {}
    for i, (a, b, rest) in enumerate(parts):
        if a >= 1:
            complements.setdefault((a - 1, b), []).append(i)
        if b >= 1:
            quotients.setdefault((a, b - 1), []).append(i)
    used, new = set(), []

    def combine(key, first, second, exact):
        A = Add(*[parts[i][2] for i in first])
        B = Add(*[parts[i][2] for i in second])
        if count_ops(A) + count_ops(B) > 300 or A.has(X, Q) or B.has(X, Q):
            return
        if exact:  # a pair whose coefficients are opposite: expand_mul shows it, cancel() is not
            # needed (it cost 0.04 s a pair, and the pairs grow as the square of the terms)
            if expand_mul(A + B) == 0:
                used.update(first, second)
                m = X ** key[0] * Q ** key[1]
                new.append(m * A * S * log_softplus_curvature(u))
            return
        C = _cancel_keeping_reciprocals(A + B)
        if len(C.atoms(exp)) > len((A + B).atoms(exp)):
            return  # e^(−w)·(e^w·… − 1): cancel() brought back what overflows
        if C != 0 and (exact or count_ops(C) >= count_ops(A) + count_ops(B)):
            return  # no cancellation between the two: A·X + B·Q as it is
        used.update(first, second)
        m = X ** key[0] * Q ** key[1]
        new.extend([m * A * S * log_softplus_curvature(u), m * C * Q])

    for key, first in complements.items():
        # a term A·X and a term −A·Q first (−x·σ(−u) + σ(−u)/s − σ(u)/s²: the last two only:
        # −x·σ(−u) would be −x·s·E − x·Q, which cancels as u → +∞ where σ(−u) → 0), then what
        # is left of the two sums where together they simplify (the terms of a location–scale
        # Hessian in w, which pair only as sums)
        for i in first:
            for j in quotients.get(key, []):
                if i not in used and j not in used and i != j:
                    combine(key, [i], [j], exact=True)
        rest_first = [i for i in first if i not in used]
        rest_second = [j for j in quotients.get(key, []) if j not in used and j not in rest_first]
        if rest_first and rest_second:
            combine(key, rest_first, rest_second, exact=False)
    if not new:
        return None
    out = [t for i, t in enumerate(terms) if i not in used]
    E = log_softplus_curvature(u)
    for term in new:
        term = _softplus_tidy(term)
        # terms in E expanded, so that like terms (k·s²·E − s²·E + s²·E) add up symbolically
        out += list(Add.make_args(expand_mul(term))) if term.has(E) and count_ops(term) <= 60 else [term]
    out = [expand_mul(t) if t.has(E) and count_ops(t) <= 60 else t for t in out]
    return Add(*out)


def _cancel_keeping_reciprocals(expr):
    """cancel(expr), with a symbol that appears only as 1/y^k cancelled as a polynomial in 1/y:
    the tail forms in 1/w (w far from 0) stay in 1/w, where w⁴ would overflow."""
    swaps = {}
    for y in sorted(expr.free_symbols, key=str):
        v = Dummy(f"1/{y}")
        swapped = expr.replace(lambda e: e.is_Pow and e.base == y and e.exp.is_Integer and e.exp < 0, lambda e: v ** -e.exp)
        if not swapped.has(y) and swapped.has(v):
            expr, swaps[v] = swapped, 1 / y
    return cancel(expr).xreplace(swaps)


def _softplus_tidy(term):
    """sigmoid_over_softplus(u)^a·softplus(u)^b back to sigmoid(u), sigmoid(u)^a/softplus(u)^b to
    sigmoid_over_softplus(u)."""
    from ..second_order import _as_sigmoid_over_softplus, _over_softplus

    term = term.replace(lambda e: e.is_Mul, _sigmoid_over_softplus_times_softplus)
    return term.replace(_over_softplus, _as_sigmoid_over_softplus)


def _log(expr):
    arg = expr.args[0]
    if arg.is_Add and S.One in arg.args:
        rest = arg - 1
        if rest.could_extract_minus_sign() and isinstance(-rest, exp):
            return log1mexp((-rest).args[0])
        if isinstance(rest, exp):
            return softplus(rest.args[0])
        return log1p(rest)
    if isinstance(arg, Mul) and S.NegativeOne in arg.args and len(arg.args) == 2:
        inner = -arg
        if isinstance(inner, expm1):  # log(−expm1(u)) = log(1 − e^u)
            return log1mexp(inner.args[0])
    shifted = _shift(arg)
    if shifted is not None:
        top, scaled = shifted
        return top + log(scaled)
    return expr


def _sigmoid_over_softplus_times_softplus(expr):
    """sigmoid_over_softplus(u)^a · softplus(u)^b = sigmoid(u)^m · (the rest), m = min(a, b): the
    quotient kept whole so that it does not underflow, but not multiplied back by softplus(u),
    which the expm1/Bernstein forms then see as the sigmoid it is."""
    from ..functions import sigmoid_over_softplus

    powers = dict(f.as_base_exp() for f in Mul.make_args(expr))
    for base, a in powers.items():
        if isinstance(base, sigmoid_over_softplus) and a.is_Integer and a > 0:
            b = powers.get(softplus(base.args[0]), S.Zero)
            if b.is_Integer and b > 0:
                m = min(a, b)
                return expr / (base**m * softplus(base.args[0]) ** m) * sigmoid(base.args[0]) ** m
    return expr


def _softplus_into_sum(expr):
    """(… + c·sigmoid(u) + …)·softplus(u)^(−n) with softplus(u)^(−n) taken into the sum, where
    sigmoid(u)/softplus(u) becomes sigmoid_over_softplus(u): as u → −∞ the sum times sigmoid(u)
    would underflow (k²·e^u at k = 1e-150, u = −345) before the division brings it back."""
    factors = Mul.make_args(expr)
    for f in factors:
        base, power = f.as_base_exp()
        if not (isinstance(base, softplus) and power.is_Integer and power < 0):
            continue
        u = base.args[0]
        sums = [g for g in factors if g.is_Add]
        if len(sums) != 1 or not any(sigmoid(u) in Mul.make_args(t) for t in sums[0].args):
            continue
        (total,) = sums
        inside = Add(*[_softplus_tidy(t * f) for t in total.args])
        return Mul(*[g for g in factors if g is not f and g is not total], inside)
    return expr


# -- max-shifted finite sums of exponentials ---------------------------------------------------

def _sum_of_exps(d, plain: bool):
    """[(coefficient, exponent)] when ``d`` is a sum of terms c·e^f, at least one with a
    non-constant f; with ``plain``, terms without an exponential count as c·e^0."""
    if not d.is_Add:
        return None
    terms = _terms(d)
    if terms is None or not any(u != 0 and not u.is_number for _, u in terms):
        return None
    if not plain and any(u == 0 for _, u in terms):
        return None
    return terms


def _shift(d, plain=True):
    """(m, D·e^(−m)) for a sum D of exponentials, m the largest exponent (None otherwise)."""
    terms = _sum_of_exps(d, plain)
    if terms is None:
        return None
    top = Max(*{u for _, u in terms})
    return top, Add(*[c * exp(u - top) for c, u in terms])


def _shifted_quotient(expr):
    """N/D^n = (N e^(−n·m))/(D e^(−m))^n where N is homogeneous of degree n in the
    exponentials of D: each of them, in N and in D, becomes e^(f − m)."""
    for factor_ in Mul.make_args(expr):
        base, power = factor_.as_base_exp()
        if not (power.is_Integer and power < 0):
            continue
        terms = _sum_of_exps(base, plain=False)
        if terms is None:
            continue
        generators = {exp(u) for _, u in terms}
        rest = expr / factor_
        if _degree(rest, generators) != -power:
            continue
        top, shifted = _shift(base, plain=False)
        return rest.xreplace({g: exp(g.args[0] - top) for g in generators}) * shifted**power
    return expr


def _degree(expr, generators):
    """The degree of ``expr`` as a homogeneous polynomial in ``generators`` (None if it is not
    one, or if a generator appears other than as a factor)."""
    if expr in generators:
        return 1
    if not expr.has(*generators):
        return 0
    if expr.is_Mul:
        degrees = [_degree(f, generators) for f in expr.args]
        return None if None in degrees else sum(degrees)
    if expr.is_Add:
        degrees = {_degree(t, generators) for t in expr.args}
        return degrees.pop() if len(degrees) == 1 else None
    if expr.is_Pow and expr.exp.is_Integer and expr.exp > 0:
        inner = _degree(expr.base, generators)
        return None if inner is None else inner * int(expr.exp)
    return None


__all__ = ["stable"]
