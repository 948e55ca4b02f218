"""Elementwise expressions over output-sized arrays as ufunc calls that reuse their buffers.

``np.exp(z - m) / s`` allocates three arrays the size of the output and walks memory three
times; a hand-written kernel does ``t = np.subtract(z, m); np.exp(t, out=t); t /= s``.  This
compiler turns any elementwise SymPy expression into such code, for every catalog entry:

* a node is *big* when it has the output's size (it carries the category axis, or, for families
  without one, any array); small nodes (per-sample sums, gathers, constants) print as plain
  expressions, they cost nothing;
* a big intermediate the kernel created itself is *owned*: the next ufunc writes into it with
  ``out=`` instead of allocating;  inputs are never written;
* a named intermediate (a CSE temporary, ``exp(z − max)``) is owned by the statement that uses
  it last, so its buffer is recycled there;
* products are computed small-factors-first, so a big buffer is multiplied once by a per-sample
  coefficient instead of once per factor;
* an in-place write needs the other operand to broadcast into the buffer: where the argument
  dependencies prove it the code says ``out=t``; otherwise ``out=_into(t, other)``, which falls
  back to a new array when shapes are not known to fit (a parameter shared across the batch).

The plan is data: each statement is a record (:class:`Assign`, or a :class:`Call` writing in
place) whose operands are :class:`Name` records, nested calls or SymPy expressions of small
values.  Calling a fresh buffer by its statement's name is setting one field; :func:`render`
writes the text once, at the end.
"""
from __future__ import annotations

from dataclasses import dataclass

from sympy import Add, Mul, Rational, S, Symbol, exp, log
from sympy import Abs, cos, loggamma, polygamma, sin, tanh

from ..functions import softplus
from sympy.codegen.cfunctions import expm1, log1p

# SymPy function -> the ufunc computing it; all accept out=.
_UNARY = {
    exp: "numpy.exp", log: "numpy.log", cos: "numpy.cos", sin: "numpy.sin", tanh: "numpy.tanh", Abs: "numpy.abs",
    loggamma: "scipy.special.gammaln", expm1: "numpy.expm1", log1p: "numpy.log1p",
}


@dataclass(eq=False)
class Name:
    """An array called by name: an input, a temporary, or a buffer the planner made.  Every
    statement refers to the record, so renaming a buffer is setting ``name``."""
    name: str


@dataclass(eq=False)
class Call:
    """``function(*args, out=out)``: ``function`` a qualified name (``numpy.exp``) or a helper's;
    operands are :class:`Name`, :class:`Call` or SymPy expressions of small values."""
    function: str
    args: tuple
    out: object = None


@dataclass(eq=False)
class Assign:
    """``target = value``."""
    target: Name
    value: object


def render(statements, printer) -> list:
    """The planned statements as lines of numpy code, names as they stand at the end."""
    def code(operand) -> str:
        if isinstance(operand, Name):
            return operand.name
        if isinstance(operand, Call):
            out = [] if operand.out is None else [f"out={code(operand.out)}"]
            return f"{printer._module_format(operand.function)}({', '.join([*map(code, operand.args), *out])})"
        return printer.doprint(operand)

    return [f"{s.target.name} = {code(s.value)}" if isinstance(s, Assign) else code(s) for s in statements]


class Buffers:
    """Plan big elementwise expressions as statements; ``statements`` collects the records."""

    def __init__(self, printer, is_big, deps):
        self.printer = printer
        self.is_big = is_big           # expr -> bool: has the output's size
        self.deps = deps               # expr -> frozenset of argument names it depends on
        self.statements: list = []
        self.count = 0
        self.names: dict = {}          # name -> its Name record, one per name
        self.owned_deps: dict = {}     # owned Name record -> its argument dependencies
        self.consumable: set = set()   # names whose buffers the current statement may recycle
        self._last_fresh = None        # the buffer the current statement made last

    # -- public -------------------------------------------------------------------------------

    def assign(self, target: str, expr, consumable: set) -> bool:
        """Plan statements that leave ``expr`` in ``target``; True when ``target`` is a buffer the
        kernel owns (fresh, writable), False when it may alias an input."""
        self.consumable = {s for s in consumable if expr.count(s) == 1}
        self._last_fresh = None
        value, owned = self._emit(expr)
        if owned and value is self._last_fresh:  # made by this statement: call it by the statement's name
            value.name = target
            self.names[target] = value
            return True
        record = self.names[target] = Name(target)
        self.statements.append(Assign(record, value))
        if owned:
            self.owned_deps[record] = self.owned_deps.get(value, self.deps(expr))
        return owned

    def owned(self, name: str, expr) -> None:
        """Declare ``name`` (computed elsewhere, e.g. exp(z − max)) a buffer the kernel owns."""
        self.owned_deps[self._name(name)] = self.deps(expr)

    # -- planning -------------------------------------------------------------------------------

    def _name(self, name: str) -> Name:
        return self.names.setdefault(name, Name(name))

    def _fresh(self, value, deps) -> tuple:
        """A new buffer holding ``value`` (a call, or an expression that returns a new array)."""
        name = self._last_fresh = Name(f"_b{self.count}")
        self.count += 1
        self.statements.append(Assign(name, value))
        self.owned_deps[name] = deps
        return name, True

    def _emit(self, e) -> tuple:
        """(operand, owned): a Name holding e's value, or e itself where it is small."""
        if not self.is_big(e):
            return e, False
        if isinstance(e, Symbol):
            name = self._name(str(e))
            return name, (e in self.consumable and name in self.owned_deps)
        if e.is_Add:
            return self._add(e)
        if e.is_Mul:
            return self._mul(e)
        if e.is_Pow:
            return self._pow(e)
        if type(e) in _UNARY:
            return self._unary(_UNARY[type(e)], e.args[0], e)
        if isinstance(e, softplus):  # log(1 + e^z) = logaddexp(0, z)
            return self._unary("numpy.logaddexp", e.args[0], e, first=S.Zero)
        if isinstance(e, polygamma) and e.args[0] == 0:
            return self._unary("scipy.special.digamma", e.args[1], e)
        # anything else (helpers, np.where forms) returns a new array
        return self._fresh(e, self.deps(e))

    def _unary(self, ufunc: str, arg, e, first=None) -> tuple:
        """ufunc(arg), or ufunc(first, arg): in arg's buffer where the kernel owns it."""
        value, owned = self._emit(arg)
        args = (value,) if first is None else (first, value)
        if owned:
            self.statements.append(Call(ufunc, args, out=value))
            return value, True
        return self._fresh(Call(ufunc, args), self.deps(e))

    def _into(self, acc: Name, other_expr, other):
        """The out= argument for writing ``acc op other`` into ``acc``."""
        if self.deps(other_expr) <= self.owned_deps[acc]:
            return acc
        self.printer.helpers.add("_into")
        return Call("_into", (acc, other))

    def _accumulate(self, acc: Name, ufunc: str, other_expr, other, reverse=False) -> Name:
        """acc op other (other op acc with ``reverse``), written into acc where it fits."""
        if not (isinstance(other, Name) or other_expr.is_number or other_expr.is_Symbol):
            other = self._name_small(other)  # read twice: in the ufunc and in _into
        out = self._into(acc, other_expr, other)
        args = (other, acc) if reverse else (acc, other)
        if out is acc:
            self.statements.append(Call(ufunc, args, out=acc))
            return acc
        # the result may be a new, larger array: a fresh name for it
        return self._fresh(Call(ufunc, args, out=out), self.owned_deps[acc] | self.deps(other_expr))[0]

    def _name_small(self, value) -> Name:
        """A per-sample operand used twice (in the ufunc and in _into) is computed once."""
        name = Name(f"_c{self.count}")
        self.count += 1
        self.statements.append(Assign(name, value))
        return name

    def _add(self, e) -> tuple:
        big = [t for t in Add.make_args(e) if self.is_big(t)]
        small = Add(*[t for t in Add.make_args(e) if not self.is_big(t)])
        # (positive?, magnitude): a − b is np.subtract, not a negation and an addition
        terms = [(False, -t) if self._subtracted(t) else (True, t) for t in big]
        compiled = [(positive, t, *self._emit(t)) for positive, t in terms]
        acc = next((c for c in compiled if c[3] and c[0]), None) or next((c for c in compiled if c[3]), None)
        if acc is None:  # nothing owned yet: the first operation makes a new array
            first = next((c for c in compiled if c[0]), compiled[0])
            rest = [c for c in compiled if c is not first]
            if not first[0]:
                name, _ = self._fresh(Call("numpy.negative", (first[2],)), self.deps(first[1]))
            elif rest:
                second = rest.pop(0)
                op = "numpy.add" if second[0] else "numpy.subtract"
                name, _ = self._fresh(Call(op, (first[2], second[2])), self.deps(first[1]) | self.deps(second[1]))
            else:
                name, _ = self._fresh(Call("numpy.add", (first[2], small)), self.deps(e))
                small = 0
        else:
            name = acc[2]
            rest = [c for c in compiled if c is not acc]
            if not acc[0]:  # p − acc in place, or −acc
                positive = next((c for c in rest if c[0]), None)
                if positive is not None:
                    rest.remove(positive)
                    name = self._accumulate(name, "numpy.subtract", positive[1], positive[2], reverse=True)
                else:
                    self.statements.append(Call("numpy.negative", (name,), out=name))
        for positive, t, value, _ in rest:
            name = self._accumulate(name, "numpy.add" if positive else "numpy.subtract", t, value)
        if small != 0:
            positive = not small.could_extract_minus_sign()
            magnitude = small if positive else -small
            name = self._accumulate(name, "numpy.add" if positive else "numpy.subtract", magnitude, magnitude)
        return name, True

    def _subtracted(self, term) -> bool:
        """−y is a subtraction of y, unless y is a product whose per-sample coefficient can
        carry the sign for free (−n·softmax: multiply by −n, then add)."""
        if not term.could_extract_minus_sign():
            return False
        return not (term.is_Mul and any(not self.is_big(f) and f != -1 for f in Mul.make_args(term)))


    def _mul(self, e) -> tuple:
        factors = Mul.make_args(e)
        small = Mul(*[f for f in factors if not self.is_big(f)])
        big = [f for f in factors if self.is_big(f)]
        numerators = [f for f in big if not (f.is_Pow and f.exp.is_number and f.exp < 0)]
        denominators = [1 / f for f in big if f not in numerators]
        compiled = [(True, f, *self._emit(f)) for f in numerators] + [(False, f, *self._emit(f)) for f in denominators]
        acc = next((c for c in compiled if c[3] and c[0]), None)
        owned_denominator = next((c for c in compiled if c[3] and not c[0]), None)
        if acc is not None:
            name, rest = acc[2], [c for c in compiled if c is not acc]
        elif owned_denominator is not None and numerators:  # a / b written into b
            first = compiled[0]
            rest = [c for c in compiled if c is not first and c is not owned_denominator]
            name = self._accumulate(owned_denominator[2], "numpy.divide", first[1], first[2], reverse=True)
        elif numerators:
            first, rest = compiled[0], compiled[1:]
            if rest:
                second = rest.pop(0)
                op = "numpy.multiply" if second[0] else "numpy.divide"
                name, _ = self._fresh(Call(op, (first[2], second[2])), self.deps(first[1]) | self.deps(second[1]))
            else:  # one big factor times small ones
                return self._fresh(Call("numpy.multiply", (first[2], small)), self.deps(e))
        else:  # only denominators: small / big
            first, rest = compiled[0], compiled[1:]
            name, _ = self._fresh(Call("numpy.divide", (small, first[2])), self.deps(first[1]))
            small = Rational(1)
        for numerator, f, value, _ in rest:
            name = self._accumulate(name, "numpy.multiply" if numerator else "numpy.divide", f, value)
        if small == -1:
            self.statements.append(Call("numpy.negative", (name,), out=name))
        elif small != 1:
            name = self._accumulate(name, "numpy.multiply", small, small)
        return name, True

    def _pow(self, e) -> tuple:
        base, exponent = e.args
        if exponent == 2:
            return self._unary("numpy.square", base, e)
        if exponent == 4:
            name, _ = self._unary("numpy.square", base, base**2)
            self.statements.append(Call("numpy.square", (name,), out=name))
            return name, True
        if exponent == 3:  # b² in a new buffer, then · b (b itself is read twice: never overwritten)
            value, _ = self._emit(base)
            name, _ = self._fresh(Call("numpy.square", (value,)), self.deps(base))
            self.statements.append(Call("numpy.multiply", (name, value), out=name))
            return name, True
        if exponent == Rational(1, 2):
            return self._unary("numpy.sqrt", base, e)
        if exponent.is_number and exponent < 0:
            return self._mul(Mul(1, e, evaluate=False))
        value, owned = self._emit(base)
        if owned:  # the exponent may be an array of a larger shape: write in place only where it fits
            return self._accumulate(value, "numpy.power", exponent, exponent), True
        return self._fresh(Call("numpy.power", (value, exponent)), self.deps(e))
