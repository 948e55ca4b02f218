"""User expressions, parsed by a whitelist: nothing the user types is ever executed.

Python's ``ast.parse`` only builds a syntax tree (it runs nothing); this module then accepts a
tree made of exactly these nodes, and builds the SymPy expression itself:

* numbers (decimal integers and floats), and the constants ``pi`` and ``E``;
* declared names (the parameters, the sample), and ``name[i]`` for a category component;
* ``+ - * / **`` and unary ``-``/``+``; parentheses;
* the functions in :data:`FUNCTIONS`, called with positional arguments only;
* ``sum(f)``: Σ over the category index, Σ_{k=0}^{K−1} f(k).

Anything else (attribute access, subscripts other than ``[i]``, strings, lambdas, calls of
other names, comparisons, keywords…) is a one-line :class:`SymeligError` with its position.
The text is limited in length and nesting before it reaches the parser, so a 10 MB or deeply
nested input fails fast instead of exhausting memory or the recursion limit.
"""
from __future__ import annotations

import ast
import builtins
import keyword
import math
import re

from sympy import E, IndexedBase, Integer, Rational, Sum, Symbol, exp, log, loggamma, pi, polygamma, sqrt
from sympy import Float as SymFloat

from .errors import SymeligError
from .family import K, i
from .functions import sigmoid, softplus

# a user's sum gets its own index, so it never captures the family's own sums over k
SUM_INDEX = Symbol("l", integer=True, nonnegative=True)
MAX_LENGTH = 2000
MAX_DEPTH = 40

FUNCTIONS = {
    "log": (log, 1), "exp": (exp, 1), "sqrt": (sqrt, 1), "softplus": (softplus, 1), "sigmoid": (sigmoid, 1),
    "lgamma": (loggamma, 1), "digamma": (lambda a: polygamma(0, a), 1), "sum": (None, 1),
}
CONSTANTS = {"pi": pi, "E": E}
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*(_[A-Za-z0-9]+)*")
# names the generated code uses itself, or that would read as something else
RESERVED = {
    "np", "xp", "special", "device", "dtype", "batch", "size", "i", "j", "k", "l", "K", "sum",
    *FUNCTIONS, *CONSTANTS, *dir(builtins),  # generated code calls len(), max(), tuple()…
}


def _finite(number) -> bool:
    try:
        return math.isfinite(float(number)) and abs(float(number)) < 1e300
    except (OverflowError, TypeError, ValueError):
        return False


def _representable(a, b, op) -> bool:
    """Whether a constant subexpression stays within float range, decided in floats *before*
    SymPy computes it exactly (10**10**10 would take forever)."""
    try:
        x, y = float(a), float(b)
        value = x**y if op is ast.Pow else x * y if op is ast.Mult else x / y if op is ast.Div and y else 0.0
        return math.isfinite(value) and abs(value) < 1e300
    except (OverflowError, TypeError, ValueError, ZeroDivisionError):
        return False


def check_name(name: str, what: str) -> str:
    """A user-chosen name that will become a Python identifier in generated code."""
    if not _NAME.fullmatch(name or "") or len(name) > 32:
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
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as err:
        raise SymeligError(f"{where}, position {err.offset or 0}: not a valid expression ({err.msg})") from None
    except (ValueError, MemoryError, RecursionError):
        raise SymeligError(f"{where}: not a valid expression") from None
    try:
        return _Builder(names, where).build(tree.body)
    except RecursionError:
        raise SymeligError(f"{where}: too long a chain of operations") from None


class _Builder:
    def __init__(self, names: dict, where: str):
        self.names = names
        self.where = where

    def fail(self, node, what: str):
        allowed = ", ".join(sorted(self.names)) or "none"
        raise SymeligError(
            f"{self.where}, position {getattr(node, 'col_offset', 0) + 1}: {what} is not allowed; use numbers, "
            f"the names ({allowed}), + - * / **, and {', '.join(f for f in FUNCTIONS)}(…)"
        )

    def build(self, node):
        if isinstance(node, ast.Constant):
            if type(node.value) is int:
                if abs(node.value) >= 10**300:
                    return self.fail(node, "a number beyond the float range")
                return Integer(node.value)
            if type(node.value) is float:
                if not math.isfinite(node.value):
                    return self.fail(node, f"the number {node.value!r}")
                return Rational(node.value) if node.value == int(node.value) else SymFloat(repr(node.value))
            return self.fail(node, f"the constant {node.value!r}")
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
            a, b = self.build(node.left), self.build(node.right)
            ops = {ast.Add: lambda: a + b, ast.Sub: lambda: a - b, ast.Mult: lambda: a * b,
                   ast.Div: lambda: a / b, ast.Pow: lambda: a**b}
            if type(node.op) not in ops:
                return self.fail(node, f"the operator {type(node.op).__name__}")
            if a.is_number and b.is_number and not _representable(a, b, type(node.op)):
                return self.fail(node, "a number beyond the float range")
            result = ops[type(node.op)]()
            if result.is_Number and not _finite(result):
                return self.fail(node, "a number beyond the float range")
            return result
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            operand = self.build(node.operand)
            return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.Call):
            return self._call(node)
        return self.fail(node, type(node).__name__)

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
        function, arity = FUNCTIONS[node.func.id]
        if node.keywords or len(node.args) != arity or any(isinstance(a, ast.Starred) for a in node.args):
            return self.fail(node, f"{node.func.id} with other than {arity} positional argument")
        arg = self.build(node.args[0])
        if function is None:  # sum over the category index
            if not arg.has(i):
                return self.fail(node, "sum of something without a category component")
            return Sum(arg.xreplace({i: SUM_INDEX}), (SUM_INDEX, 0, K - 1))
        return function(arg)
