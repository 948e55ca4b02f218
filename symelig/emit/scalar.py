"""Scalar code for numba kernels: one value at a time, in the floating type ``_F`` of the call.

The numba backend (:mod:`symelig.emit.numba`) evaluates the same stable expressions as the
numpy kernels, element by element inside compiled loops.  This module prints them:

* numbers as ``_F(c)``: a Python float would make numba compute float32 inputs in float64;
* exp as ``_exp``, the kernel-only functions (sigmoid, softplus, log1pmx, gamma_difference, …)
  and scipy's special functions as calls of the ``@njit`` helpers of
  :mod:`symelig.emit.runtime.numba_kernels`, whose sources go into the generated module.
"""
from __future__ import annotations

from sympy import Rational
from sympy.printing.precedence import PRECEDENCE, precedence
from sympy.printing.pycode import PythonCodePrinter, _known_functions_math

from ..errors import SymeligError
from . import runtime
from .text import PositiveFirst


class NotAvailable(SymeligError):
    """A function the numba backend has no scalar implementation of: one line naming it."""

    def __init__(self, function: str, what: str = "this derivation"):
        super().__init__(f"{what} is not available on the numba backend (uses {function})")
        self.function = function


def not_available(function: str) -> NotAvailable:
    return NotAvailable(function)


class ScalarPrinter(PositiveFirst, PythonCodePrinter):
    """Python/numba scalar code for an expression over names in ``codes`` {Symbol: code}."""

    def __init__(self, codes: dict | None = None):
        super().__init__({"fully_qualified_modules": True})
        self.codes = codes or {}
        self.helpers: set = set()

    def doprint(self, expr, assign_to=None):  # no "# Not supported" comments: errors instead
        return self._print(expr)

    # names and numbers ------------------------------------------------------------------
    def _print_Symbol(self, expr):
        return self.codes.get(expr, expr.name)

    def _number(self, value) -> str:
        return f"_F({float(value)!r})"

    def _print_Float(self, expr):
        return self._number(expr)

    def _print_Integer(self, expr):
        return self._number(expr)

    def _print_Rational(self, expr):
        return self._number(expr)

    def _print_NumberSymbol(self, expr):
        return self._number(expr.evalf(17))

    _print_Pi = _print_Exp1 = _print_NumberSymbol

    def _print_Half(self, expr):
        return self._number(expr)

    _print_One = _print_Zero = _print_NegativeOne = _print_Integer

    def _print_Infinity(self, expr):
        return "_F(_math.inf)"

    def _print_NegativeInfinity(self, expr):
        return "_F(-_math.inf)"

    def _print_Pow(self, expr, rational=False):
        base, exponent = expr.args
        b = self.parenthesize(base, precedence(expr))
        if exponent == Rational(1, 2):
            return f"_math.sqrt({self._print(base)})"
        if exponent == Rational(-1, 2):
            return f"_F(1.0)/_math.sqrt({self._print(base)})"
        if exponent == -1:
            return f"_F(1.0)/{b}"
        if exponent.is_Integer:  # an int literal keeps float32 float32 (numba multiplies it out)
            return f"{b}**{int(exponent)}" if exponent > 0 else f"{b}**({int(exponent)})"
        return f"{b}**{self.parenthesize(exponent, precedence(expr))}"

    # logic ----------------------------------------------------------------------------------
    def _print_Piecewise(self, expr):
        *pieces, (last, _) = expr.args
        code = self._print(last)
        for value, condition in reversed(pieces):
            code = f"({self._print(value)} if {self._print(condition)} else {code})"
        return code

    def _print_And(self, expr):
        return "(" + " and ".join(self._print(a) for a in expr.args) + ")"

    def _print_Or(self, expr):
        return "(" + " or ".join(self._print(a) for a in expr.args) + ")"

    def _print_Not(self, expr):
        return f"(not {self._print(expr.args[0])})"

    def _print_BooleanTrue(self, expr):
        return "True"

    def _print_BooleanFalse(self, expr):
        return "False"

    def _print_Relational(self, expr):
        op = {"==": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}[expr.rel_op]
        return f"({self._print(expr.lhs)} {op} {self._print(expr.rhs)})"

    def _nested(self, name, args):
        *first, last = args
        code = self._print(last)
        for a in reversed(first):
            code = f"{name}({self._print(a)}, {code})"
        return code

    def _print_Max(self, expr):
        return self._nested("max", expr.args)

    def _print_Min(self, expr):
        return self._nested("min", expr.args)

    # elementary functions -------------------------------------------------------------------
    def _call(self, name, *args) -> str:
        if name in runtime.names("numba"):
            self.helpers.add(name)
        return f"{name}({', '.join(self._print(a) for a in args)})"

    def _print_exp(self, expr):
        return self._call("_exp", expr.args[0])

    def _print_log(self, expr):
        if len(expr.args) != 1:
            raise not_available("log with a base")
        return self._call("_math.log", expr.args[0])

    def _print_log1p(self, expr):
        return self._call("_math.log1p", expr.args[0])

    def _print_expm1(self, expr):
        return self._call("_math.expm1", expr.args[0])

    def _print_cos(self, expr):
        return self._call("_math.cos", expr.args[0])

    def _print_sin(self, expr):
        return self._call("_math.sin", expr.args[0])

    def _print_tanh(self, expr):
        return self._call("_math.tanh", expr.args[0])

    def _print_Abs(self, expr):
        return self._call("abs", expr.args[0])

    def _print_sign(self, expr):
        return self._call("_sign", expr.args[0])

    def _print_masked(self, expr):
        z, m = (self._print(a) for a in expr.args)
        return f"({z} if {m} != 0 else -_math.inf)"

    def _print_log_abs(self, expr):
        return f"_math.log(abs({self._print(expr.args[0])}))"

    # the numpy kernels' helpers, one value at a time -----------------------------------------
    def _print_sigmoid(self, expr):
        return self._call("_sigmoid", expr.args[0])

    def _print_softplus(self, expr):
        return self._call("_softplus", expr.args[0])

    def _print_log_softplus(self, expr):
        return self._call("_log_softplus", expr.args[0])

    def _print_sigmoid_over_softplus(self, expr):
        return self._call("_sigmoid_over_softplus", expr.args[0])

    def _print_xlogy(self, expr):
        return self._call("_xlogy", *expr.args)

    def _print_xdivy(self, expr):
        return self._call("_xdivy", *expr.args)

    def _print_log1mexp(self, expr):
        return self._call("_log1mexp", expr.args[0])

    def _print_log_ndtr_difference(self, expr):
        return self._call("_log_ndtr_difference", *expr.args)

    def _print_normal_pdf_over_mass(self, expr):
        return self._call("_normal_pdf_over_mass", *expr.args)

    def _print_log1pmx(self, expr):
        return self._call("_log1pmx", expr.args[0])

    def _print_bd0(self, expr):
        return self._call("_bd0", *expr.args)

    def _print_stirlerr(self, expr):
        return self._call("_stirlerr", expr.args[0])

    def _print_log_softplus_curvature(self, expr):
        return self._call("_log_softplus_curvature", expr.args[0])

    def _print_factorial_remainder(self, expr):
        return self._call("_factorial_remainder", expr.args[0])

    def _print_fms(self, expr):
        return self._call("_fms", *expr.args)

    def _print_added_first(self, expr):
        return f"({self._print(expr.args[0])})"

    def _print_select(self, expr):
        """A two-piece choice: the scalar code evaluates one piece per element anyway."""
        from sympy import Piecewise

        condition, then, otherwise = expr.args
        return self._print(Piecewise((then, condition), (otherwise, True)))

    def _print_quotient(self, expr):
        """a/b as one division (kept whole by the stable forms)."""
        a, b = expr.args
        return f"({self.parenthesize(a, PRECEDENCE['Mul'], strict=True)}/{self.parenthesize(b, PRECEDENCE['Mul'])})"

    # special functions -------------------------------------------------------------------------
    def _print_loggamma(self, expr):
        return self._call("_gammaln", expr.args[0])

    def _print_logfactorial(self, expr):
        return f"{self._call('_gammaln', expr.args[0] + 1)}"

    def _print_polygamma(self, expr):
        n, a = expr.args
        if not (n.is_Integer and n >= 0):
            raise not_available(f"polygamma of order {n}")
        if n == 0:
            return self._call("_digamma", a)
        self.helpers.add("_polygamma")
        return f"_polygamma({int(n)}, {self._print(a)})"

    def _print_gamma_difference(self, expr):
        n, b, d, a, shift = expr.args
        if not (n.is_Integer and shift.is_Integer):
            raise not_available("gamma_difference with a symbolic order")
        self.helpers.add("_gamma_difference")
        return f"_gamma_difference({int(n)}, {self._print(b)}, {self._print(d)}, {self._print(a)}, {int(shift)})"

    def _print_betaln(self, expr):
        return self._call("_betaln", *expr.args)

    def _print_log_bessel_i0(self, expr):
        return self._call("_log_bessel_i0", expr.args[0])

    def _print_bessel_i1_i0(self, expr):
        return self._call("_bessel_i1_i0", expr.args[0])

    # anything else ------------------------------------------------------------------------------
    def _print_Function(self, expr):
        raise not_available(type(expr).__name__)

    def _print_KroneckerDelta(self, expr):
        raise not_available(f"{expr} outside a linear term δ_jx·c of an eligibility")

    def _print_Sum(self, expr):
        raise NotImplementedError("sums are lowered to loops before printing")

    def _print_Indexed(self, expr):
        raise NotImplementedError("indexed entries are lowered to array reads before printing")

    def emptyPrinter(self, expr):
        raise not_available(type(expr).__name__)


# SymPy's Python printer knows more math functions (gamma, erf, atan, floor…) and would print them
# as math.f calls; none of the derivations needs them, and their float32 behaviour is untested:
# any the printer above does not handle is a NotAvailable error.
for _name in _known_functions_math:
    if f"_print_{_name}" not in ScalarPrinter.__dict__:
        setattr(ScalarPrinter, f"_print_{_name}", ScalarPrinter._print_Function)
del _name
