"""SymPy functions the derivations need beyond SymPy's own.

* ``xlogy(a, b) = a log b`` with ``0 log 0 = 0`` and ``xdivy(a, b) = a / b`` with ``0 / 0 = 0``:
  a count of zero in a category of probability zero contributes nothing, as in
  ``torch.distributions.Multinomial``.  ``d xlogy(a, b) / db = xdivy(a, b)``.
* ``LogSumExp(f, i, K) = log Σ_{i=0}^{K-1} exp f(i)`` and
  ``Softmax(f, i, K, at) = exp f(at) / Σ_{i=0}^{K-1} exp f(i)``: *names* that the engine gives
  to finished expressions, so that printers can typeset them as a paper does and kernels can
  evaluate them stably (max-shifted).  They are never differentiated; ``.doit()`` turns them
  back into the raw Sum form, which is what the tests compare.
"""
from sympy import Add, Function, Indexed, S, Sum, exp, log
from sympy.printing.precedence import PRECEDENCE


def _power(tex: str, exp) -> str:
    """LaTeX printers pass ``exp`` when the function is raised to a power."""
    return rf"\left({tex}\right)^{{{exp}}}" if exp else tex


class xlogy(Function):
    """a·log(b), defined as 0 where a = 0."""

    def fdiff(self, argindex=1):
        a, b = self.args
        return log(b) if argindex == 1 else xdivy(a, b)

    def doit(self, **hints):
        a, b = (arg.doit(**hints) for arg in self.args)
        return a * log(b)

    def _latex(self, printer, exp=None):
        a, b = self.args
        return _power(rf"{printer.parenthesize(a, PRECEDENCE['Mul'])} \log {printer.parenthesize(b, PRECEDENCE['Pow'])}", exp)


class xdivy(Function):
    """a / b, defined as 0 where a = 0."""

    def fdiff(self, argindex=1):
        a, b = self.args
        return xdivy(1, b) if argindex == 1 else -xdivy(a, b**2)

    def doit(self, **hints):
        a, b = (arg.doit(**hints) for arg in self.args)
        return a / b

    def _latex(self, printer, exp=None):
        a, b = self.args
        return _power(rf"\frac{{{printer._print(a)}}}{{{printer._print(b)}}}", exp)


class logfactorial(Function):
    """log n! for a count n ≥ 0 (kept whole: SymPy would turn loggamma of an integer into
    log(gamma(n + 1)), which overflows for n > 170 when evaluated)."""

    def doit(self, **hints):
        from sympy import factorial

        return log(factorial(self.args[0].doit(**hints)))

    def _latex(self, printer, exp=None):
        return _power(rf"\log {printer.parenthesize(self.args[0], PRECEDENCE['Pow'])}!", exp)


class _Reduction(Function):
    """Common part of the named reductions over the category index ``i`` of ``0..K-1``."""

    @property
    def body(self):
        return self.args[0]

    @property
    def index(self):
        return self.args[1]

    @property
    def size(self):
        return self.args[2]

    @property
    def free_symbols(self):
        # the summation index is bound, exactly as in Sum
        return super().free_symbols - {self.index}

    def sum_of_exp(self):
        return Sum(exp(self.body), (self.index, 0, self.size - 1))

    def _vector_latex(self, printer):
        """The body as a vector: ``z`` for ``z[i]``, ``z/τ`` for ``z[i]/τ`` (every component indexed
        by the reduction's ``i`` written as its vector)."""
        vector = self.body.replace(lambda a: isinstance(a, Indexed) and a.indices == (self.index,), lambda a: a.base.label)
        return printer._print(vector)


class LogSumExp(_Reduction):
    """log Σ_{i=0}^{K-1} exp(f(i)); args (f, i, K)."""

    nargs = 3

    def doit(self, **hints):
        return log(self.sum_of_exp())

    def _latex(self, printer, exp=None):
        return _power(r"\log \sum_{%s=0}^{%s} e^{%s}" % (
            printer._print(self.index),
            printer._print(self.size - 1),
            printer._print(self.body),
        ), exp)


class _AtCategory(_Reduction):
    """A reduction taken relative to one category ``at`` (the sample x, or a component j); args
    (f, i, K, at)."""

    nargs = 4

    @property
    def at(self):
        return self.args[3]

    @property
    def free_symbols(self):
        return super().free_symbols | self.at.free_symbols


class Softmax(_AtCategory):
    """exp(f(at)) / Σ_{i=0}^{K-1} exp(f(i)); args (f, i, K, at)."""


    def doit(self, **hints):
        return exp(self.body.subs(self.index, self.at)) / self.sum_of_exp()

    def responsibility(self) -> bool:
        """A softmax over a mixture's components whose body holds the sample x: the posterior
        weight of a component given x, written γ_j as in Bishop (2006, §9.2), defined once under
        the formulas (its body is too long to repeat in every term of a Hessian)."""
        return any(s.name == "x" for s in self.body.free_symbols if not isinstance(s, Indexed))

    def _latex(self, printer, exp=None):
        if self.responsibility():
            return _power(r"\gamma_{%s}" % printer._print(self.at), exp)
        return _power(r"\operatorname{softmax}(%s)_{%s}" % (
            self._vector_latex(printer),
            printer._print(self.at),
        ), exp)


class sigmoid(Function):
    """The logistic function 1 / (1 + exp(−z)); d sigmoid/dz = sigmoid(z)·(1 − sigmoid(z))."""

    def fdiff(self, argindex=1):
        return self * (1 - self)

    def doit(self, **hints):
        return 1 / (1 + exp(-self.args[0].doit(**hints)))

    def _eval_is_positive(self):
        return self.args[0].is_extended_real

    def _latex(self, printer, exp=None):
        return _power(rf"\operatorname{{sigmoid}}\left({printer._print(self.args[0])}\right)", exp)


class softplus(Function):
    """log(1 + exp(z)), as torch.nn.functional.softplus; d softplus/dz = sigmoid(z)."""

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0])

    def doit(self, **hints):
        return log(1 + exp(self.args[0].doit(**hints)))

    def _eval_is_positive(self):
        return self.args[0].is_extended_real

    def _latex(self, printer, exp=None):
        return _power(rf"\operatorname{{softplus}}\left({printer._print(self.args[0])}\right)", exp)


class log_softplus(Function):
    """log softplus(z), kept whole: softplus(z) underflows to 0 for z below −745 (−104 in float32)
    while log softplus(z) = z to machine precision there.  d/dz = sigmoid(z)/softplus(z)."""

    def fdiff(self, argindex=1):
        return sigmoid_over_softplus(self.args[0])

    def doit(self, **hints):
        return log(softplus(self.args[0]).doit(**hints))

    def _eval_is_real(self):
        return self.args[0].is_extended_real

    def _latex(self, printer, exp=None):
        return _power(rf"\log\operatorname{{softplus}}\left({printer._print(self.args[0])}\right)", exp)


class sigmoid_over_softplus(Function):
    """sigmoid(z)/softplus(z), the derivative of log softplus(z); → 1 as z → −∞, where both
    underflow and the plain quotient would be 0/0."""

    def fdiff(self, argindex=1):
        z = self.args[0]
        return self * (1 - sigmoid(z)) - self**2

    def doit(self, **hints):
        z = self.args[0].doit(**hints)
        return sigmoid(z).doit() / softplus(z).doit()

    def _eval_is_positive(self):
        return self.args[0].is_extended_real

    def _latex(self, printer, exp=None):
        z = printer._print(self.args[0])
        return _power(rf"\frac{{\operatorname{{sigmoid}}\left({z}\right)}}{{\operatorname{{softplus}}\left({z}\right)}}", exp)


class log_softplus_curvature(Function):
    """(sigmoid(−z)·softplus(z) − sigmoid(z)) / softplus(z)², kept whole for the kernels
    (symelig.emit.stable): sigmoid(z) times it is d² log softplus(z)/dz², the derivative of
    sigmoid_over_softplus(z), and it is (sigmoid(−z) − sigmoid_over_softplus(z))/softplus(z), the
    pole left over by ψ_n(softplus(z)) = ψ_n(softplus(z) + 1) + … .  As z → −∞ it tends to −1/2,
    while its terms sigmoid(−z)/softplus(z) and sigmoid(z)/softplus(z)² grow as e^(−z) and cancel
    (to 0 in floating point from z ≈ −37, to 1e-7 relative at z = −20); with t = e^z it is
    (log1p(t) − t)/t² · (t/log1p(t))² / (1 + t) = −1/2 + t/3 − 7t²/24 + …, which does not cancel."""

    def fdiff(self, argindex=1):
        z = self.args[0]
        return -sigmoid_over_softplus(z) * (sigmoid(-z) + 2 * self)

    def doit(self, **hints):
        z = self.args[0].doit(**hints)
        s = softplus(z).doit()
        return (sigmoid(-z).doit() * s - sigmoid(z).doit()) / s**2

    def _eval_is_real(self):
        return self.args[0].is_extended_real

    def _latex(self, printer, exp=None):
        z, minus_z = printer._print(self.args[0]), printer._print(-self.args[0])
        sp = rf"\operatorname{{softplus}}\left({z}\right)"
        return _power(rf"\frac{{\operatorname{{sigmoid}}\left({minus_z}\right) {sp} - \operatorname{{sigmoid}}\left({z}\right)}}{{{sp}^{{2}}}}", exp)


class log_bessel_i0(Function):
    """log I_0(κ), evaluated as log(i0e(κ)) + |κ| so that large κ does not overflow."""

    def doit(self, **hints):
        from sympy import besseli

        return log(besseli(0, self.args[0].doit(**hints)))

    def _latex(self, printer, exp=None):
        return _power(rf"\log I_0\left({printer._print(self.args[0])}\right)", exp)


class bessel_i1_i0(Function):
    """I_1(κ) / I_0(κ), evaluated as i1e(κ) / i0e(κ) (the exponential scalings cancel)."""

    def doit(self, **hints):
        from sympy import besseli

        a = self.args[0].doit(**hints)
        return besseli(1, a) / besseli(0, a)

    def _latex(self, printer, exp=None):
        a = printer._print(self.args[0])
        return _power(rf"\frac{{I_1\left({a}\right)}}{{I_0\left({a}\right)}}", exp)


class log1mexp(Function):
    """log(1 − e^u) for u < 0, as the kernels evaluate it: log(−expm1(u)) for u > −log 2 (where
    1 − e^u cancels) and log1p(−e^u) below.  Only the kernels use it (symelig.emit.stable)."""

    def fdiff(self, argindex=1):
        u = self.args[0]
        return -exp(u) / (1 - exp(u))

    def doit(self, **hints):
        return log(1 - exp(self.args[0].doit(**hints)))

    def _latex(self, printer, exp=None):
        return _power(rf"\log\left(1 - e^{{{printer._print(self.args[0])}}}\right)", exp)


class log1pmx(Function):
    """log(1 + z) − z for z > −1, as the kernels evaluate it: near 0 the two terms cancel to
    −z²/2, so for |z| < ¼ it is −z²/(2 + z) + 2(s³/3 + s⁵/5 + …) with s = z/(2 + z) (log(1 + z)
    = 2 atanh s), whose terms fall by s² ≤ 1/49 each.  Only the kernels use it
    (symelig.emit.stable)."""

    def fdiff(self, argindex=1):
        z = self.args[0]
        return -z / (1 + z)

    def doit(self, **hints):
        z = self.args[0].doit(**hints)
        return log(1 + z) - z

    def _latex(self, printer, exp=None):
        z = printer._print(self.args[0])
        return _power(rf"\left(\log\left(1 + {z}\right) - {z}\right)", exp)


class gamma_difference(Function):
    """ψ_n(a) − ψ_n(b + s) for n ≥ 0, log Γ(a) − log Γ(b + s) for n = −1, with d = a − b and s = 0
    or 1; args (n, b, d, a, s) (a as written, since b + d may round differently).  Only the
    kernels use it (symelig.emit.stable): where |d| ≪ |b|, a rounds towards b and the difference
    cancels, so it is evaluated as the Taylor series in d (plus the pole of ψ_n at b for s = 1)."""

    nargs = 5

    def doit(self, **hints):
        from sympy import loggamma, polygamma

        n, b, d, a, shift = (x.doit(**hints) for x in self.args)
        f = (lambda u: loggamma(u)) if n == -1 else (lambda u: polygamma(n, u))
        return f(a) - f(b + shift)

    def _latex(self, printer, exp=None):
        return printer._print(self.doit())


class betaln(Function):
    """log B(a, b) = log Γ(a) + log Γ(b) − log Γ(a + b), kept whole for the kernels (its three
    terms cancel when a ≫ b)."""

    def doit(self, **hints):
        from sympy import loggamma

        a, b = (x.doit(**hints) for x in self.args)
        return loggamma(a) + loggamma(b) - loggamma(a + b)

    def _latex(self, printer, exp=None):
        return _power(rf"\log B\left({printer._print(self.args[0])}, {printer._print(self.args[1])}\right)", exp)


class bd0(Function):
    """Loader's deviance term x·log(x/m) + m − x ≥ 0 (Loader 2000; R's bd0), args (x, m, d) with
    d = x − m as written, so that a difference that SymPy wrote without cancellation (b − n(1 − x)
    = nx − a) keeps its digits.  Only the kernels use it (symelig.emit.stable): where |d| <
    0.1(x + m) it is evaluated as the series d·v + 2x(v³/3 + v⁵/5 + …), v = d/(x + m), since
    x·log(x/m) and x − m cancel there; the expression itself elsewhere."""

    nargs = 3

    def fdiff(self, argindex=1):
        x, m, _ = self.args
        if argindex == 3:  # d stands for x − m: the value is taken as a function of x and m
            return S.Zero
        return log(x / m) if argindex == 1 else 1 - x / m

    def doit(self, **hints):
        x, m, _ = (a.doit(**hints) for a in self.args)
        return x * log(x / m) + m - x

    def _latex(self, printer, exp=None):
        x, m, _ = self.args
        return _power(rf"\operatorname{{bd_0}}\left({printer._print(x)}, {printer._print(m)}\right)", exp)


class quotient(Function):
    """a / b, kept whole for the kernels: common-subexpression elimination would turn a/n and b/n
    into a·(1/n) and b·(1/n), one rounding more, and a/n must be exactly ½ at a = b (a saddle-point
    form's mean, symelig.emit.stable)."""

    nargs = 2

    def fdiff(self, argindex=1):
        a, b = self.args
        return 1 / b if argindex == 1 else -a / b**2

    def doit(self, **hints):
        a, b = (x.doit(**hints) for x in self.args)
        return a / b

    def _latex(self, printer, exp=None):
        a, b = self.args
        return _power(rf"\frac{{{printer._print(a)}}}{{{printer._print(b)}}}", exp)


class stirlerr(Function):
    """Stirling's remainder log Γ(z) − [(z − ½) log z − z + ½ log 2π] = 1/(12z) − 1/(360z³) + …
    (Loader 2000).  Only the kernels use it (symelig.emit.stable): the log-gamma differences of a
    beta or Dirichlet density cancel against its x-terms, Stirling's leading terms cancel
    symbolically, and what is left is this small remainder, taken by its series for z > 15."""

    def fdiff(self, argindex=1):
        from sympy import polygamma

        z = self.args[0]
        return polygamma(0, z) - log(z) + 1 / (2 * z)

    def doit(self, **hints):
        from sympy import loggamma, pi

        z = self.args[0].doit(**hints)
        return loggamma(z) - (z - S.Half) * log(z) + z - log(2 * pi) / 2

    def _latex(self, printer, exp=None):
        return _power(rf"\operatorname{{stirlerr}}\left({printer._print(self.args[0])}\right)", exp)


class factorial_remainder(Function):
    """log a! − (a log a − a) = stirlerr(a) + ½ log(2πa) for a count a > 0, and 0 at a = 0 (0! = 1,
    0·log 0 = 0): what Stirling's leading terms leave of a log-factorial, continuous down to 0.
    Only the kernels use it (symelig.emit.stable: a binomial's or multinomial's saddle-point form,
    where a count of 0 is a sample like any other); ½ log(2πa) + stirlerr's series above 15, the
    difference itself below."""

    def fdiff(self, argindex=1):
        from sympy import polygamma

        a = self.args[0]
        return polygamma(0, a + 1) - log(a)

    def doit(self, **hints):
        a = self.args[0].doit(**hints)
        return logfactorial(a) - xlogy(a, a) + a

    def _latex(self, printer, exp=None):
        return _power(rf"\operatorname{{stirlerr}}_{{!}}\left({printer._print(self.args[0])}\right)", exp)


class added_first(Function):
    """``e`` itself, computed before the terms it is added to (the kernels print it in
    parentheses): log n! − log x! − log (n − x)! cancels exactly to 0 at x = 0, and a small θ-term
    added afterwards keeps its digits.  Only the kernels use it, inside a :class:`select` piece,
    which is one expression (elsewhere such terms are a statement of their own)."""

    nargs = 1

    def doit(self, **hints):
        return self.args[0].doit(**hints)

    def _latex(self, printer, exp=None):
        return _power(rf"\left({printer._print(self.args[0])}\right)", exp)


class fms(Function):
    """a − b·c with the product taken exactly (one rounding, as a fused multiply–subtract): the
    deviation a − m of a count or concentration from its saddle point m = b·c, which is of the
    order of √a where the two agree to half their digits; m rounded first would leave only the
    rounding (α = 1e60, β = 1e-100, x = α/β: 0 for −1.5e44).  Only the kernels use it
    (symelig.emit.stable); Dekker's exact product there."""

    nargs = 3

    def fdiff(self, argindex=1):
        a, b, c = self.args
        return {1: S.One, 2: -c, 3: -b}[argindex]

    def doit(self, **hints):
        a, b, c = (x.doit(**hints) for x in self.args)
        return a - b * c

    def _latex(self, printer, exp=None):
        a, b, c = self.args
        return _power(rf"\left({printer._print(a - b * c)}\right)", exp)


class select(Function):
    """``then`` where ``condition`` holds, ``otherwise`` elsewhere: a Piecewise of two pieces that
    the numpy kernels evaluate lazily, each piece only at the elements that take it (a where()
    computes both everywhere: a saddle-point form, symelig.emit.stable, made a beta's log_prob
    3–5× slower at ordinary parameters that never take it).  Only the kernels use it; args
    (condition, then, otherwise), each piece at inputs that keep it finite everywhere (the
    array-API kernels take a where())."""

    nargs = 3

    def doit(self, **hints):
        from sympy import Piecewise

        condition, then, otherwise = (a.doit(**hints) for a in self.args)
        return Piecewise((then, condition), (otherwise, True))

    def _latex(self, printer, exp=None):
        condition, then, otherwise = self.args
        return _power(rf"\begin{{cases}} {printer._print(then)} & {printer._print(condition)} \\ "
                      rf"{printer._print(otherwise)} & \text{{otherwise}} \end{{cases}}", exp)


class SumExcept(_AtCategory):
    """Σ_{i ≠ at} f(i) over 0..K−1; args (f, i, K, at).  Only the kernels use it
    (symelig.emit.stable): Σ_i f(i) − f(at) cancels where the entry at ``at`` holds almost all of
    the sum, which the sum of the other entries does not."""


    def doit(self, **hints):
        return Sum(self.body, (self.index, 0, self.size - 1)) - self.body.subs(self.index, self.at)


class SoftmaxExcept(_AtCategory):
    """1 − softmax(f)_at = Σ_{i ≠ at} e^(f(i)) / Σ_i e^(f(i)); args (f, i, K, at).  Only the
    kernels use it: 1 − softmax_x is 0 in floating point where the sampled category dominates."""


    def doit(self, **hints):
        return 1 - exp(self.body.subs(self.index, self.at)) / self.sum_of_exp()


class log_abs(Function):
    """log|u|, kept whole so that e^(a + d·log|u|) is not folded back into |u|^d·e^a (which
    overflows to inf·0 far in a tail).  Only the kernels use it (symelig.emit.standardize)."""

    def doit(self, **hints):
        from sympy import Abs

        return log(Abs(self.args[0].doit(**hints)))


class masked(Function):
    """The masked logit z + log m: z where the mask m is 1 (allowed), −∞ where it is 0, so that
    exp(masked(z, m)) = m·e^z.  Kept whole (SymPy folds exp(z + log m) into m·e^z, which the
    softmax and log-sum-exp rules would not recognise); args (z, m).  The mask is not
    differentiated: ∂ masked(z, m)/∂z = 1."""

    nargs = 2

    @classmethod
    def eval(cls, z, m):
        if m == 1:  # an allowed category (the sample's, on the support)
            return z
        return None

    def _eval_is_extended_real(self):
        return self.args[0].is_extended_real

    def _eval_is_real(self):
        # real as a formal symbol, so that log e^(z + log m) = z + log m; the −∞ of a masked
        # category only ever enters as e^(−∞) = 0 in a sum or softmax
        return self.args[0].is_real

    def fdiff(self, argindex=1):
        return S.One if argindex == 1 else S.Zero

    def doit(self, **hints):
        z, m = (a.doit(**hints) for a in self.args)
        return z + log(m)

    # Printed as the sum z + log m that it is, with a sum's precedence: the enclosing printer
    # adds parentheses where a sum needs them (a product, a power) and nowhere else.
    precedence = PRECEDENCE["Add"]

    def _latex(self, printer, exp=None):
        z, m = self.args
        text = rf"{printer._print(z)} + \log {printer._print(m)}"
        return _power(text, exp)

    def _pretty(self, printer):
        z, m = self.args
        return printer._print(Add(z, log(m), evaluate=False))

    def _sympystr(self, printer):
        z, m = self.args
        return f"{printer._print(z)} + log({printer._print(m)})"



class _Remaining(_Reduction):
    """A reduction over the categories not yet placed at ``step`` of an ordering ``x``: every i in
    0..K−1 except x_0, …, x_{step−1} (Plackett–Luce); args (f, i, K, x, step, …).  The kernels
    evaluate all the steps of an ordering at once (:mod:`symelig.emit.lowering`, "remaining")."""

    @property
    def ordering(self):
        return self.args[3]

    @property
    def step(self):
        return self.args[4]

    def placed_sum(self, g):
        """Σ_{l<step} g(x_l): the placed categories' share of Σ_i g(i)."""
        from .family import q

        return Sum(g.subs(self.index, self.ordering[q]), (q, 0, self.step - 1))

    def remaining_sum_of_exp(self):
        return self.sum_of_exp() - self.placed_sum(exp(self.body))

    def _under_latex(self, printer):
        return r"%s \notin \{%s_{0}, \dots, %s_{%s}\}" % (
            printer._print(self.index), printer._print(self.ordering), printer._print(self.ordering), printer._print(self.step - 1))


class LogSumExpRemaining(_Remaining):
    """log Σ_{i ∉ {x_0, …, x_{step−1}}} exp f(i) = log(Σ_i e^{f(i)} − Σ_{l<step} e^{f(x_l)}); args
    (f, i, K, x, step).  Written as the difference it cancels where the placed categories hold
    almost all the mass; the kernels take a reverse cumulative log-sum-exp instead."""

    nargs = 5

    def doit(self, **hints):
        return log(self.remaining_sum_of_exp())

    def _latex(self, printer, exp=None):
        return _power(r"\log \sum_{%s} e^{%s}" % (self._under_latex(printer), printer._print(self.body)), exp)


class SoftmaxRemaining(_Remaining):
    """The softmax over the categories not yet placed at ``step``, at ``at``: e^{f(at)} / Σ_{i
    remaining} e^{f(i)} if ``at`` is not among x_0, …, x_{step−1}, else 0; args (f, i, K, x, step,
    at)."""

    nargs = 6

    @property
    def at(self):
        return self.args[5]

    @property
    def free_symbols(self):
        return super().free_symbols | self.at.free_symbols

    def doit(self, **hints):
        from sympy import KroneckerDelta

        top = exp(self.body.subs(self.index, self.at))
        return (top - self.placed_sum(KroneckerDelta(self.at, self.index) * exp(self.body))) / self.remaining_sum_of_exp()

    def _latex(self, printer, exp=None):
        return _power(r"\operatorname{softmax}_{%s}(%s)_{%s}" % (
            self._under_latex(printer), self._vector_latex(printer), printer._print(self.at)), exp)


class _Block(Function):
    """A reduction over one block i = lo, …, hi of the category axis (a multi-discrete action's
    own categorical: the blocks of sizes n_0, n_1, … laid end to end); args (f, i, lo, hi, …)."""

    @property
    def body(self):
        return self.args[0]

    @property
    def index(self):
        return self.args[1]

    @property
    def lower(self):
        return self.args[2]

    @property
    def upper(self):
        return self.args[3]

    @property
    def free_symbols(self):
        return set().union(*(a.free_symbols for a in self.args)) - {self.index}

    def sum_of_exp(self):
        return Sum(exp(self.body), (self.index, self.lower, self.upper))

    def _range_latex(self, printer):
        return r"%s=%s" % (printer._print(self.index), printer._print(self.lower)), printer._print(self.upper)


class LogSumExpBlock(_Block):
    """log Σ_{i=lo}^{hi} exp f(i); args (f, i, lo, hi)."""

    nargs = 4

    def doit(self, **hints):
        return log(self.sum_of_exp())

    def _latex(self, printer, exp=None):
        under, over = self._range_latex(printer)
        return _power(r"\log \sum_{%s}^{%s} e^{%s}" % (under, over, printer._print(self.body)), exp)


class SoftmaxBlock(_Block):
    """The softmax of f over the block lo..hi, at ``at``: e^{f(at)} / Σ_{i=lo}^{hi} e^{f(i)} where
    lo ≤ at ≤ hi, else 0; args (f, i, lo, hi, at)."""

    nargs = 5

    @property
    def at(self):
        return self.args[4]

    def doit(self, **hints):
        from sympy import KroneckerDelta

        inside = Sum(KroneckerDelta(self.index, self.at) * exp(self.body), (self.index, self.lower, self.upper))
        return inside / self.sum_of_exp()

    def _latex(self, printer, exp=None):
        under, over = self._range_latex(printer)
        vector = self.body.replace(lambda a: isinstance(a, Indexed) and a.indices == (self.index,), lambda a: a.base.label)
        return _power(r"\operatorname{softmax}_{%s}^{%s}(%s)_{%s}" % (under, over, printer._print(vector), printer._print(self.at)), exp)


class log_ndtr_difference(Function):
    """log(Φ(b) − Φ(a)) for a < b: the log of the standard normal's mass on [a, b], Φ its CDF;
    args (a, b, w) with w = b − a as written ((high − low)/σ, which keeps its digits where a and b
    round to one number: low = 2.5, μ = 3e19, σ = 1e20).  The normalizer of a truncated normal,
    kept whole: Φ(b) − Φ(a) cancels to 0 in a tail (a, b = 10, 11: 1 − 1), the kernels take it
    through log Φ (the runtime's _log_ndtr_difference).  ∂/∂a = −normal_pdf_over_mass(a, b, w),
    ∂/∂b = −normal_pdf_over_mass(b, a, −w) (= φ(b)/(Φ(b) − Φ(a))); w stands for b − a, so the
    value is a function of a and b alone (∂/∂w = 0)."""

    nargs = 3

    def fdiff(self, argindex=1):
        a, b, w = self.args
        if argindex == 3:
            return S.Zero
        return -normal_pdf_over_mass(a, b, w) if argindex == 1 else -normal_pdf_over_mass(b, a, -w)

    def doit(self, **hints):
        from sympy import erf, sqrt

        a, b, _ = (x.doit(**hints) for x in self.args)
        return log((erf(b / sqrt(2)) - erf(a / sqrt(2))) / 2)

    def _eval_is_extended_real(self):
        return self.args[0].is_extended_real and self.args[1].is_extended_real

    def _latex(self, printer, exp=None):
        a, b = (printer._print(x) for x in self.args[:2])
        return _power(rf"\log\left(\Phi\left({b}\right) - \Phi\left({a}\right)\right)", exp)


class normal_pdf_over_mass(Function):
    """φ(a)/(Φ(b) − Φ(a)), φ and Φ the standard normal's density and CDF; args (a, b, w) with
    w = b − a as written (see log_ndtr_difference), either order (negative where b < a).  The
    derivative of a truncated normal's log-normalizer, kept whole: φ(a) and the mass underflow
    together in a tail (a = 40: 1e-348), the kernels take it as ±exp(log φ(a) −
    log_ndtr_difference).  With R(a, b) this function: ∂R(a, b)/∂a = R(a, b)² − a·R(a, b),
    ∂R(a, b)/∂b = R(a, b)·R(b, a)."""

    nargs = 3

    def fdiff(self, argindex=1):
        a, b, w = self.args
        if argindex == 3:
            return S.Zero
        return self**2 - a * self if argindex == 1 else self * normal_pdf_over_mass(b, a, -w)

    def doit(self, **hints):
        from sympy import erf, pi, sqrt

        a, b, _ = (x.doit(**hints) for x in self.args)
        return exp(-a**2 / 2) / sqrt(2 * pi) / ((erf(b / sqrt(2)) - erf(a / sqrt(2))) / 2)

    def _eval_is_extended_real(self):
        return self.args[0].is_extended_real and self.args[1].is_extended_real

    def _latex(self, printer, exp=None):
        a, b = (printer._print(x) for x in self.args[:2])
        return _power(rf"\frac{{\phi\left({a}\right)}}{{\Phi\left({b}\right) - \Phi\left({a}\right)}}", exp)
