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
from sympy import Function, Indexed, Sum, exp, log
from sympy.printing.precedence import PRECEDENCE


class xlogy(Function):
    """a·log(b), defined as 0 where a = 0."""

    def fdiff(self, argindex=1):
        a, b = self.args
        return log(b) if argindex == 1 else xdivy(a, b)

    def doit(self, **hints):
        a, b = (arg.doit(**hints) for arg in self.args)
        return a * log(b)

    def _latex(self, printer):
        a, b = self.args
        return rf"{printer.parenthesize(a, PRECEDENCE['Mul'])} \log {printer.parenthesize(b, PRECEDENCE['Pow'])}"


class xdivy(Function):
    """a / b, defined as 0 where a = 0."""

    def doit(self, **hints):
        a, b = (arg.doit(**hints) for arg in self.args)
        return a / b

    def _latex(self, printer):
        a, b = self.args
        return rf"\frac{{{printer._print(a)}}}{{{printer._print(b)}}}"


class logfactorial(Function):
    """log n! for a count n ≥ 0 (kept whole: SymPy would turn loggamma of an integer into
    log(gamma(n + 1)), which overflows for n > 170 when evaluated)."""

    def doit(self, **hints):
        from sympy import factorial

        return log(factorial(self.args[0].doit(**hints)))

    def _latex(self, printer):
        return rf"\log {printer.parenthesize(self.args[0], PRECEDENCE['Pow'])}!"


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
        """``z`` when the body is ``z[i]``, else the body with ``i`` written as ``\\cdot``."""
        body = self.body
        if isinstance(body, Indexed) and body.indices == (self.index,):
            return printer._print(body.base)
        return printer._print(body)


class LogSumExp(_Reduction):
    """log Σ_{i=0}^{K-1} exp(f(i)); args (f, i, K)."""

    nargs = 3

    def doit(self, **hints):
        return log(self.sum_of_exp())

    def _latex(self, printer):
        return r"\log \sum_{%s=0}^{%s} e^{%s}" % (
            printer._print(self.index),
            printer._print(self.size - 1),
            printer._print(self.body),
        )


class Softmax(_Reduction):
    """exp(f(at)) / Σ_{i=0}^{K-1} exp(f(i)); args (f, i, K, at)."""

    nargs = 4

    @property
    def at(self):
        return self.args[3]

    @property
    def free_symbols(self):
        return super().free_symbols | self.at.free_symbols

    def doit(self, **hints):
        return exp(self.body.subs(self.index, self.at)) / self.sum_of_exp()

    def _latex(self, printer):
        return r"\operatorname{softmax}(%s)_{%s}" % (
            self._vector_latex(printer),
            printer._print(self.at),
        )
