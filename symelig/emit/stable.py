"""Forms that keep their digits in floating point, for the kernels only.

The derivation keeps the paper's forms (e^η − 1, log(1 − p), log(w·e^a + …)); evaluated as
written they lose every digit where the terms cancel (η → 0) or overflow before they divide
(e^800/e^801).  Before a kernel is printed, :func:`stable` rewrites, anywhere in an expression:

* an Add that is a Laurent polynomial in one t = e^u (or b^e, = e^(e·log b)) and vanishes at
  t = 1, factored: each (t − 1) is expm1(u), so e^u − 1, 1 − e^(−u), e^u + e^(−u) − 2 =
  e^(−u)·expm1(u)², b^k − 1 are exact near u = 0;
* 1 − sigmoid(u) = sigmoid(−u), exact where sigmoid(u) rounds to 1;
* log(1 + a) = log1p(a), and log(1 − e^u) = log1mexp(u) (log(−expm1(u)) near u = 0);
* a quotient N/D^n, where D is a sum of terms c_k·e^(f_k), or log D: every e^(f_k) becomes
  e^(f_k − m) with m = max_k f_k (log D = m + log Σ c_k e^(f_k − m)), when N is homogeneous of
  degree n in the e^(f_k), so that the quotient is unchanged and nothing overflows: the
  finite-sum counterpart of the max-shifted softmax and log-sum-exp over categories.

Each rewrite is an identity; the kernels' tests compare them with 50-digit references.
"""
from __future__ import annotations

from sympy import Add, Dummy, Integer, Max, Mul, Poly, PolynomialError, Rational, S, binomial, exp, factor, gcd, log
from sympy.codegen.cfunctions import expm1, log1p

from ..functions import log1mexp, sigmoid, softplus


def stable(expr, parameters=(), unit_interval=()):
    """``expr`` with the cancelling and overflowing forms above replaced (bottom-up);
    ``parameters`` are the differentiated symbols (the rest is data: x, total_count),
    ``unit_interval`` those of them that lie in (0, 1)."""
    return _Stable(tuple(parameters), tuple(unit_interval))(expr)


class _Stable:
    def __init__(self, parameters, unit_interval):
        self.parameters = parameters
        self.unit_interval = unit_interval

    def __call__(self, expr):
        if not expr.args or expr.is_Atom:
            return expr
        args = [self(a) for a in expr.args]
        if any(a is not b for a, b in zip(args, expr.args)):
            expr = expr.func(*args)
        if expr.is_Add:
            expr = self._bernstein(expr)
            return _add(expr) if expr.is_Add else expr
        if isinstance(expr, log):
            return _log(expr)
        if expr.is_Mul:
            return _shifted_quotient(expr)
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
            if beta != 0:
                terms.append(beta * binomial(d, k) * g**k * complement ** (d - k))
        return Add(*terms)


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


def _add(expr):
    expr = _sigmoid_complement(expr)
    if not expr.is_Add:
        return expr
    terms = _terms(expr)
    if terms is None:
        return expr
    exponents = [u for _, u in terms if u != 0]
    if not exponents:
        return expr
    unit = exponents[0]
    powers = []
    for coefficient, u in terms:
        n = (u / unit) if u != 0 else S.Zero
        if not n.is_Rational:
            return expr
        powers.append((coefficient, n))
    denominators = [Rational(n).q for _, n in powers]
    step = Integer(1)
    for q in denominators:
        step = step * q / gcd(step, q)
    if step != 1:  # t = e^(unit/step): integer powers
        unit = unit / step
        powers = [(c, n * step) for c, n in powers]
    t = Dummy("t")
    lowest = min(n for _, n in powers)
    polynomial = Add(*[c * t ** (n - lowest) for c, n in powers]).expand()
    if polynomial.subs(t, 1).expand() != 0:
        return expr  # no cancellation near u = 0 to repair
    factored = factor(polynomial, t)
    rewritten = Mul(*[_factor_in_t(f, t, unit) for f in Mul.make_args(factored)]) * exp(unit * lowest)
    return rewritten


def _factor_in_t(f, t, unit):
    """A factor of the polynomial in t with t = e^unit; (t − 1)^k becomes expm1(unit)^k."""
    base, power = f.as_base_exp()
    if base.has(t):
        if (base - (t - 1)).expand() == 0:
            return expm1(unit) ** power
        if (base - (1 - t)).expand() == 0:
            return (-expm1(unit)) ** power
    return f.subs(t, exp(unit))


def _sigmoid_complement(expr):
    """c − c·sigmoid(u) = c·sigmoid(−u): 1 − sigmoid(u) is 0 in floating point for u > 37."""
    terms = list(Add.make_args(expr))
    for term in terms:
        found = [f for f in Mul.make_args(term) if isinstance(f, sigmoid)]
        if len(found) != 1:
            continue
        coefficient = -term / found[0]
        if coefficient in terms:
            rest = [x for x in terms if x is not term]
            rest.remove(coefficient)
            return Add(*rest, coefficient * sigmoid(-found[0].args[0]))
    return expr


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
