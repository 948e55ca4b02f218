"""The same derived kernels for any array library: code written against the array API namespace
of its inputs (array-api-compat's ``array_namespace``), so numpy, PyTorch, JAX and CuPy arrays
go in and arrays of the same library, device and dtype come out — no conversion to numpy.

Differences from the numpy emitter, all for the array API's sake: no ``out=`` (JAX arrays are
immutable, and torch's autograd dislikes in-place writes), the δ_jx term added as
``where(arange(K) == x, c, 0)`` instead of a scatter, no Python branching on array values (so
``jax.jit`` and ``jax.vmap`` trace it), and special functions from the input's own library
(torch.special, jax.scipy.special, cupyx.scipy.special, scipy.special).  ``backend`` pins the
namespace for a module specialised to one library.
"""
from __future__ import annotations

from sympy import cse, numbered_symbols

from . import assemble, runtime, second_order
from .kernel import Kernel, eligibility_body, log_prob_body
from .numpy import ArrayPrinter

BACKENDS = ("array-api", "torch", "jax", "numpy-xp")

class ArrayApiKernel(Kernel):
    """A function body for any array API library: no in-place updates (JAX arrays are immutable,
    torch's autograd records), the library's own fused softmax and log-sum-exp."""

    dialect = "xp"
    fuses_softmax = True

    def make_printer(self):
        printer = ArrayPrinter("xp")
        printer.helpers.update({"_namespace", "_asarray", "_special", "_device", "_float_dtype", "_broadcast_shapes"})
        return printer

    def prologue(self) -> list:
        d, fam = self.d, self.d.family
        params = list(d.parameters)
        names = self.signature()
        lines = [f"xp = _namespace({', '.join(names)})", "_sp = _special(xp)", f"device = _device({', '.join(params + ['x'] * self.with_x)})"]
        lines += [f"{p} = _asarray(xp, {p}, device)" for p in params]
        lines.append(f"dtype = _float_dtype(xp, {', '.join(params)})")
        lines += [f"{p} = xp.astype({p}, dtype, copy=False)" for p in params]
        # a closed form or a canonical map has no sample, and its stand-in family no value constraint
        is_index = self.with_x and (d.sample_index is not None or fam.value.own_axis)
        if self.with_x:
            lines.append("x = _asarray(xp, x, device)" if is_index else "x = xp.astype(_asarray(xp, x, device), dtype, copy=False)")
        lines += [f"{a} = _asarray(xp, {a}, device)" if c.own_axis else f"{a} = xp.astype(_asarray(xp, {a}, device), dtype, copy=False)"
                  for a, c in fam.arguments.items()]
        vectors = [n for n in names if d.constraints[n].event_dim]
        parts = [f"tuple({n}.shape)[:-1]" if n in vectors else f"tuple({n}.shape)" for n in names]
        sized = [n for n in vectors if not d.constraints[n].own_axis]
        if sized:
            lines.append(f"size = {sized[0]}.shape[-1]")
        lines.append(f"batch = _broadcast_shapes({', '.join(parts)})")
        for n in names:
            if n in vectors and d.constraints[n].own_axis and n != "x":  # block sizes: one vector for the batch
                continue
            if n in vectors and d.constraints[n].own_axis:  # an ordering: category indices along its own axis
                lines.append(f"_order = _with_ndim(xp, {n} if xp.isdtype({n}.dtype, 'integral') else xp.astype({n}, xp.int64), len(batch) + 1)")
            elif n in vectors:
                lines.append(f"{n} = _with_ndim(xp, {n}, len(batch) + 1)")
            elif n == "x" and is_index:
                lines.append("_x = x if xp.isdtype(x.dtype, 'integral') else xp.astype(x, xp.int64)")
                lines.append("_x = xp.reshape(_x, (1,) * (len(batch) - x.ndim) + tuple(x.shape) + (1,))")
            elif self.vector_family:
                lines.append(f"{n} = {n}[..., None]")
        self.printer.helpers.update({"_with_ndim", "_full"})
        return lines

    def elementwise(self, outputs: dict) -> tuple:
        """(lines, {target: owned?}): one statement per common subexpression and output; an
        output owns its array unless it is an input, a constant or another name."""
        low = self.lowering
        outputs = low.standardize(outputs) if self.with_x else outputs
        lowered = {n: low.lower(e) for n, e in outputs.items()}
        common, reduced = cse(list(lowered.values()), symbols=numbered_symbols("_t"))
        lines = [line for s in low.statements for line in self.statement(s)]
        jobs = [(str(s), e) for s, e in common] + list(zip(lowered, reduced))
        fresh = set(low.owned) | {s for s, _ in common}
        for position, (target, e) in enumerate(jobs):
            later = set().union(*(other.free_symbols for _, other in jobs[position + 1:]))
            negated = None if e.is_Relational or e.is_Boolean else -e  # (CSE may name a condition)
            if negated is not None and negated.is_Symbol and negated in fresh and negated not in later:  # −softmax: no new array
                self.printer.helpers.add("_negated")
                lines.append(f"{target} = _negated(xp, {negated})")
            else:
                lines.append(f"{target} = {self.printer.doprint(e)}")
        return lines, {target: bool(e.free_symbols) and not e.is_Symbol for target, e in zip(lowered, reduced)}

    def output(self, name: str, shape: str, copy) -> str:
        return f"_full(xp, {name}, {shape}, dtype, device, copy={copy})"

    def scatter_at_x(self, out: str, value: str, add: bool = False) -> str:
        return f"{out} = {self.helper('_add_at' if add else '_put_at', out, '_x', value)}"

    def matrix(self, kind: str, size: int, entries: dict) -> list:
        # no item assignment in the array API: stack rows of entries broadcast to the batch
        lines = [f"{name} = _full(xp, {name}, batch, dtype, device)" for name in entries.values()]
        rows = ", ".join("xp.stack([" + ", ".join(entries[min(r, c), max(r, c)] for c in range(size)) + "], axis=-1)"
                         for r in range(size))
        return lines + [f"return xp.stack([{rows}], axis=-2)"]

    def row_max(self, code: str) -> str:
        return f"xp.max({code}, axis=-1, keepdims=True)"

    def row_sum(self, code: str) -> str:
        return f"xp.sum({code}, axis=-1, keepdims=True)"

    def exp_shifted(self, name: str, body: str, top: str) -> list:
        return [f"{name} = xp.exp({body} - {top})"]

    def sum_except(self, values: str, total: str) -> str:
        return self.helper("_sum_except", values, total, "_x")

    def namespace_of(self, code: str) -> list:
        self.printer.helpers.add("_namespace")
        return [f"xp = _namespace({code})"]

    def cast_like(self, code: str, like: str) -> str:
        self.printer.helpers.add("_device")
        return f"xp.astype({self.helper('_asarray', code, f'_device({like})')}, {like}.dtype)"

    def stacked(self, codes: list, like: str) -> str:
        return f"xp.stack(xp.broadcast_arrays({', '.join(codes)}), axis=-1)"

    def pinv(self, code: str) -> str:
        return f"xp.linalg.pinv({code})"


def _imports(backend: str) -> list:
    if backend == "torch":
        return ["import array_api_compat.torch as _torch_xp",
                "from array_api_compat import device",
                "", "", "def array_namespace(*arrays):", "    return _torch_xp"]
    if backend == "jax":
        return ["import jax.numpy as _jnp", "", "", "def array_namespace(*arrays):", "    return _jnp", "",
                "", "def device(a):", "    return a.device"]
    if backend == "numpy-xp":
        return ["import array_api_compat.numpy as _np_xp", "from array_api_compat import device", "", "",
                "def array_namespace(*arrays):", "    return _np_xp"]
    return [
        "try:  # any array API library: numpy, torch, jax, cupy",
        "    from array_api_compat import array_namespace, device",
        "except ImportError:  # numpy alone: its own namespace is array-API compatible (numpy >= 2)",
        "    import numpy as _numpy",
        "",
        "    def array_namespace(*arrays):",
        "        return _numpy",
        "",
        "    def device(a):",
        '        return getattr(a, "device", None)',
    ]


def module_source(d, backend: str = "array-api", second=None) -> str:
    """A module with ``log_prob`` and ``eligibility`` (and, given the second-order math
    ``second``, ``hessian``, ``fisher``, ``natural_gradient``) for arrays of any array API library."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}")
    sig, lp_lines, lp_printer = log_prob_body(d, ArrayApiKernel)
    _, el_lines, el_printer = eligibility_body(d, ArrayApiKernel)
    helpers = set(lp_printer.helpers | el_printer.helpers)
    extra = {}
    if second is not None:
        extra, more, _ = second_order.functions(second, ArrayApiKernel)
        helpers |= more
    header, lp_doc, el_doc = assemble.header_and_docs(d, note=f"Array library: {backend} (array API namespace of the inputs).")
    return assemble.module(
        d, header=header, imports=_imports(backend), constants=f"\nBACKEND = {backend!r}",
        functions=[assemble.function_source("log_prob", sig, lp_doc, lp_lines),
                   assemble.function_source("eligibility", sig, el_doc, el_lines), *extra.values()],
        helpers=runtime.sources("xp", helpers), exported=["dense"] if "dense" in helpers else [],
    )
