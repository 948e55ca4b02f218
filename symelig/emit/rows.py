"""Indexed math lowered onto loops over one batch row, for the numba backend (:mod:`symelig.emit.numba`).

:class:`Row` rewrites a derivation's stable expressions over three kinds of names: column symbols
(an argument's entry at the category ``_c`` of the loop running along the row), row symbols
(a scalar argument, an entry at the sample x, a result of the row) and reductions.  Σ_i f(i)
becomes an accumulator; max_i f(i) and Σ_i exp(f(i) − max), the stable pieces of softmax and
log-sum-exp, two more; each gets the pass (a loop along the row) after the last of the
reductions its body needs, so sums and maxima of the arguments share pass 1, Σ exp(f − max)
takes pass 2.  Σ_{i≠x} f(i) is a row definition: the total − f(x), or where that cancels (f(x)
holds more than 1 − 1e-3 of it) the others added up, as the numpy helper does.

:class:`Kernel` writes one kernel: ``@njit(parallel=True, cache=True)``, ``prange`` over the
batch rows, and per row the passes, the per-row values, one loop writing the outputs along the
row, and the value at x.  A pass that computes exp(f − max) stores it in an output row that the
writing loop reads back (from cache) instead of computing it again; what does not change along
the row is computed once per row, before the loop that needs it; common subexpressions once.
"""
from __future__ import annotations

from dataclasses import dataclass

from sympy import Add, Float, Indexed, IndexedBase, KroneckerDelta, Sum, Symbol, cse, exp, log, numbered_symbols

from .. import constraints
from ..family import K, n_blocks, n_placed
from ..functions import LogSumExp, Softmax, SoftmaxExcept, SumExcept
from .asymptotic import asymptotic
from .scalar import ScalarPrinter, not_available
from .stable import bound_arguments, offsets, stable
from .standardize import standardized


_SIZE = Symbol("_K")   # the number of categories, in the floating type


@dataclass
class _Reduction:
    symbol: Symbol
    kind: str            # "sum", "max", or "sumexp": Σ exp(body − top)
    body: object         # over the current category
    level: int           # the pass over the row that computes it, from 1
    top: Symbol = None   # sumexp: the row max it is shifted by
    cache: str = None    # sumexp: the output array whose row keeps exp(body − top)


@dataclass
class _Definition:
    """A row statement: ``symbol = expr``, or with ``values`` Σ_{i≠x} values(i) from the total
    ``expr`` and the entry ``at`` x."""
    symbol: Symbol
    expr: object
    values: object = None
    at: object = None


@dataclass
class Output:
    array: str            # the kernel's output argument
    expr: object          # lowered
    vector: bool          # one value per category (else one per row)
    at: object = None     # vector: the value at x, put there (``add``: added there)
    add: bool = False
    places: tuple = ("",)  # per-row outputs: index suffixes written, e.g. (", 0, 1", ", 1, 0")


class Row:
    """Indexed math over one batch row, lowered onto column symbols (the category of a loop),
    row symbols, reductions (accumulated in passes along the row) and row definitions."""

    def __init__(self, d, with_x: bool = True):
        self.d, self.with_x = d, with_x
        self.names = {s: n for n, s in d.symbols.items()}
        self.sample = d.sample_index
        self.parameters = [d.symbols[n] for n in d.parameters]
        self.bounds = bound_arguments(d)
        self.unit_interval = [d.symbols[n] for n in d.parameters if d.constraints[n] is constraints.unit_interval]
        self.codes: dict = {_SIZE: "_K"}   # symbol -> the code that reads it
        self.column: set = set()           # symbols that change along the row
        self.levels: dict = {}             # symbol -> the pass after which it is known
        self.reductions: list = []
        self.definitions: dict = {}        # symbol -> _Definition, in the order made
        self.shifted: dict = {}            # symbol of exp(body − top) along the row -> its sumexp
        self.arrays: set = set()           # arguments read
        self.aliases: dict = {}
        self.memo: dict = {}
        self.count = 0

    def _symbol(self, name, code, column=False):
        s = Symbol(name)
        self.codes[s] = code
        if column:
            self.column.add(s)
        return s

    def _read(self, name, index):
        self.arrays.add(name)
        column = index == "_c"
        label = {"_c": "col", "_x": "atx", "": "row"}[index]
        return self._symbol(f"_{label}_{name}", f"{name}[_i_{name}{', ' + index if index else ''}]", column)

    def level(self, expr) -> int:
        return max((self.levels.get(s, 0) for s in expr.free_symbols), default=0)

    def is_column(self, expr) -> bool:
        return bool(expr.free_symbols & self.column)

    def define(self, expr, prefix, values=None, at=None):
        key = ("define", expr, values, at)
        if key not in self.memo:
            self.count += 1
            s = Symbol(f"_{prefix}{self.count}")
            self.definitions[s] = _Definition(s, expr, values, at)
            self.levels[s] = max(self.level(e) for e in (expr, values, at) if e is not None)
            self.memo[key] = s
        return self.memo[key]

    def reduce(self, kind, body, top=None):
        key = (kind, body)
        if key not in self.memo:
            self.count += 1
            s = Symbol(f"_{dict(sum='s', max='m', sumexp='e')[kind]}{self.count}")
            level = 1 + max(self.level(body), self.levels.get(top, 0))
            self.reductions.append(_Reduction(s, kind, body, level, top))
            self.levels[s] = level
            self.memo[key] = s
        return self.memo[key]

    def _shifted(self, e):
        body = self._lower(e.body)
        top = self.reduce("max", body)
        return body, top, self.reduce("sumexp", body, top)

    def lower(self, e):
        """``e`` in its stable form over row and column symbols; as in the numpy lowering, the
        terms free of θ are summed first, so that where they cancel exactly a small θ-term keeps
        its digits."""
        e = stable(asymptotic(offsets(e, self.bounds), self.parameters), self.parameters, self.unit_interval, self.sample)
        e = e.replace(lambda c: c.is_number and not c.is_Rational and not c.is_Float, lambda c: Float(c.evalf(17), 17))
        fixed = [t for t in Add.make_args(e) if t.free_symbols and not t.has(*self.parameters)]
        if e.is_Add and 1 < len(fixed) < len(e.args):
            first = self._lower(Add(*fixed))
            if not self.is_column(first):
                rest = [t for t in e.args if t not in fixed]
                return Add(self.define(first, "f"), self._lower(Add(*rest)), evaluate=False)
        return self._lower(e)

    def standardize(self, outputs: dict) -> dict:
        """``outputs`` through w = (u − μ)/σ for location–scale families (computed first)."""
        if not self.with_x:
            return outputs
        computed, outputs = standardized(self.d, outputs)
        for symbol, expression in computed or ():
            self.aliases[symbol] = self.define(self.lower(expression), "w")
        return outputs

    def _lower(self, e):
        if e in self.aliases:
            return self.aliases[e]
        if isinstance(e, Indexed):
            return self._read(self.names[e.base], "_x" if e.indices[0] == self.sample else "_c")
        if e == K:
            return _SIZE
        if e in self.names:
            return self._read(self.names[e], "")
        if isinstance(e, Sum) and e.limits[0][2] == n_placed - 1:
            raise not_available("the reductions along an ordering's steps (Plackett–Luce)")
        if isinstance(e, Sum) and e.limits[0][2] == n_blocks - 1:
            raise not_available("the reductions over blocks of categories (multi_categorical)")
        if isinstance(e, Sum):
            (index, _, _), = e.limits
            if index not in e.function.free_symbols:
                return _SIZE * self._lower(e.function)
            return self.reduce("sum", self._lower(e.function))
        if isinstance(e, LogSumExp):
            _, top, total = self._shifted(e)
            return top + log(total)
        if isinstance(e, Softmax):
            body, top, total = self._shifted(e)
            at = self._lower(e.body.subs(e.index, e.at))
            if at != body:
                return exp(at - top) / total
            term = self._symbol(f"_term{total}", f"_term{total}", column=True)
            self.shifted[term] = next(r for r in self.reductions if r.symbol == total)
            self.levels[term] = self.levels[total]  # known (kept, or computable) once its pass has run
            return term / total
        if isinstance(e, SumExcept) and e.at == self.sample:
            body = self._lower(e.body)
            return self.define(self.reduce("sum", body), "o", values=body, at=self._lower(e.body.subs(e.index, e.at)))
        if isinstance(e, SoftmaxExcept) and e.at == self.sample:
            body, top, total = self._shifted(e)
            at = self._lower(e.body.subs(e.index, e.at))
            return self.define(total, "o", values=exp(body - top), at=exp(at - top)) / total
        if isinstance(e, (KroneckerDelta, SumExcept, SoftmaxExcept)):
            raise not_available(f"{type(e).__name__} outside the forms the kernels lower")
        if e.args:
            return e.func(*[self._lower(a) for a in e.args])
        return e

    def written_out(self, e, everywhere: bool = False):
        """``e`` with exp(body − top) along the row written out where no output row keeps it
        (``everywhere``: also where one does, for a loop that runs before it is filled)."""
        terms = {t: exp(r.body - r.top) for t, r in self.shifted.items() if t in e.free_symbols and (everywhere or not r.cache)}
        return e.xreplace(terms) if terms else e


class Kernel:
    """The source of one kernel: a parallel loop over the batch rows, and in each row its passes
    along the categories (the statements below are written for one row, ``_r``)."""

    def __init__(self, row: Row, name: str, outputs: list):
        self.row, self.name, self.outputs = row, name, outputs
        self.printer = ScalarPrinter(row.codes)
        self.temps = numbered_symbols("_t")
        self.emitted: set = set()
        self.lines: list = []

    def _print(self, e) -> str:
        return self.printer.doprint(e)

    def _need(self, exprs, pad):
        """Emit the row definitions ``exprs`` use that are not computed yet, dependencies first."""
        for e in exprs:
            for s in sorted(e.free_symbols, key=str):
                definition = self.row.definitions.get(s)
                if definition is None or s in self.emitted:
                    continue
                parts = [p for p in (definition.expr, definition.values, definition.at) if p is not None]
                self._need([self.row.written_out(p) for p in parts], pad)
                self.emitted.add(s)
                if definition.values is None:
                    self.lines.append(f"{pad}{s} = {self._print(definition.expr)}")
                    continue
                total = self._print(definition.expr)
                self.lines += [  # Σ_{i≠x}: the total minus the entry at x, or the others added up
                    f"{pad}{s} = {total} - {self._print(self.row.written_out(definition.at))}",
                    f"{pad}if {s} < _F(1e-3) * {total}:",
                    f"{pad}    {s} = _F(0.0)",
                    f"{pad}    for _c in range(_size):",
                    f"{pad}        if _c != _x:",
                    f"{pad}            {s} += {self._print(self.row.written_out(definition.values, everywhere=True))}",
                ]

    def _statements(self, assignments: dict, pad: str, positive_zero: bool = False):
        """``{target code: expression}`` as statements, common subexpressions computed once;
        with ``positive_zero`` each target's value is taken + 0.0 (see ``_loop``)."""
        exprs = [self.row.written_out(e) for e in assignments.values()]
        self._need(exprs, pad)
        common, reduced = cse(exprs, symbols=self.temps, order="none")
        self.lines += [f"{pad}{s} = {self._print(e)}" for s, e in common]
        wrap = "({}) + 0.0" if positive_zero else "{}"
        self.lines += [f"{pad}{t} = {wrap.format(self._print(e))}" for t, e in zip(assignments, reduced)]

    def _hoist(self, e, hoisted: dict):
        """``e`` with the parts that do not change along the row replaced by row temporaries."""
        if not self.row.is_column(e):
            if not e.is_Atom and e not in hoisted:
                hoisted[e] = next(self.temps)
            return hoisted.get(e, e)
        if e.is_Add or e.is_Mul:
            fixed = [a for a in e.args if not self.row.is_column(a)]
            moving = [self._hoist(a, hoisted) for a in e.args if self.row.is_column(a)]
            fixed = [self._hoist(e.func(*fixed), hoisted)] if fixed else []
            return e.func(*moving, *fixed)
        return e.func(*[self._hoist(a, hoisted) for a in e.args]) if e.args else e

    def _loop(self, assignments: dict, tail=(), positive_zero=False):
        """A loop along the row; its row-constant parts (and the row definitions it uses) are
        computed before it, exp(f − max) kept by an earlier pass is read back first.  With
        ``positive_zero`` (the outputs) each value is stored + 0.0: −0.0 becomes +0.0 and every
        other value stays (IEEE round to nearest), free inside the loop."""
        hoisted: dict = {}
        bodies = {t: self._hoist(self.row.written_out(e), hoisted) for t, e in assignments.items()}
        self._need(list(bodies.values()), "    ")
        self._statements({str(s): e for e, s in hoisted.items()}, "    ")
        self.lines.append("    for _c in range(_size):")
        used = set().union(*(e.free_symbols for e in bodies.values()))
        self.lines += [f"        {t} = {r.cache}[_r, _c]" for t, r in self.row.shifted.items() if t in used]
        self._statements(bodies, "        ", positive_zero)
        self.lines += ["        " + t for t in tail]

    def _pass(self, reductions):
        """One pass along the row accumulating ``reductions``."""
        self.lines += [f"    {r.symbol} = _F({'-_math.inf' if r.kind == 'max' else '0.0'})" for r in reductions]
        values, tail = {}, []
        for r in reductions:
            value = f"_v{r.symbol}"
            values[value] = exp(r.body - r.top) if r.kind == "sumexp" else r.body
            if r.cache:
                tail.append(f"{r.cache}[_r, _c] = {value}")
            tail.append(f"{r.symbol} = {'_top' if r.kind == 'max' else '_add'}({r.symbol}, {value})")
            self.printer.helpers.add("_top" if r.kind == "max" else "_add")
        self._loop(values, tail=tail)

    def source(self, arguments: list) -> str:
        row, outputs = self.row, self.outputs
        vectors = [o for o in outputs if o.vector]
        for term, reduction in row.shifted.items():  # exp(body − top) kept in an output row
            users = [o for o in vectors if term in o.expr.free_symbols]
            free = [o.array for o in vectors if o.array not in {r.cache for r in row.reductions}]
            if users and free:
                reduction.cache = free[0]
        for level in range(1, max((r.level for r in row.reductions), default=0) + 1):
            self._pass([r for r in row.reductions if r.level == level])
        values = {f"_value{n}": o.expr for n, o in enumerate(outputs) if not o.vector}
        values.update({f"_at_x{n}": o.at for n, o in enumerate(outputs) if o.vector and o.at is not None})
        if values:
            self._statements(values, "    ")
        if vectors:
            self._loop({f"{o.array}[_r, _c]": o.expr for o in vectors}, positive_zero=True)
        for n, o in enumerate(outputs):
            if o.vector and o.at is not None:
                self.lines.append(f"    {o.array}[_r, _x] {'+=' if o.add else '='} _at_x{n} + 0.0")
            elif not o.vector:
                self.lines += [f"    {o.array}[_r{place}] = _value{n} + 0.0" for place in o.places]
        return self._functions(arguments, [o.array for o in outputs])

    def _functions(self, arguments, arrays) -> str:
        row = self.row
        head = [f"_F = {arrays[0]}.dtype.type"]
        if row.d.is_vector:
            vector = next(a for a in arguments if isinstance(row.d.symbols.get(a), IndexedBase))
            head += [f"_size = {vector}.shape[1]", "_K = _F(_size)"]
        read = [a for a in arguments if a in row.arrays or (a == "x" and row.sample is not None and row.with_x)]
        start = ["_r = _np.intp(_row)  # (prange's index may be unsigned)"]
        start += [f"_i_{a} = _r if {a}.shape[0] > 1 else 0" for a in read]
        if row.sample is not None and row.with_x:
            start += ["_x = x[_i_x]", "if _x < 0:", "    _x += _size"]
        body = "\n".join(["    " + h for h in head] + [f"    for _row in _prange({arrays[0]}.shape[0]):"]
                         + ["        " + h for h in start] + ["    " + line for line in self.lines])
        names = ", ".join(dict.fromkeys(arguments + arrays))
        return f"@_njit(parallel=True, cache=True)\ndef {self.name}({names}):\n{body}\n"
