"""User expressions, parsed by a whitelist: nothing the user types is ever executed.

Python's ``ast.parse`` only builds a syntax tree (it runs nothing); this module then accepts a
tree made of exactly these nodes, and builds the SymPy expression itself:

* decimal numbers as written in the text (``16``, ``0.5``, ``1e-3``; not ``0x10``, ``1_000``
  or ``1j``), and the constants ``pi`` and ``E``;
* declared names (the parameters, the sample), and ``name[i]`` for a category component;
* ``+ - * / **`` and unary ``-``/``+``; parentheses;
* the functions in :data:`FUNCTIONS`, called with positional arguments only;
* ``sum(f)``: Σ over the category index, Σ_{k=0}^{K−1} f(k).

Anything else (attribute access, subscripts other than ``[i]``, strings, lambdas, calls of
other names, comparisons, keywords…) is a one-line :class:`SymeligError` with its position.

Every accepted expression has a bounded cost, decided before SymPy does any work:

* the text is limited in length and nesting, so a 10 MB or deeply nested input fails fast;
* every constant is computed in floats *first*: it must be a finite real number between
  1e-300 and 1e300 in magnitude (or exactly 0), or the subexpression is named in the error
  (``log(-1)``, ``1/0``, ``2**-2**30``, ``exp(exp(exp(10)))``, ``1e-400``).  SymPy then computes
  it exactly only where that is cheap (small rational powers, lgamma/digamma of small
  integers); otherwise the float value is kept (never 10**10**10 digits, nor 10**8!);
* no subexpression may be complex, infinite or undefined (``m/(m - m)``, ``sqrt(-m**2 - 1)``);
* a power of an expression in the parameters has an exponent of at most :data:`MAX_POWER` in
  magnitude, the numeric factors in an exponent (``exp(c·m)``, ``2**(c·m)``) too, and the
  number of terms a full expansion would produce is at most :data:`MAX_TERMS`: SymPy's
  ``expand``/``factor``, which the derivation runs, take time and memory that grow with these.
"""
from __future__ import annotations

import ast
import builtins
import keyword
import math
import re

from sympy import (
    Add, Dummy, E, EulerGamma, Indexed, IndexedBase, Integer, Mul, Rational, S, Sum, exp, expand_mul, log,
    loggamma, pi, polygamma, preorder_traversal, sqrt,
)
from sympy import Float as SymFloat
from sympy.printing.str import StrPrinter

from .errors import SymeligError
from .family import K, i
from .functions import sigmoid, softplus

# A user's sum gets its own index, so it never captures the family's own sums over i.  A Dummy
# is unequal to every other symbol by construction, whatever the user names things.
SUM_INDEX = Dummy("l", integer=True, nonnegative=True)
MAX_LENGTH = 2000
MAX_DEPTH = 40
MAX_POWER = 64       # largest exponent of an expression in the parameters (and factor in an exponent)
MAX_TERMS = 1000     # largest number of terms a full expansion of the expression may have
LARGEST = 1e300      # constants beyond this magnitude are refused …
SMALLEST = 1e-300    # … and so are non-zero constants below this one

FUNCTIONS = {
    "log": (log, 1), "exp": (exp, 1), "sqrt": (sqrt, 1), "softplus": (softplus, 1), "sigmoid": (sigmoid, 1),
    "lgamma": (loggamma, 1), "digamma": (lambda a: polygamma(0, a), 1), "sum": (None, 1),
}
CONSTANTS = {"pi": pi, "E": E}
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*(_[A-Za-z0-9]+)*")
_DECIMAL = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# Names the generated code or the Python API uses itself, or that would read as something else:
# in the generated modules the public functions take the parameters as arguments beside their
# own locals (out, f, g, v) and globals (np, FAMILY…); the Python API passes parameters as
# keywords beside x, validate, grad, derivation; the engine calls classmethods (cls) with
# them.  tests/test_user.py reads the generated sources and the signatures to keep this whole.
RESERVED = {
    "np", "xp", "special", "device", "dtype", "batch", "size", "i", "j", "k", "l", "K", "sum",
    "out", "f", "g", "v", "grad", "validate", "derivation", "params", "cls", "self",
    "log_prob", "eligibility", "hessian", "fisher", "natural_gradient",
    "FAMILY", "PARAM", "PARAMETERS", "BACKEND",
    *FUNCTIONS, *CONSTANTS, *dir(builtins),  # generated code calls len(), max(), tuple()…
}


def check_name(name: str, what: str) -> str:
    """A user-chosen name that will become a Python identifier in generated code."""
    if not isinstance(name, str) or not _NAME.fullmatch(name or "") or len(name) > 32:
        raise SymeligError(f"{what} {name!r} is not a plain name: letters and digits (and inner _), at most 32 characters")
    if keyword.iskeyword(name) or name in RESERVED or name.startswith("e_"):
        raise SymeligError(f"{what} {name!r} is reserved; choose another name")
    return name


def parse(text: str, names: dict, where: str = "expression"):
    """SymPy expression for ``text`` over ``names`` {name: Symbol or IndexedBase}."""
    if not isinstance(text, str):
        raise SymeligError(f"{where} must be text")
    if len(text) > MAX_LENGTH:
        raise SymeligError(f"{where} is {len(text)} characters long; at most {MAX_LENGTH} are allowed")
    bad = next((n for n, ch in enumerate(text) if not (32 <= ord(ch) < 127)), None)
    if bad is not None:
        raise SymeligError(f"{where}, position {bad + 1}: character {text[bad]!r} is not allowed (plain ASCII math only)")
    depth = 0
    for n, ch in enumerate(text):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth > MAX_DEPTH:
            raise SymeligError(f"{where}, position {n + 1}: nested deeper than {MAX_DEPTH} levels")
    if not text.strip():
        raise SymeligError(f"{where} is empty")
    source = text.strip()
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as err:
        raise SymeligError(f"{where}, position {err.offset or 0}: not a valid expression ({err.msg})") from None
    except (ValueError, MemoryError, RecursionError):
        raise SymeligError(f"{where}: not a valid expression") from None
    builder = _Builder(names, where, source)
    try:
        expression = builder.build(tree.body)
    except RecursionError:
        raise SymeligError(f"{where}: too long a chain of operations") from None
    check_cost(expression, where)
    return expression


# ---------------------------------------------------------------------------------------------
# constants in floats, before SymPy sees them

class _NotReal(ArithmeticError):
    """A constant that is complex, infinite or undefined."""


def _real_power(x: float, y: float) -> float:
    if x == 0 and y < 0:
        raise ZeroDivisionError
    if x < 0 and y != int(y):
        raise _NotReal("a negative number to a non-integer power is complex")
    return math.pow(x, y)


def _log(x: float) -> float:
    if x <= 0:
        raise _NotReal("log takes a number > 0")
    return math.log(x)


def _lgamma(x: float) -> float:
    if x <= 0:
        raise _NotReal("lgamma takes a number > 0")
    return math.lgamma(x)


def _digamma(x: float) -> float:
    if x <= 0 and x == int(x):
        raise _NotReal("digamma has poles at 0, −1, −2, …")
    import mpmath

    with mpmath.workdps(20):
        return float(mpmath.digamma(x))


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def _softplus(x: float) -> float:
    return x + math.log1p(math.exp(-x)) if x > 0 else math.log1p(math.exp(x))


_FLOAT_FUNCTIONS = {
    exp: math.exp, log: _log, loggamma: _lgamma, sigmoid: _sigmoid, softplus: _softplus,
}
_FLOAT_CONSTANTS = {S.Pi: math.pi, S.Exp1: math.e, S.EulerGamma: float(EulerGamma.evalf(20))}
NON_FINITE = (S.ComplexInfinity, S.NaN, S.Infinity, S.NegativeInfinity, S.ImaginaryUnit)


def float_value(expr) -> float:
    """The value of a constant SymPy expression built by this module, in floats (never exactly:
    an exact 2**-2**30 or lgamma(10**8) would not finish).  Raises OverflowError beyond the
    float range, _NotReal for a complex or undefined value, ZeroDivisionError for a pole."""
    if expr.is_Rational:
        return int(expr.p) / int(expr.q)
    if expr.is_Float:
        return float(expr)
    if expr in _FLOAT_CONSTANTS:
        return _FLOAT_CONSTANTS[expr]
    if expr in NON_FINITE:
        raise _NotReal(f"{expr} is not a finite real number")
    if expr.is_Add:
        return math.fsum(float_value(a) for a in expr.args)
    if expr.is_Mul:
        return math.prod(float_value(a) for a in expr.args)
    if expr.is_Pow:
        return _real_power(float_value(expr.base), float_value(expr.exp))
    if isinstance(expr, polygamma) and expr.args[0] == 0:
        return _digamma(float_value(expr.args[1]))
    function = _FLOAT_FUNCTIONS.get(type(expr))
    if function is not None:
        return function(float_value(expr.args[0]))
    value = complex(expr.evalf(20))  # anything SymPy made of the above; small by construction
    if value.imag:
        raise _NotReal(f"{expr} is not a real number")
    return value.real


def _in_range(value: float) -> str:
    """'' when a constant is allowed, else why not."""
    if not math.isfinite(value) or abs(value) > LARGEST:
        return "is beyond the float range (at most 1e300 in magnitude)"
    if 0 < abs(value) < SMALLEST:
        return "is below the float range (non-zero numbers are at least 1e-300 in magnitude)"
    return ""


def _small_rational(expr, digits: int = 30) -> bool:
    return expr.is_Rational and abs(expr.p) < 10**digits and expr.q < 10**digits


_OPERATORS = {ast.BitXor: "^", ast.BitAnd: "&", ast.BitOr: "|", ast.FloorDiv: "//", ast.Mod: "%",
              ast.MatMult: "@", ast.LShift: "<<", ast.RShift: ">>"}


class _Builder:
    def __init__(self, names: dict, where: str, source: str):
        self.names = names
        self.where = where
        self.source = source
        self.values: dict = {}

    # errors -------------------------------------------------------------------------------
    def fail(self, node, what: str):
        allowed = ", ".join(sorted(self.names)) or "none"
        raise SymeligError(
            f"{self.where}, position {getattr(node, 'col_offset', 0) + 1}: {what} is not allowed; use numbers, "
            f"the names ({allowed}), + - * / **, and {', '.join(f for f in FUNCTIONS)}(…)"
        )

    def refuse(self, node, why: str):
        """A subexpression that parses but has no finite real value, or costs too much."""
        raise SymeligError(f"{self.where}, position {getattr(node, 'col_offset', 0) + 1}: {self.segment(node)} {why}")

    def segment(self, node) -> str:
        text = ast.get_source_segment(self.source, node) or "the expression"
        return text if len(text) <= 60 else text[:57] + "..."

    def value(self, expr) -> float:
        if expr not in self.values:
            self.values[expr] = float_value(expr)
        return self.values[expr]

    def constant(self, node, compute, exact):
        """A constant subexpression: its float value from ``compute()`` must be in range, and the
        SymPy form is ``exact()`` when that is cheap (exact is None: the float itself)."""
        try:
            value = compute()
        except OverflowError:
            return self.refuse(node, "is beyond the float range (at most 1e300 in magnitude)")
        except ZeroDivisionError:
            return self.refuse(node, "divides by zero")
        except (_NotReal, ValueError) as err:
            return self.refuse(node, f"is not a finite real number: {err}" if str(err) else "is not a finite real number")
        problem = _in_range(value)
        if problem:
            return self.refuse(node, problem)
        if exact is None:
            result = Rational(int(value)) if value == int(value) and abs(value) < 2**53 else SymFloat(repr(value))
        else:
            result = exact()
        self.values[result] = value
        return result

    # the tree ------------------------------------------------------------------------------
    def build(self, node):
        result = self._build(node)
        if result.has(*NON_FINITE):
            return self.refuse(node, f"is not a finite real number (it is {_short(result)})")
        if result.free_symbols:
            if result.is_extended_real is False:
                return self.refuse(node, "is not a real number for any value of the names it uses")
        else:  # constant, maybe after SymPy cancelled the names (m - m): its value must be in range
            self.constant(node, lambda: self.value(result), lambda: result)
        return result

    def _build(self, node):
        if isinstance(node, ast.Constant):
            return self._number(node)
        if isinstance(node, ast.Name):
            if node.id in self.names:
                value = self.names[node.id]
                return value[i] if isinstance(value, IndexedBase) else value  # a vector name means its component i
            if node.id in CONSTANTS:
                return CONSTANTS[node.id]
            return self.fail(node, f"the name {node.id!r} (not declared)")
        if isinstance(node, ast.Subscript):
            return self._component(node)
        if isinstance(node, ast.BinOp):
            return self._binary(node)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            operand = self.build(node.operand)
            return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.Call):
            return self._call(node)
        return self.fail(node, type(node).__name__)

    def _number(self, node):
        text = ast.get_source_segment(self.source, node) or ""
        if type(node.value) not in (int, float):
            if type(node.value) is complex:
                return self.fail(node, f"the complex number {text}")
            return self.fail(node, f"the constant {node.value!r}")
        if not _DECIMAL.fullmatch(text):
            spelled = f"write {node.value!r}; " if type(node.value) is int and abs(node.value) < 10**20 else ""
            raise SymeligError(
                f"{self.where}, position {node.col_offset + 1}: the number {text} is not a decimal number "
                f"({spelled}numbers are written like 16, 0.5 or 1e-3)"
            )
        if type(node.value) is int:
            if abs(node.value) >= 10**300:
                return self.refuse(node, "is beyond the float range (at most 1e300 in magnitude)")
            return Integer(node.value)
        value = node.value
        mantissa = re.split("[eE]", text)[0]
        if value == 0 and mantissa.strip("0.") != "":
            return self.refuse(node, "is below the float range: it would read as 0 (non-zero numbers are at least 1e-300 in magnitude)")
        problem = _in_range(value)
        if problem:
            return self.refuse(node, problem)
        # an integral literal is exact as written (1e300 is 10**300, not the nearest double)
        result = Rational(text) if value == int(value) else SymFloat(text)
        self.values[result] = value
        return result

    def _binary(self, node):
        ops = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
               ast.Div: lambda a, b: a / b, ast.Pow: lambda a, b: a**b}
        op = type(node.op)
        if op not in ops:
            symbol = _OPERATORS.get(op, op.__name__)
            hint = " (use ** for powers)" if op is ast.BitXor else ""  # ^ is a power in TeX and in most math tools
            return self.fail(node, f"the operator {symbol}{hint}")
        a, b = self.build(node.left), self.build(node.right)
        operation = ops[op]
        if not a.free_symbols and not b.free_symbols:
            return self._fold(node, op, a, b, operation)
        if op is ast.Div and not b.free_symbols and self.value(b) == 0:
            return self.refuse(node, "divides by zero")
        if op is ast.Pow:
            if not b.free_symbols and abs(self.value(b)) > MAX_POWER:
                return self.refuse(node, f"raises an expression in the parameters to the power {self.segment(node.right)}: "
                                         f"at most {MAX_POWER} in magnitude (its expansion would not finish in bounded time)")
            if not a.free_symbols and self.value(a) <= 0:
                return self.refuse(node, "raises a number ≤ 0 to a power that depends on the parameters: not a real number")
        return operation(a, b)

    def _fold(self, node, op, a, b, operation):
        x, y = self.value(a), self.value(b)

        def compute():
            if op is ast.Add:
                return x + y
            if op is ast.Sub:
                return x - y
            if op is ast.Mult:
                value = x * y
            elif op is ast.Div:
                value = x / y
            else:
                value = _real_power(x, y)
            if value == 0 and x != 0 and not (op is ast.Mult and y == 0):
                return 0.5 * SMALLEST  # underflow: the true value is not 0
            return value

        exact = lambda: operation(a, b)  # noqa: E731
        if op is ast.Pow and not (b.is_Rational and abs(b.p) <= MAX_POWER and b.q <= MAX_POWER
                                  and (_small_rational(a) or not a.is_Rational)):
            exact = None  # e.g. 2**0.5, 3**100, (10**299)**(1/3): the float value
        return self.constant(node, compute, exact)

    def _component(self, node):
        base = node.value
        if not (isinstance(base, ast.Name) and isinstance(self.names.get(base.id), IndexedBase)):
            return self.fail(node, "indexing anything but a declared vector")
        if not (isinstance(node.slice, ast.Name) and node.slice.id == "i"):
            return self.fail(node.slice, "an index other than i")
        return self.names[base.id][i]

    def _call(self, node):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            return self.fail(node, "calling " + (node.func.id if isinstance(node.func, ast.Name) else "an expression"))
        name = node.func.id
        function, arity = FUNCTIONS[name]
        if node.keywords or len(node.args) != arity or any(isinstance(a, ast.Starred) for a in node.args):
            return self.fail(node, f"{name} with other than {arity} positional argument")
        arg = self.build(node.args[0])
        if function is None:  # sum over the category index
            if not arg.has(i):
                return self.fail(node, "sum of something without a category component")
            return Sum(arg.xreplace({i: SUM_INDEX}), (SUM_INDEX, 0, K - 1))
        if arg.free_symbols:
            return function(arg)
        x = self.value(arg)
        compute = {
            "log": lambda: _log(x), "exp": lambda: _exp(x), "sqrt": lambda: math.sqrt(x) if x >= 0 else _negative_sqrt(),
            "softplus": lambda: _never_zero(_softplus(x)), "sigmoid": lambda: _never_zero(_sigmoid(x)),
            "lgamma": lambda: _lgamma(x),
            "digamma": lambda: _digamma(x),
        }[name]
        cheap = {
            # SymPy evaluates these of an integer exactly: (n−1)! and a harmonic number
            "lgamma": (arg.is_Integer and int(arg) <= MAX_POWER) or (arg.is_Rational and _small_rational(arg, 6)),
            "digamma": False,
            "sqrt": _small_rational(arg) or not arg.is_Rational,
        }.get(name, True)
        return self.constant(node, compute, (lambda: function(arg)) if cheap else None)


def _exp(x: float) -> float:
    return _never_zero(math.exp(x))


def _never_zero(value: float) -> float:
    """A value of a function that is never 0 (exp, sigmoid, softplus): 0 is an underflow."""
    return 0.5 * SMALLEST if value == 0 else value


def _negative_sqrt():
    raise _NotReal("sqrt takes a number ≥ 0")


def _short(expr) -> str:
    text = unparse(expr)
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------------------------------------
# the cost of what SymPy will do with the whole expression

def check_cost(expression, where: str = "expression") -> None:
    """Refuse an expression whose derivation would not finish in bounded time: powers of
    expressions in the parameters above MAX_POWER (also as SymPy combines them: ((x-m)**64)**64),
    numeric factors above MAX_POWER in exponents (exp(1000*m) + exp(m) is a polynomial of degree
    1000 in exp(m) to SymPy's factor), constants above MAX_POWER added in the exponent of a
    number ((1000/pi)**(s + 123456789): expand evaluates (1000/pi)**123456789), and more than MAX_TERMS terms in a full expansion."""
    for node in preorder_traversal(expression):
        if node.is_Pow and node.base.free_symbols and not node.exp.free_symbols:
            power = _number_value(node.exp)
            if abs(power) > MAX_POWER:
                raise SymeligError(
                    f"{where}: {_short(node)} raises an expression in the parameters to the power {_short(node.exp)}; "
                    f"at most {MAX_POWER} in magnitude (its expansion would not finish in bounded time)"
                )
    terms = _expanded_terms(expression, MAX_TERMS)
    if terms > MAX_TERMS:
        raise SymeligError(
            f"{where}: expanded, the expression would have more than {MAX_TERMS} terms; derivatives of it would "
            "not finish in bounded time (keep powers of sums small, or name the repeated part with fewer factors)"
        )
    for node in preorder_traversal(expression):
        if isinstance(node, exp):
            exponent = node.args[0]
        elif node.is_Pow and node.exp.free_symbols and not node.base.free_symbols:
            exponent = node.exp
        else:
            continue
        for term in Add.make_args(expand_mul(exponent)):
            if not term.free_symbols and node.is_Pow and not node.base.is_Float and abs(_number_value(term)) > MAX_POWER:
                # b**(s + n) is split by expand into b**s·b**n, and b**n evaluated exactly: a number
                # of n·log10(b) digits (C code, which no time limit interrupts)
                raise SymeligError(
                    f"{where}: {_short(node)} has the constant {_short(term)} in its exponent; at most "
                    f"{MAX_POWER} in magnitude (SymPy would evaluate {_short(node.base)} to that power exactly); "
                    "fold the constant into the base or rescale"
                )
            factors = Mul.make_args(term)
            numeric = [f for f in factors if not f.free_symbols]
            if len(numeric) < len(factors) and numeric and abs(_number_value(Mul(*numeric))) > MAX_POWER:
                raise SymeligError(
                    f"{where}: {_short(node)} has the factor {_short(Mul(*numeric))} in its exponent; at most "
                    f"{MAX_POWER} in magnitude (SymPy would expand it as a power of degree that large); rescale the parameter"
                )


def _number_value(expr) -> float:
    try:
        return float_value(expr)
    except (OverflowError, ArithmeticError, ValueError):
        return math.inf


def _expanded_terms(expr, cap: int) -> int:
    """An upper bound on the number of terms of ``expand(expr)``, capped at cap + 1: sums add,
    products multiply, an integer power n of t terms has C(t + n − 1, n); denominators, the
    arguments of functions and of other powers are expanded on their own (their terms count
    too) and are one factor outside."""
    inside = []

    def terms(e) -> int:
        if e.is_Atom or isinstance(e, Indexed):
            return 1
        if e.is_Add:
            return min(cap + 1, sum(terms(a) for a in e.args))
        if e.is_Mul:
            product = 1
            for a in e.args:
                product = min(cap + 1, product * terms(a))
            return product
        if e.is_Pow and e.exp.is_Integer:
            base, n = terms(e.base), abs(int(e.exp))
            expanded = 1 if base == 1 else cap + 1 if n > MAX_POWER else min(cap + 1, math.comb(base + n - 1, n))
            if e.exp > 0:
                return expanded
            inside.append(expanded)  # a denominator is expanded on its own: one factor outside
            return 1
        inside.extend(terms(a) for a in e.args)
        return 1

    total = terms(expr)
    return min(cap + 1, total + sum(inside))


# ---------------------------------------------------------------------------------------------
# back to text

class _Unparser(StrPrinter):
    """Expressions printed back in the grammar this module reads (for regenerate commands)."""

    def _print_Sum(self, expr):
        (index, _, _), = expr.limits
        return f"sum({self._print(expr.function.xreplace({index: i}))})"

    def _print_Dummy(self, expr):
        return expr.name

    def _print_loggamma(self, expr):
        return f"lgamma({self._print(expr.args[0])})"

    def _print_polygamma(self, expr):
        order, a = expr.args
        return f"digamma({self._print(a)})" if order == 0 else super()._print_Function(expr)

    def _print_Exp1(self, expr):
        return "E"

    def _print_Pi(self, expr):
        return "pi"


def unparse(expr) -> str:
    """``expr`` as text in the grammar of :func:`parse` where it can be (sums, lgamma, digamma…)."""
    return _Unparser({"full_prec": False}).doprint(expr)
