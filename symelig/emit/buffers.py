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
"""
from __future__ import annotations

import re

from sympy import Add, Mul, Rational, Symbol, exp, log
from sympy import Abs, cos, loggamma, polygamma, sin, tanh

from ..functions import softplus
from sympy.codegen.cfunctions import expm1, log1p

# SymPy function -> (ufunc call prefix, extra leading arguments); all accept out=.
_UNARY = {
    exp: "np.exp", log: "np.log", cos: "np.cos", sin: "np.sin", tanh: "np.tanh", Abs: "np.abs",
    loggamma: "special.gammaln", expm1: "np.expm1", log1p: "np.log1p",
}


class Buffers:
    """Compile big elementwise expressions into statements; ``lines`` collects them."""

    def __init__(self, printer, is_big, deps):
        self.printer = printer
        self.is_big = is_big           # expr -> bool: has the output's size
        self.deps = deps               # expr -> frozenset of argument names it depends on
        self.lines: list = []
        self.count = 0
        self.owned_deps: dict = {}     # owned buffer name -> its argument dependencies
        self.consumable: set = set()   # names whose buffers the current statement may recycle
        self._last_fresh = None

    # -- public -------------------------------------------------------------------------------

    def assign(self, target: str, expr, consumable: set) -> bool:
        """Emit code that leaves ``expr`` in ``target``; True when ``target`` is a buffer the
        kernel owns (fresh, writable), False when it may alias an input."""
        self.consumable = {s for s in consumable if expr.count(s) == 1}
        start, first_fresh = len(self.lines), self.count
        code, owned = self._emit(expr)
        if owned and code.startswith("_b") and int(code[2:]) >= first_fresh and code == self._last_fresh:
            # the buffer was made by this statement: call it by the statement's name
            pattern = re.compile(rf"\b{code}\b")
            self.lines[start:] = [pattern.sub(target, line) for line in self.lines[start:]]
            self.owned_deps[target] = self.owned_deps.pop(code)
            code = target
        if code != target:
            self.lines.append(f"{target} = {code}")
        if owned:
            self.owned_deps[target] = self.owned_deps.get(code, self.deps(expr))
        return owned

    def owned(self, name: str, expr) -> None:
        """Declare ``name`` (computed elsewhere, e.g. exp(z − max)) a buffer the kernel owns."""
        self.owned_deps[name] = self.deps(expr)

    # -- compilation ----------------------------------------------------------------------------

    def _plain(self, e) -> str:
        return self.printer.doprint(e)

    def _fresh(self, code: str, deps) -> tuple:
        name = self._last_fresh = f"_b{self.count}"
        self.count += 1
        self.lines.append(f"{name} = {code}")
        self.owned_deps[name] = deps
        return name, True

    def _emit(self, e) -> tuple:
        """(code, owned): a name or expression holding e's value."""
        if not self.is_big(e):
            return self._plain(e), False
        if isinstance(e, Symbol):
            name = str(e)
            return name, (e in self.consumable and name in self.owned_deps)
        if e.is_Add:
            return self._add(e)
        if e.is_Mul:
            return self._mul(e)
        if e.is_Pow:
            return self._pow(e)
        if type(e) in _UNARY:
            return self._unary(_UNARY[type(e)], e.args[0], e)
        if isinstance(e, softplus):
            return self._binary("np.logaddexp", "0", e.args[0], e, operand_first=False)
        if isinstance(e, polygamma) and e.args[0] == 0:
            return self._unary(self.printer._module_format("scipy.special.digamma"), e.args[1], e)
        # anything else (helpers, np.where forms) returns a new array
        return self._fresh(self._plain(e), self.deps(e))

    def _unary(self, ufunc, arg, e) -> tuple:
        if ufunc.startswith("special."):
            ufunc = self.printer._module_format(f"scipy.special.{ufunc.split('.', 1)[1]}")
        code, owned = self._emit(arg)
        if owned:
            self.lines.append(f"{ufunc}({code}, out={code})")
            return code, True
        return self._fresh(f"{ufunc}({code})", self.deps(e))

    def _binary(self, ufunc, left: str, arg, e, operand_first=True) -> tuple:
        code, owned = self._emit(arg)
        args = f"{code}, {left}" if operand_first else f"{left}, {code}"
        if owned:
            self.lines.append(f"{ufunc}({args}, out={code})")
            return code, True
        return self._fresh(f"{ufunc}({args})", self.deps(e))

    def _into(self, acc: str, other_expr, other_code: str) -> str:
        """The out= argument for writing ``acc op other`` into ``acc``."""
        if self.deps(other_expr) <= self.owned_deps[acc]:
            return acc
        self.printer.helpers.add("_into")
        return f"_into({acc}, {other_code})"

    def _accumulate(self, acc: str, ufunc: str, other_expr, other_code: str, reverse=False) -> str:
        """acc op other (other op acc with ``reverse``), written into acc where it fits."""
        if not other_expr.is_number and not other_code.isidentifier():  # an expression, not a name
            other_code = self._name_small(other_code)
        out = self._into(acc, other_expr, other_code)
        args = f"{other_code}, {acc}" if reverse else f"{acc}, {other_code}"
        if out == acc:
            self.lines.append(f"{ufunc}({args}, out={acc})")
            return acc
        # the result may be a new, larger array: rebind a fresh name to it
        name = self._last_fresh = f"_b{self.count}"
        self.count += 1
        self.lines.append(f"{name} = {ufunc}({args}, out={out})")
        self.owned_deps[name] = self.owned_deps[acc] | self.deps(other_expr)
        return name

    def _name_small(self, code: str) -> str:
        """A per-sample operand used twice (in the ufunc and in _into) is computed once."""
        name = f"_c{self.count}"
        self.count += 1
        self.lines.append(f"{name} = {code}")
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
                name, _ = self._fresh(f"np.negative({first[2]})", self.deps(first[1]))
            elif rest:
                second = rest.pop(0)
                op = "np.add" if second[0] else "np.subtract"
                name, _ = self._fresh(f"{op}({first[2]}, {second[2]})", self.deps(first[1]) | self.deps(second[1]))
            else:
                name, _ = self._fresh(f"np.add({first[2]}, {self._plain(small)})", self.deps(e))
                small = 0
        else:
            name = acc[2]
            rest = [c for c in compiled if c is not acc]
            if not acc[0]:  # p − acc in place, or −acc
                positive = next((c for c in rest if c[0]), None)
                if positive is not None:
                    rest.remove(positive)
                    name = self._accumulate(name, "np.subtract", positive[1], positive[2], reverse=True)
                else:
                    self.lines.append(f"np.negative({name}, out={name})")
        for positive, t, code, _ in rest:
            name = self._accumulate(name, "np.add" if positive else "np.subtract", t, code)
        if small != 0:
            positive = not small.could_extract_minus_sign()
            magnitude = small if positive else -small
            name = self._accumulate(name, "np.add" if positive else "np.subtract", magnitude, self._plain(magnitude))
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
            name = self._accumulate(owned_denominator[2], "np.divide", first[1], first[2], reverse=True)
        elif numerators:
            first, rest = compiled[0], compiled[1:]
            if rest:
                second = rest.pop(0)
                op = "np.multiply" if second[0] else "np.divide"
                name, _ = self._fresh(f"{op}({first[2]}, {second[2]})", self.deps(first[1]) | self.deps(second[1]))
            else:  # one big factor times small ones
                return self._fresh(f"np.multiply({first[2]}, {self._plain(small)})", self.deps(e))
        else:  # only denominators: small / big
            first, rest = compiled[0], compiled[1:]
            name, _ = self._fresh(f"np.divide({self._plain(small)}, {first[2]})", self.deps(first[1]))
            small = Rational(1)
        for numerator, f, code, _ in rest:
            name = self._accumulate(name, "np.multiply" if numerator else "np.divide", f, code)
        if small == -1:
            self.lines.append(f"np.negative({name}, out={name})")
        elif small != 1:
            name = self._accumulate(name, "np.multiply", small, self._plain(small))
        return name, True

    def _pow(self, e) -> tuple:
        base, exponent = e.args
        if exponent == 2:
            return self._unary("np.square", base, e)
        if exponent == 4:
            name, _ = self._unary("np.square", base, base**2)
            self.lines.append(f"np.square({name}, out={name})")
            return name, True
        if exponent == 3:  # b² in a new buffer, then · b (b itself is read twice: never overwritten)
            code, _ = self._emit(base)
            name, _ = self._fresh(f"np.square({code})", self.deps(base))
            self.lines.append(f"np.multiply({name}, {code}, out={name})")
            return name, True
        if exponent == Rational(1, 2):
            return self._unary("np.sqrt", base, e)
        if exponent.is_number and exponent < 0:
            return self._mul(Mul(1, e, evaluate=False))
        code, owned = self._emit(base)
        if owned:  # the exponent may be an array of a larger shape: write in place only where it fits
            return self._accumulate(code, "np.power", exponent, self._plain(exponent)), True
        return self._fresh(f"np.power({code}, {self._plain(exponent)})", self.deps(e))
