"""One generated function, written once against a backend.

A backend (:mod:`symelig.emit.numpy`, :mod:`symelig.emit.xp`) is a :class:`Kernel` subclass: its
printer writes elementwise expressions in its array library, and its methods write what is not
elementwise: the prologue (inputs to arrays, batch shape, axes), the statements of the outputs,
the reductions along the category axis (row max, row sum, exp(f − max), the other categories'
share), an output of the batch shape, the scatter of a value at the sampled category, and a
stacked P×P matrix.  The lowering's statements are records (:mod:`symelig.emit.lowering`),
written through those methods by :meth:`Kernel.statement`.  The bodies of ``log_prob`` and
``eligibility`` below, and the second-order functions (:mod:`symelig.emit.second_order`), are
written against these methods only.
"""
from __future__ import annotations

from sympy import Function, IndexedBase, Sum, together

from ..family import j
from .assemble import identifier
from .lowering import Lowering, Reduction, one_denominator


# the reductions along an ordering's steps (symelig.emit.lowering.Reduction), each one helper
ORDERING_KINDS = ("at_ordering", "remaining_logsumexp", "remaining_steps", "remaining_score", "remaining_log_softmax",
                  "block_log_softmax", "block_score")


class Kernel:
    """The body of one generated function: prologue, statements, outputs."""

    dialect = ""             # the ArrayPrinter dialect of the backend
    fuses_softmax = False    # softmax / log-sum-exp as one library call (torch, JAX)

    def __init__(self, derivation, with_x: bool = True):
        self.d = derivation
        self.with_x = with_x  # the Fisher information is a function of θ alone
        self.printer = self.make_printer()
        self.lowering = Lowering(derivation, self)
        self.vector_family = derivation.is_vector

    def signature(self) -> list:
        return ["x"] * self.with_x + [*self.d.family.arguments, *self.d.parameters]

    def helper(self, name: str, *args) -> str:
        """A call of the helper ``name`` (recorded, so that its source goes into the module)."""
        self.printer.helpers.add(name)
        return self.printer.call(name, args)

    # -- the backend's part ---------------------------------------------------------------
    def make_printer(self):
        raise NotImplementedError

    def prologue(self) -> list:
        """Inputs as arrays of the floating dtype, ``batch`` (and ``size``), axes aligned."""
        raise NotImplementedError

    def elementwise(self, outputs: dict) -> tuple:
        """(lines, {target: owned?}) computing each output {target name: expression}; an owned
        output is a fresh array nothing else refers to."""
        raise NotImplementedError

    def output(self, name: str, shape: str, copy) -> str:
        """An expression: ``name`` as an array of ``shape`` the caller owns (copied if ``copy``)."""
        raise NotImplementedError

    def scatter_at_x(self, out: str, value: str, add: bool = False) -> str:
        """A statement: ``out`` with ``value`` put (or added) at the sample's category."""
        raise NotImplementedError

    def matrix(self, kind: str, size: int, entries: dict) -> list:
        """Statements returning the (..., P, P) matrix of {(row, column): name} (upper triangle)."""
        raise NotImplementedError

    def row_max(self, code: str) -> str:
        raise NotImplementedError

    def row_sum(self, code: str) -> str:
        raise NotImplementedError

    def gated(self, code: str, need: str) -> str:
        """``code`` (a row sum) where only rows with ``need`` use it: as it is (computed for all)."""
        return code

    def exp_shifted(self, name: str, body: str, top: str) -> list:
        """Statements leaving exp(body − top) in ``name``."""
        raise NotImplementedError

    def sum_except(self, values: str, total: str) -> str:
        raise NotImplementedError

    def local_imports(self) -> list:
        """Import statements to go first in the function's body, once it is printed (none)."""
        return []

    # -- for natural_gradient, which works on the result of the module's own fisher ---------
    def namespace_of(self, code: str) -> list:
        """Statements binding the array library of the array ``code`` (none)."""
        return []

    def cast_like(self, code: str, like: str) -> str:
        """``code``, an argument of the caller's, as an array of the dtype (and device) of ``like``."""
        raise NotImplementedError

    def operand(self, code: str, like: str) -> str:
        """``code`` as an operand of arithmetic with the array ``like`` (cast to it)."""
        return self.cast_like(code, like)

    def stacked(self, codes: list, like: str) -> str:
        """The arrays ``codes`` broadcast and stacked along a new last axis, of ``like``'s dtype."""
        raise NotImplementedError

    def pinv(self, code: str) -> str:
        """The Moore–Penrose inverse of the batch of symmetric matrices ``code``."""
        raise NotImplementedError

    # -- written once for every backend -------------------------------------------------------
    def at_x(self, array: str) -> str:
        """The sample's entry of ``array``, shape (..., 1)."""
        return f"{self.printer.ns}.take_along_axis({array}, _x, axis=-1)"

    def statement(self, s) -> list:
        """The lines computing the lowering's :class:`~symelig.emit.lowering.Statement` ``s``."""
        value, print_ = s.value, self.printer.doprint
        if not isinstance(value, Reduction):
            return [f"{s.name} = {print_(value)}"]
        operands = [print_(o) for o in value.operands]
        if value.kind == "exp_shifted":
            return self.exp_shifted(str(s.name), *operands)
        if value.kind in ("logsumexp", "softmax", *ORDERING_KINDS):  # through a helper
            code = self.helper(f"_{value.kind}", *operands)
        else:
            code = {"max": self.row_max, "sum": self.row_sum, "sum_except": self.sum_except, "at_x": self.at_x}[value.kind](*operands)
        return [f"{s.name} = {code if value.gate is None else self.gated(code, print_(value.gate))}"]


def split_outputs(d) -> tuple:
    """({e_name: the eligibility without its δ_jx term}, {name: its value at j = x}): the dense
    part becomes an array, and the sample's category gets the whole value there, computed as one
    expression (1 − softmax_x is the other categories' share, not 1 plus the dense −softmax_x)."""
    sample = d.sample_index
    parts, deltas = {}, {}
    for name, (rest, coefficient) in d.eligibility_split.items():
        parts[f"e_{identifier(name)}"] = one_denominator(rest)
        if coefficient != 0:
            at_x = (rest + coefficient).subs(j, sample)
            deltas[name] = together(at_x) if at_x.has(Sum) and not at_x.has(Function) else at_x
    return parts, deltas


def log_prob_body(d, backend) -> tuple:
    """(signature, lines, printer) of ``log_prob`` for the Kernel class ``backend``."""
    f = backend(d)
    lines = f.prologue()
    body, _ = f.elementwise({"_log_prob": d.log_prob})
    lines += body
    value = "_log_prob[..., 0]" if f.vector_family else "_log_prob"
    lines.append(f"return {f.output(value, 'batch', False)}")
    return f.signature(), lines, f.printer


def eligibility_body(d, backend) -> tuple:
    """(signature, lines, printer) of ``eligibility`` for the Kernel class ``backend``."""
    parts, deltas = split_outputs(d)
    outputs = {**parts, **{f"_at_x_{n}": c for n, c in deltas.items()}}
    f = backend(d)
    lines = f.prologue()
    body, owned = f.elementwise(outputs)
    lines += body
    for name in d.eligibility:
        out = f"e_{name}"
        vector = isinstance(d.symbols[name], IndexedBase)
        # An owned buffer is returned as it is (and the δ term put into it); an input or a
        # per-sample quantity is copied into a new array of the output's shape.
        shape = "batch + (size,)" if vector else "batch + (1,)" if f.vector_family else "batch"
        lines.append(f"{out} = {f.output(out, shape, not owned[out])}")
        if name in deltas:
            lines.append(f.scatter_at_x(out, f"_at_x_{name}"))
        if f.vector_family and not vector:
            lines.append(f"{out} = {out}[..., 0]")
    lines.append("return {" + ", ".join(f'"{n}": e_{n}' for n in d.eligibility) + "}")
    return f.signature(), lines, f.printer
