"""Numba source from a derivation: one compiled loop nest per kernel, batch rows on all cores.

The numpy kernels make one pass over memory per operation; here each kernel is one parallel
loop over the batch rows (``prange``), and inside a row everything the formula needs is computed
in as few passes over its categories as the formula allows:

* the expressions are the numpy kernels' stable ones (:func:`~symelig.emit.numpy.split_outputs`,
  :func:`~symelig.emit.standardize.standardized`, ``stable(asymptotic(·))``), not re-derived;
* Σ_i f(i) is an accumulator; the sums and row maxima that depend on nothing computed in the row
  share the first pass, Σ exp(f − max) takes the next, and so on; then one loop writes the
  outputs (categorical logits: max, Σ exp, write).  The Σ exp pass stores exp(f − max) in the
  output row, which the writing loop reads back from cache instead of computing it again;
* an entry at the sample, z[x], is a read at x; Σ_{i≠x} f(i) is the total − f(x) except in rows
  where f(x) holds nearly all of it, which add up the others (the numpy helper's rule);
* what does not change along a row is computed once per row, before the loop that needs it;
* δ_jx·c: the row is written without it, then the value at x is put (or, for a Hessian's
  diagonal, added) there.

Arguments broadcast as for the numpy kernels, the batch axes flattened into rows; an argument
that is the same for every row is passed as one row (``_i_a`` is then 0: no copy).  Constants
are ``_F(c)`` in the arguments' floating type, so float32 is computed in float32 (float16 in
float32).  Scalar code and the helpers: :mod:`symelig.emit.scalar`.  ``load`` runs a module
from a file in the cache folder, where numba's ``cache=True`` keeps the compiled kernels.
"""
from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import dataclass

from sympy import (
    Add, DiracDelta, Float, Indexed, IndexedBase, KroneckerDelta, S, Sum, Symbol, cse, exp, log, numbered_symbols,
)

from .. import constraints
from ..family import K
from ..functions import LogSumExp, Softmax, SoftmaxExcept, SumExcept
from .asymptotic import asymptotic
from ..engine import split_delta
from .assemble import header_and_docs
from .kernel import split_outputs
from .scalar import NotAvailable, ScalarPrinter, helper_sources, not_available
from .stable import stable
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
class _Output:
    array: str            # the kernel's output argument
    expr: object          # lowered
    vector: bool          # one value per category (else one per row)
    at: object = None     # vector: the value at x, put there (``add``: added there)
    add: bool = False
    places: tuple = ("",)  # per-row outputs: index suffixes written, e.g. (", 0, 1", ", 1, 0")


class _Row:
    """Indexed math over one batch row, lowered onto column symbols (the category of a loop),
    row symbols, reductions (accumulated in passes along the row) and row definitions."""

    def __init__(self, d, with_x: bool = True):
        self.d, self.with_x = d, with_x
        self.names = {s: n for n, s in d.symbols.items()}
        self.sample = d.sample_index
        self.parameters = [d.symbols[n] for n in d.parameters]
        self.unit_interval = [d.symbols[n] for n in d.parameters if d.constraints[n] is constraints.unit_interval]
        self.codes: dict = {_SIZE: "_K"}   # symbol -> the code that reads it
        self.column: set = set()           # symbols that change along the row
        self.levels: dict = {}             # symbol -> the pass after which it is known
        self.reductions: list = []
        self.definitions: dict = {}        # symbol -> _Definition, in order of creation
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
        e = stable(asymptotic(e, self.parameters), self.parameters, self.unit_interval, self.sample)
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

    def written_out(self, e):
        """``e`` with exp(body − top) along the row written out (where no output row keeps it)."""
        terms = {t: exp(r.body - r.top) for t, r in self.shifted.items() if t in e.free_symbols and not r.cache}
        return e.xreplace(terms) if terms else e


class _Kernel:
    """The source of one kernel: a parallel loop over the batch rows, and in each row its passes
    along the categories (the statements below are written for one row, ``_r``)."""

    def __init__(self, row: _Row, name: str, outputs: list):
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
                    f"{pad}            {s} += {self._print(self.row.written_out(definition.values))}",
                ]

    def _statements(self, assignments: dict, pad: str):
        """``{target code: expression}`` as statements, common subexpressions computed once."""
        exprs = [self.row.written_out(e) for e in assignments.values()]
        self._need(exprs, pad)
        common, reduced = cse(exprs, symbols=self.temps, order="none")
        self.lines += [f"{pad}{s} = {self._print(e)}" for s, e in common]
        self.lines += [f"{pad}{t} = {self._print(e)}" for t, e in zip(assignments, reduced)]

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

    def _loop(self, assignments: dict, tail=()):
        """A loop along the row; its row-constant parts (and the row definitions it uses) are
        computed before it, exp(f − max) kept by an earlier pass is read back first."""
        hoisted: dict = {}
        bodies = {t: self._hoist(self.row.written_out(e), hoisted) for t, e in assignments.items()}
        self._need(list(bodies.values()), "    ")
        self._statements({str(s): e for e, s in hoisted.items()}, "    ")
        self.lines.append("    for _c in range(_size):")
        used = set().union(*(e.free_symbols for e in bodies.values()))
        self.lines += [f"        {t} = {r.cache}[_r, _c]" for t, r in self.row.shifted.items() if t in used]
        self._statements(bodies, "        ")
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
            self._loop({f"{o.array}[_r, _c]": o.expr for o in vectors})
        for n, o in enumerate(outputs):
            if o.vector and o.at is not None:
                self.lines.append(f"    {o.array}[_r, _x] {'+=' if o.add else '='} _at_x{n}")
            elif not o.vector:
                self.lines += [f"    {o.array}[_r{place}] = _value{n}" for place in o.places]
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


# What each function returns: (output array, its axes after the batch, key in the returned dict).
def _first_order(d, which: str) -> tuple:
    """(row, outputs, returns) of ``log_prob`` or ``eligibility``."""
    row = _Row(d)
    if which == "log_prob":
        lowered = row.lower(row.standardize({"_log_prob": d.log_prob})["_log_prob"])
        return row, [_Output("_out", lowered, False)], [("_out", "", None)]
    parts, deltas = split_outputs(d)
    outputs = row.standardize({**parts, **{f"_at_x_{n}": c for n, c in deltas.items()}})
    result, returns = [], []
    for name in d.eligibility:
        vector = isinstance(d.symbols[name], IndexedBase)
        at = row.lower(outputs[f"_at_x_{name}"]) if name in deltas else None
        result.append(_Output(f"_e_{name}", row.lower(outputs[f"e_{name}"]), vector, at))
        returns.append((f"_e_{name}", "size" if vector else "", name))
    return row, result, returns


def _second_order(so, kind: str) -> tuple:
    """(row, outputs, returns) of ``hessian`` or ``fisher`` (see emit/second_order.py)."""
    from .second_order import vector_parameter

    d = so.first
    with_x = kind == "hessian"
    row = _Row(d, with_x)
    vector = vector_parameter(so)
    if vector:
        block = so.structure[(vector, vector)][kind]
        sample = row.sample if with_x else None
        diagonal, at_x = split_delta(block.diagonal, sample)
        parts = row.standardize({"d": diagonal, "c": block.scale, "u": block.vector, **({"at": at_x} if at_x != 0 else {})})
        at = row.lower(parts["at"]) if "at" in parts else None
        outputs = [_Output("_diagonal", row.lower(parts["d"]), True, at, add=True),
                   _Output("_scale", row.lower(parts["c"]), False), _Output("_vector", row.lower(parts["u"]), True)]
        return row, outputs, [("_diagonal", "size", "diagonal"), ("_scale", "", "scale"), ("_vector", "size", "vector")]
    matrix = so.hessian if kind == "hessian" else so.fisher
    # a Dirac delta (Laplace at x = μ) is 0 everywhere else: the kernel gives H almost everywhere
    matrix = {pair: e.replace(lambda a: isinstance(a, DiracDelta), lambda a: S.Zero) for pair, e in matrix.items()}
    names = list(d.parameters)
    entries = row.standardize({f"{names.index(a)}_{names.index(b)}": e for (a, b), e in matrix.items()})
    outputs = []
    for (a, b), key in zip(matrix, entries):
        ia, ib = names.index(a), names.index(b)
        places = (f", {ia}, {ib}",) + ((f", {ib}, {ia}",) if ia != ib else ())
        outputs.append(_Output("_matrix", row.lower(entries[key]), False, places=places))
    return row, outputs, [("_matrix", f"{len(names)}, {len(names)}", None)]


_NJIT = '''def _njit(*function, **options):
    """numba.njit with numpy's floating-point semantics: x/0 is ±inf or nan, not an exception (which
    would also keep the loops that divide from vectorizing)."""
    return _numba.njit(*function, error_model="numpy", **options)'''

_PYTHON_HELPERS = {
    "_float_dtype": '''def _float_dtype(*arrays):
    """The floating dtype of the parameters: float32 stays float32, integers become float64."""
    dtype = np.result_type(*arrays)
    return dtype if dtype.kind == "f" else np.dtype(np.float64)''',
    "_rows": '''def _rows(a, batch, event=()):
    """``a`` as read-only C-contiguous rows (rows, *event) for a kernel: one row when it is the
    same for the whole batch (a shared parameter: the kernels read row 0 for every row), else one
    per batch element: a view where ``a`` has the batch shape, a copy where it broadcasts along
    some axes.  (Always read-only, so that each kernel is compiled once per dtype.)"""
    own = a.shape[:a.ndim - len(event)]
    shape = ((1,) if math.prod(own) == 1 else (-1,)) + event
    rows = np.ascontiguousarray(np.broadcast_to(a, (own if math.prod(own) == 1 else batch) + event).reshape(shape)).view()
    rows.flags.writeable = False
    return rows''',
    "_categories": '''def _categories(x, size):
    """Category indices as intp; one out of range is an IndexError (negative ones count from the
    end, as in numpy's take_along_axis)."""
    x = x.astype(np.intp)
    if x.size and (x.min() < -size or x.max() >= size):
        raise IndexError(f"a category index in x is out of bounds for {size} categories")
    return x''',
}


def _wrapper(d, name: str, kernel: str, returns: list, doc: str, with_x: bool = True) -> str:
    """The Python function ``name``: the numpy kernels' argument handling, then ``kernel``."""
    fam, params = d.family, list(d.parameters)
    names = ["x"] * with_x + [*fam.arguments, *params]
    vectors = [n for n in names if d.constraints[n].event_dim]
    is_index = d.sample_index is not None
    lines = [f"{p} = np.asarray({p})" for p in params]
    lines.append(f"dtype = _float_dtype({', '.join(params)})")
    lines.append("compute = np.dtype(np.float32) if dtype == np.float16 else dtype  # numba has no float16 arithmetic")
    lines += [f"{p} = {p}.astype(compute, copy=False)" for p in params]
    if with_x:
        lines.append("x = np.asarray(x)" if is_index else "x = np.asarray(x, compute)")
    lines += [f"{a} = np.asarray({a}, compute)" for a in fam.arguments]
    lines.append(f"size = {vectors[0]}.shape[-1]" if vectors else "size = 1")
    parts = [f"{n}.shape[:-1]" if n in vectors else f"{n}.shape" for n in names]
    lines.append(f"batch = np.broadcast_shapes({', '.join(parts)})")
    if with_x and is_index:
        lines.append("x = _categories(x, size)")
    lines += [f"{n} = _rows({n}, batch{', (size,)' if n in vectors else ''})" for n in names]
    lines.append("rows = math.prod(batch)")
    arrays = {a: event for a, event, _ in returns}
    lines += [f"{a} = np.empty((rows, {event}), compute)" for a, event in arrays.items()]
    lines.append(f"{kernel}({', '.join(names + list(arrays))})")
    values = {key: f"{a}.reshape(batch + ({event + ',' if event else ''})).astype(dtype, copy=False)" for a, event, key in returns}
    if None in values:
        lines.append(f"return {values[None]}")
    else:
        lines.append("return {" + ", ".join(f"{k!r}: {v}" for k, v in values.items()) + "}")
    body = "\n".join("    " + line for line in lines)
    return f'def {name}({", ".join(names)}):\n    """{doc}"""\n{body}\n'


def module_source(d, second=None) -> str:
    """A module with ``log_prob`` and ``eligibility`` (and, given the second-order math ``second``,
    ``hessian``, ``fisher``, ``natural_gradient``) running compiled kernels; imports numpy, numba
    (llvmlite and scipy where a special function needs them), never SymPy."""
    try:
        return _module_source(d, second)
    except NotAvailable as missing:
        raise NotAvailable(missing.function, f"{d.family.name} --param {d.param}") from None


def _module_source(d, second) -> str:
    header, lp_doc, el_doc = header_and_docs(
        d, note="Backend: numba (compiled loops over the batch rows on all cores, cached on disk).")
    kernels = [("log_prob", lp_doc, _first_order(d, "log_prob"), True),
               ("eligibility", el_doc, _first_order(d, "eligibility"), True)]
    names = ["log_prob", "eligibility"]
    extra, numpy_helpers = [], set()
    if second is not None:
        from . import second_order as numpy_second_order

        if numpy_second_order.supported(second):
            kinds = ["hessian"] + (["fisher"] if second.fisher is not None else [])
            kernels += [(k, numpy_second_order.doc(second, k), _second_order(second, k), k == "hessian") for k in kinds]
            names += kinds
            if second.fisher is not None:  # F⁺g: O(K) or P×P linear algebra on the fisher kernel's result
                from .numpy import NumpyKernel

                source, numpy_helpers = numpy_second_order.natural_gradient(second, NumpyKernel)
                extra.append(source)
                names.append("natural_gradient")
            if numpy_second_order.vector_parameter(second):
                numpy_helpers = numpy_helpers | {"dense"}
                names.append("dense")
    blocks, helpers = [], set()
    for name, doc, (row, outputs, returns), with_x in kernels:
        kernel = _Kernel(row, f"_{name}_kernel", outputs)
        arguments = ["x"] * with_x + [*d.family.arguments, *d.parameters]
        blocks += [_wrapper(d, name, kernel.name, returns, doc, with_x), kernel.source(arguments)]
        helpers |= kernel.printer.helpers
    imports, helper_blocks = helper_sources(helpers)
    lines = ["import math", "import math as _math", "", "import numba as _numba", "import numpy as np", "import numpy as _np",
             "from numba import prange as _prange", *imports]
    python_helpers = dict(_PYTHON_HELPERS)
    if numpy_helpers:
        from .numpy import helper_source
        from .second_order import HELPERS

        python_helpers.update({h: HELPERS[h] if h in HELPERS else helper_source(h) for h in numpy_helpers if h not in python_helpers})
    return "\n\n".join([
        header + "\n".join(lines),
        _NJIT,
        f"__all__ = [{', '.join(repr(n) for n in names)}]\nFAMILY = {d.family.name!r}\nPARAM = {d.param!r}\n"
        f"PARAMETERS = {tuple(d.parameters)!r}\nBACKEND = 'numba'",
        *blocks, *extra,
        *(python_helpers[h] + "\n" for h in sorted(python_helpers)),
        *(b + "\n" for b in helper_blocks),
    ]).rstrip() + "\n"


def load(source: str, label: str):
    """The module of ``source`` (this package's own output, never user text), run from that text.

    numba's ``cache=True`` needs a real file and keeps the compiled kernels beside it: the source
    is written to ``numba/`` in symelig's cache folder (private, see :mod:`symelig.cache`), named
    by its SHA-256, atomically, and only when no identical file is there (a rewrite would make
    numba compile again).  What runs is ``source`` itself, not what is read back.  Without a
    usable cache folder, a private temporary folder serves this process."""
    import types

    label = re.sub(r"[^A-Za-z0-9_]", "_", label)[:80]
    path = _folder() / f"{label}_{hashlib.sha256(source.encode()).hexdigest()[:24]}.py"
    name = f"symelig_numba_{path.stem}"
    if name in sys.modules:
        return sys.modules[name]
    data = source.encode()
    try:
        current = path.read_bytes() if path.is_file() and not path.is_symlink() else None
    except OSError:
        current = None
    if current != data:
        from ..files import replace

        replace(path, data, keep=False)
    module = types.ModuleType(name)
    module.__file__ = str(path)
    exec(compile(source, str(path), "exec"), module.__dict__)
    sys.modules[name] = module  # numba finds a cached kernel's globals by importing its module
    return module


_temporary = None


def _folder():
    """``numba/`` in the cache folder when that is usable and private, else a temporary folder."""
    global _temporary
    from pathlib import Path

    from .. import cache

    base = cache.folder()
    if base is not None and cache.private(base) and cache.private(base / "numba"):
        return base / "numba"
    if _temporary is None:
        import atexit
        import shutil
        import tempfile

        _temporary = Path(tempfile.mkdtemp(prefix="symelig-numba-"))
        atexit.register(shutil.rmtree, _temporary, ignore_errors=True)
    return _temporary
