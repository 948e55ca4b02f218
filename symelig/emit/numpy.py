"""The numpy backend: kernels of in-place ufuncs (``out=``) that recycle their buffers.

The lowering (:mod:`symelig.emit.lowering`) turns the indexed math into array expressions;
this module writes them for numpy: elementwise expressions as ufunc calls planned onto buffers
(:mod:`symelig.emit.buffers`), the row max and row sum of a category axis through ``_row_max``
and ``_row_sum`` (a product with a vector of ones: BLAS, 4–8× faster than ``np.sum`` over rows
of 16 and 2–6× over rows of 10⁵), the δ_jx term as one ``put_along_axis`` at the sample, and
the special functions as small stable helpers (:mod:`symelig.emit.runtime`, their source copied
into the module) or ``scipy.special``, imported inside the functions that call it.
"""
from __future__ import annotations

from sympy import Symbol, cse, numbered_symbols
from sympy.printing.numpy import SciPyPrinter
from sympy.printing.precedence import PRECEDENCE, precedence

from . import assemble, runtime, second_order
from .buffers import Buffers, render
from .kernel import Kernel, eligibility_body, log_prob_body
from .lowering import Reduction, reuse_squares
from ..functions import select
from .text import PositiveFirst

class ArrayPrinter(PositiveFirst, SciPyPrinter):
    """Elementwise expressions over array names; writes ``np.f``/``special.f`` and records helpers.

    The ``xp`` dialect writes ``xp.f``/``_sp.f`` instead: the array API namespace of the inputs
    and that library's special functions (see :mod:`symelig.emit.xp`), and passes ``xp`` to its
    helpers, which are written without in-place updates.
    """

    def __init__(self, dialect: str = "numpy"):
        super().__init__({"fully_qualified_modules": True})
        self.helpers: set = set()
        self.pieces: dict = {}  # {name: expression} of select pieces kept out of the kernel's CSE
        self.dialect = dialect
        self.ns = "np" if dialect == "numpy" else "xp"
        self._aliases = {"numpy": self.ns, "scipy.special": "special" if dialect == "numpy" else "_sp"}

    def _module_format(self, fqn, register=True):
        """Short aliases (np., special.) instead of fully qualified names; imports still recorded."""
        module, _, name = fqn.rpartition(".")
        if register and module:
            self.module_imports[module].add(name)
        return f"{self._aliases.get(module, module)}.{name}" if module else name

    def _print_Pow(self, expr, rational=False):
        """1/x and x**2, not x**(-1.0): readable, and integer powers keep the dtype."""
        base = self.parenthesize(expr.base, precedence(expr))
        if expr.exp == -1:
            return f"1/{base}"
        if expr.exp.is_Integer and expr.exp > 0:
            return f"{base}**{expr.exp}"
        return super()._print_Pow(expr, rational=rational)

    def _helper(self, name, args):
        self.helpers.add(name)
        return self.call(name, [self._print(a) for a in args])

    def call(self, name: str, args) -> str:
        """``name(args)``, with the namespace first for the array API dialect's helpers."""
        prefix = "" if self.dialect == "numpy" else "xp, "
        return f"{name}({prefix}{', '.join(args)})"

    def _print_xlogy(self, expr):
        return self._helper("_xlogy", expr.args)

    def _print_xdivy(self, expr):
        return self._helper("_xdivy", expr.args)

    def _print_Pi(self, expr):
        """np.pi: SciPyPrinter would import scipy.constants for it."""
        return "np.pi" if self.dialect == "numpy" else repr(float(expr))

    def _print_sigmoid(self, expr):
        return self._helper("_sigmoid", expr.args)

    def _print_gamma_difference(self, expr):
        return self._helper("_gamma_difference", expr.args)

    def _print_betaln(self, expr):
        if self.dialect == "numpy":
            return f"{self._module_format('scipy.special.betaln')}({self._print(expr.args[0])}, {self._print(expr.args[1])})"
        return self._helper("_betaln", expr.args)

    def _print_bd0(self, expr):
        return self._helper("_bd0", expr.args)

    def _print_quotient(self, expr):
        """(a/b): one division (CSE would have made a·(1/b) of a/b beside c/b)."""
        a, b = expr.args
        return f"({self.parenthesize(a, PRECEDENCE['Mul'], strict=True)}/{self.parenthesize(b, PRECEDENCE['Mul'])})"

    def _print_factorial_remainder(self, expr):
        return self._helper("_factorial_remainder", expr.args)

    def _print_stirlerr(self, expr):
        return self._helper("_stirlerr", expr.args)

    def _print_log_abs(self, expr):
        return f"{self.ns}.log({self.ns}.abs({self._print(expr.args[0])}))"

    def _print_masked(self, expr):
        z, m = (self._print(a) for a in expr.args)
        return f"{self.ns}.where({m} != 0, {z}, -{self.ns}.inf)"

    def _print_log1pmx(self, expr):
        return self._helper("_log1pmx", expr.args)

    def _print_log1mexp(self, expr):
        return self._helper("_log1mexp", expr.args)

    def _print_log_ndtr_difference(self, expr):
        return self._helper("_log_ndtr_difference", expr.args)

    def _print_normal_pdf_over_mass(self, expr):
        return self._helper("_normal_pdf_over_mass", expr.args)

    def _print_added_first(self, expr):
        return f"({self._print(expr.args[0])})"

    def _print_fms(self, expr):
        return self._helper("_fms", expr.args)

    def _print_select(self, expr):
        """_select(condition, lambda names: then, (names,), lambda …: otherwise, (…,)), each piece
        computed only at the elements that take it (the array API's _select: where the library
        allows it, see runtime/array_api.py)."""
        condition, then, otherwise = expr.args
        self.helpers.add("_select")
        pieces = []
        for piece in (then, otherwise):
            piece = self.pieces.get(piece, piece)
            names = sorted(str(s) for s in piece.free_symbols)
            # the piece's own common subexpressions, each bound by a lambda of its own (evaluated
            # first, on the piece's elements only)
            common, (body,) = cse([piece], symbols=numbered_symbols("_s"))
            code = self._print(body)
            for name, value in reversed(common):
                code = f"(lambda {name}: {code})({self._print(value)})"
            pieces.append(f"lambda {', '.join(names)}: {code}, ({''.join(n + ', ' for n in names)})")
        return self.call("_select", [self._print(condition), *pieces])

    def _print_Piecewise(self, expr):
        """Nested where(cond, a, b): both sides are computed (vectorized), the condition picks."""
        *pieces, (last, _) = expr.args
        code = self._print(last)
        for value, condition in reversed(pieces):
            code = f"{self.ns}.where({self._print(condition)}, {self._print(value)}, {code})"
        return code

    def _print_And(self, expr):
        *first, last = expr.args
        code = self._print(last)
        for a in reversed(first):
            code = f"{self.ns}.logical_and({self._print(a)}, {code})"
        return code

    def _print_Max(self, expr):
        """Elementwise maximum, nested: max(a, b, c) = maximum(a, maximum(b, c))."""
        *first, last = expr.args
        code = self._print(last)
        for a in reversed(first):
            code = f"{self.ns}.maximum({self._print(a)}, {code})"
        return code

    def _print_log_softplus(self, expr):
        return self._helper("_log_softplus", expr.args)

    def _print_log_softplus_curvature(self, expr):
        return self._helper("_log_softplus_curvature", expr.args)

    def _print_sigmoid_over_softplus(self, expr):
        return self._helper("_sigmoid_over_softplus", expr.args)

    def _print_softplus(self, expr):
        if self.dialect != "numpy":
            return self._helper("_softplus", expr.args)
        return f"np.logaddexp(0, {self._print(expr.args[0])})"

    def _print_polygamma(self, expr):
        """digamma for order 0 (faster and clearer than polygamma(0, ·))."""
        n, a = expr.args
        if n == 0:
            return f"{self._module_format('scipy.special.digamma')}({self._print(a)})"
        return f"{self._module_format('scipy.special.polygamma')}({self._print(n)}, {self._print(a)})"

    def _print_log_bessel_i0(self, expr):
        a = self._print(expr.args[0])
        return f"({self.ns}.log({self._module_format('scipy.special.i0e')}({a})) + {self.ns}.abs({a}))"

    def _print_bessel_i1_i0(self, expr):
        a = self._print(expr.args[0])
        return f"({self._module_format('scipy.special.i1e')}({a})/{self._module_format('scipy.special.i0e')}({a}))"

    def _print_gamma(self, expr):
        if self.dialect == "numpy":
            return f"{self._module_format('scipy.special.gamma')}({self._print(expr.args[0])})"
        return self._helper("_gamma", expr.args)

    def _print_logfactorial(self, expr):
        return f"{self._module_format('scipy.special.gammaln')}({self._print(expr.args[0])} + 1)"

    def _print_KroneckerDelta(self, expr):
        raise NotImplementedError(f"{expr} outside a linear term cannot be vectorized")

    def _print_Sum(self, expr):
        raise NotImplementedError("sums are lowered to reductions before printing")


class NumpyKernel(Kernel):
    """A numpy function body: in-place ufuncs, buffers recycled."""

    dialect = "numpy"

    def make_printer(self):
        return ArrayPrinter()

    def prologue(self) -> list:
        """Convert the inputs, find the batch shape, and align axes without broadcasting.

        Reductions then run over the parameters as given (a (K,) parameter shared by a batch of
        samples is reduced once), and only the outputs take the full batch shape.
        """
        d, fam = self.d, self.d.family
        params = list(d.parameters)
        lines = [f"{p} = np.asarray({p})" for p in params]
        lines.append(f"dtype = _float_dtype({', '.join(params)})")
        lines += [f"{p} = {p}.astype(dtype, copy=False)" for p in params]
        constraint_of = d.constraints
        # a closed form or a canonical map has no sample, and its stand-in family no value constraint
        is_index = self.with_x and (d.sample_index is not None or fam.value.own_axis)
        if self.with_x:
            lines.append("x = np.asarray(x)" if is_index else "x = np.asarray(x, dtype)")
        # block sizes (own axis, shared by the batch) stay integers: they index the category axis
        lines += [f"{a} = np.asarray({a}).astype(np.intp)" if c.own_axis else f"{a} = np.asarray({a}, dtype)" for a, c in fam.arguments.items()]
        names = self.signature()
        vectors = [n for n in names if constraint_of[n].event_dim]
        batch_parts = [f"{n}.shape[:-1]" if n in vectors else f"{n}.shape" for n in names]
        sized = [n for n in vectors if not constraint_of[n].own_axis]
        if sized:
            lines.append(f"size = {sized[0]}.shape[-1]")
        lines.append(f"batch = np.broadcast_shapes({', '.join(batch_parts)})")
        for n in names:
            if n in vectors and constraint_of[n].own_axis and n != "x":  # block sizes: one vector for the batch
                continue
            if n in vectors and constraint_of[n].own_axis:  # an ordering: category indices along its own axis
                lines.append(f"_order = {n}.astype(np.intp).reshape((1,) * (len(batch) + 1 - {n}.ndim) + {n}.shape)")
            elif n in vectors:  # same number of axes as the batch, for take_along_axis
                lines.append(f"{n} = {n}.reshape((1,) * (len(batch) + 1 - {n}.ndim) + {n}.shape)")
            elif n == "x" and is_index:
                lines.append("_x = x.astype(np.intp).reshape((1,) * (len(batch) - x.ndim) + x.shape + (1,))")
            elif self.vector_family:
                lines.append(f"{n} = {n}[..., None]")
            else:  # at least 1-d: ufuncs return scalars, not writable buffers, for 0-d inputs
                lines.append(f"{n} = _with_ndim({n}, max(len(batch), 1))")
                self.printer.helpers.add("_with_ndim")
        self.printer.helpers.update({"_float_dtype", "_output"})
        return lines

    def is_big(self, expr) -> bool:
        """Output-sized: carries the category axis, or, without one, depends on any array."""
        if self.vector_family:
            return self.lowering.is_vector(expr)
        return bool(self.lowering.deps(expr))

    def elementwise(self, outputs: dict) -> tuple:
        """CSE over the lowered ``outputs`` {target name: expression}, compiled into ufunc
        statements that recycle buffers; returns (lines, {target: owned?}).  Location–scale
        families are written through w = (u − μ)/σ first (:mod:`symelig.emit.standardize`)."""
        low = self.lowering
        outputs = low.standardize(outputs) if self.with_x else outputs
        lowered = {n: self._pieces_apart(low.lower(e)) for n, e in outputs.items()}
        common, reduced = cse(list(lowered.values()), symbols=numbered_symbols("_t"))
        common, reduced = reuse_squares(common, reduced)
        for s, e in common:
            if low.is_vector(e):
                low.vectors.add(s)
            low.symbol_deps[s] = low.deps(e)
        buffers = Buffers(self.printer, self.is_big, low.deps)
        # exp(f − max) is a new array of the kernel's own (see exp_shifted): its buffer is recycled
        shifted = {s.name for s in low.statements if isinstance(s.value, Reduction) and s.value.kind == "exp_shifted"}
        for name in low.owned | shifted:
            buffers.owned(str(name), name)
        jobs = [(str(s), e) for s, e in common] + list(zip(lowered, reduced))
        owned, aliased = {}, set()
        for i, (target, e) in enumerate(jobs):
            later = set().union(*(later_e.free_symbols for _, later_e in jobs[i + 1:]))
            # a target that is just another name (an output equal to a common subexpression)
            # shares its buffer: that buffer must not be overwritten in place afterwards
            owned[target] = buffers.assign(target, e, consumable=e.free_symbols - later - aliased)
            if isinstance(e, Symbol):
                aliased.add(e)
        lines = [line for s in low.statements for line in self.statement(s)] + render(buffers.statements, self.printer)
        return lines, owned

    def _pieces_apart(self, e):
        """``e`` with the pieces of each select standing as names, so that the common
        subexpressions of a piece are not taken out of it (they would be computed for every
        element, where the piece is computed only for those that take it); the printer writes
        each piece with common subexpressions of its own."""
        low = self.lowering

        def apart(s):
            condition, *pieces = s.args
            names = []
            for piece in pieces:
                name = Symbol(f"_piece{len(self.printer.pieces)}")
                self.printer.pieces[name] = piece
                low.symbol_deps[name] = low.deps(piece)
                if low.is_vector(piece):
                    low.vectors.add(name)
                names.append(name)
            return select(condition, *names)

        return e.replace(lambda s: isinstance(s, select), apart)

    def output(self, name: str, shape: str, copy) -> str:
        return f"_output({name}, {shape}, dtype, copy={copy})"

    def scatter_at_x(self, out: str, value: str, add: bool = False) -> str:
        return self.helper("_add_at" if add else "_put_at", out, "_x", value)

    def matrix(self, kind: str, size: int, entries: dict) -> list:
        lines = [f"out = np.empty(batch + ({size}, {size}), dtype)"]
        for (ia, ib), name in entries.items():
            target = f"out[..., {ia}, {ib}]" + (f" = out[..., {ib}, {ia}]" if ia != ib else "")
            lines.append(f"{target} = {name}")
        return lines + ["return np.add(out, 0.0, out=out)  # no −0.0 (see _output)"]

    def row_max(self, code: str) -> str:
        return self.helper("_row_max", code)

    def row_sum(self, code: str) -> str:
        return self.helper("_row_sum", code)

    def gated(self, code: str, need: str) -> str:
        """Only if some row needs it (a saddle-point form's sums at ordinary parameters: none)."""
        return f"({code} if np.any({need}) else 0)"

    def exp_shifted(self, name: str, body: str, top: str) -> list:
        # z − max in a new buffer, exp in place: one allocation
        return [f"{name} = np.subtract({body}, {top})", f"np.exp({name}, out={name})"]

    def sum_except(self, values: str, total: str) -> str:
        return self.helper("_sum_except", values, total, "_x")

    def local_imports(self) -> list:
        return local_imports(self.printer)

    def cast_like(self, code: str, like: str) -> str:
        return f"np.asarray({code}, {like}.dtype)"

    def operand(self, code: str, like: str) -> str:
        return code  # numpy promotes: a float64 gradient keeps float64

    def stacked(self, codes: list, like: str) -> str:
        return f"np.stack(np.broadcast_arrays({', '.join(codes)}), axis=-1).astype({like}.dtype)"

    def pinv(self, code: str) -> str:
        return f"np.linalg.pinv({code}, hermitian=True)"


def local_imports(printer) -> list:
    """``from scipy import special`` for a function whose code calls it, to go first in its body:
    a module whose other functions need no scipy imports, and runs them, without it (the helpers
    that need scipy import it themselves, through ``_special()``)."""
    return ["from scipy import special"] if "scipy.special" in printer.module_imports else []


def module_source(d, second=None) -> str:
    """A standalone module with ``log_prob`` and ``eligibility`` (and, given the second-order math
    ``second``, ``hessian``, ``fisher``, ``natural_gradient``); imports numpy, and scipy.special
    only inside the functions that call it, never SymPy."""
    sig, lp_lines, lp_printer = log_prob_body(d, NumpyKernel)
    _, el_lines, el_printer = eligibility_body(d, NumpyKernel)
    helpers = lp_printer.helpers | el_printer.helpers
    modules = set(lp_printer.module_imports) | set(el_printer.module_imports)
    extra = {}
    if second is not None:
        extra, more_helpers, more_modules = second_order.functions(second, NumpyKernel)
        helpers |= more_helpers
        modules |= more_modules
    unknown = modules - {"numpy", "scipy.special"}
    if unknown:
        raise NotImplementedError(f"generated code would need {sorted(unknown)}; add a printer method")
    header, lp_doc, el_doc = assemble.header_and_docs(d)
    return assemble.module(
        d, header=header, imports=["import numpy as np"], constants="",
        functions=[assemble.function_source("log_prob", sig, lp_doc, local_imports(lp_printer) + lp_lines),
                   assemble.function_source("eligibility", sig, el_doc, local_imports(el_printer) + el_lines), *extra.values()],
        helpers=runtime.sources("numpy", helpers), exported=["dense"] if "dense" in helpers else [],
    )
