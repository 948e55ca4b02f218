"""The second-order functions ``hessian``, ``fisher`` and ``natural_gradient``, written once against
the backend interface of :class:`symelig.emit.kernel.Kernel` (numpy, array API).

They reuse the first-order lowering (category axis last, reductions once, buffers recycled):

* scalar parameters: a batch of P×P matrices, shape (..., P, P), in the order of PARAMETERS;
* a vector parameter: the block δ_jl·d_j + c·u_j·u_l as {"diagonal": (..., K), "scale": (...),
  "vector": (..., K)}; ``dense`` expands it to (..., K, K) when that is really wanted.

``natural_gradient(grad, ...)`` returns F⁺g: for a rank-one block in O(K) by Sherman–Morrison,
or, where the block is singular with null vector n, by projecting g and the solution off n (the
Moore–Penrose inverse); for scalar parameters by a batched P×P solve, or a division where F is
diagonal.
"""
from __future__ import annotations

from sympy import DiracDelta, IndexedBase, S

from ..engine import split_delta
from .assemble import function_source
from .text import formula


def vector_parameter(so) -> str | None:
    vectors = [n for n in so.first.parameters if isinstance(so.first.symbols[n], IndexedBase)]
    return vectors[0] if vectors else None


def supported(so) -> bool:
    """Kernels exist for scalar parameters or for one vector parameter whose Hessian is a
    diagonal plus a rank-one block; several vector parameters (diag_normal, normal_mixture), a
    user's mix of a vector and scalar parameters (logits = z/τ), and a Hessian of another form
    (Plackett–Luce's sum of rank-one terms, one per step; a mixture's rank two) have their math
    printed only."""
    names = so.first.parameters
    vector = vector_parameter(so)
    return vector is None or len(names) == 1 and (vector, vector) in (so.structure or {})


def functions(so, backend) -> tuple:
    """({function name: source}, {helper names}, {modules}) for the second-order functions,
    written for the Kernel class ``backend`` (numpy's in-place ufuncs, or any array API library)."""
    sources, helpers, modules = {}, set(), set()
    if not supported(so):
        return sources, helpers, modules
    kinds = [("hessian", True)] + ([("fisher", False)] if so.fisher is not None else [])
    for kind, with_x in kinds:
        f = backend(so.first, with_x=with_x)
        lines = f.prologue() + _body(so, f, kind)
        lines = f.local_imports() + lines
        sources[kind] = function_source(kind, f.signature(), doc(so, kind), lines)
        helpers |= f.printer.helpers
        modules |= set(f.printer.module_imports)
    if so.fisher is not None:
        sources["natural_gradient"], extra = natural_gradient(so, backend)
        helpers |= extra
    if vector_parameter(so):
        helpers.add("dense")
    return sources, helpers, modules


def _body(so, f, kind: str) -> list:
    """Statements computing the matrix (or structured block) ``kind`` and returning it."""
    first = so.first
    vector = vector_parameter(so)
    if vector:
        block = so.structure[(vector, vector)][kind]
        diagonal, at_x = split_delta(block.diagonal, first.sample_index if f.with_x else None)
        outputs = {"_diagonal": diagonal, "_scale": block.scale, "_vector": block.vector}
        if at_x != 0:
            outputs["_diagonal_at_x"] = at_x
        lines, owned = f.elementwise(outputs)
        lines += [
            f"_diagonal = {f.output('_diagonal', 'batch + (size,)', not owned['_diagonal'])}",
            # the two may be one buffer (u = d for softmax logits): the caller gets two arrays
            f"_vector = {f.output('_vector', 'batch + (size,)', '_vector is _diagonal or ' + str(not owned['_vector']))}",
            f"_scale = {f.output('_scale', 'batch + (1,)', True)}[..., 0]",
        ]
        if at_x != 0:
            lines.append(f.scatter_at_x("_diagonal", "_diagonal_at_x", add=True))
        lines.append('return {"diagonal": _diagonal, "scale": _scale, "vector": _vector}')
        return lines
    matrix = so.hessian if kind == "hessian" else so.fisher
    # a Dirac delta (Laplace at x = μ) is 0 everywhere else: the kernel gives H almost everywhere
    matrix = {pair: e.replace(lambda a: isinstance(a, DiracDelta), lambda a: S.Zero) for pair, e in matrix.items()}
    names = list(first.parameters)
    outputs = {f"_{kind}_{names.index(a)}_{names.index(b)}": e for (a, b), e in matrix.items()}
    lines, _ = f.elementwise(outputs)
    entries = {(names.index(a), names.index(b)): f"_{kind}_{names.index(a)}_{names.index(b)}" for (a, b) in matrix}
    return lines + f.matrix(kind, len(names), entries)


def natural_gradient(so, backend) -> tuple:
    """(source of ``natural_gradient``, {helpers}) for the Kernel class ``backend``: F⁺·grad on
    the result of the module's own ``fisher``."""
    first = so.first
    k = backend(first, with_x=False)
    args = [*first.family.arguments, *first.parameters]
    vector = vector_parameter(so)
    lines = [f"f = fisher({', '.join(args)})"] + k.namespace_of("f['diagonal'] if isinstance(f, dict) else f")
    if vector:
        null = (so.null_space or {}).get((vector, vector))
        block = so.structure[(vector, vector)]["fisher"]
        d = "f['diagonal']"
        g = k.cast_like(f"grad[{vector!r}]", d)
        if null is not None:
            lines += k.prologue()
            body, owned = k.elementwise({"_null": null})
            lines += body
            lines.append(f"_null = {k.output('_null', 'batch + (size,)', not owned['_null'])}")
            lines.append(f"return {{{vector!r}: {k.helper('_positive_zero', k.helper('_rank_one_pinv_solve', d, '_null', g))}}}")
            how = f"F is singular; its null space is spanned by n_j = {formula(null)}: F⁺ (Moore–Penrose) in O(K)"
        elif block.scale == 0:
            lines.append(f"return {{{vector!r}: {k.helper('_positive_zero', f'{g} * ' + k.helper('_pinv_diagonal', d))}}}")
            how = "F is diagonal"
        else:
            solve = k.helper("_rank_one_solve", d, "f['scale'][..., None]", "f['vector']", g)
            lines.append(f"return {{{vector!r}: {k.helper('_positive_zero', solve)}}}")
            how = "F⁻¹ by Sherman–Morrison in O(K)"
    else:
        names = list(first.parameters)
        grads = [k.operand(f"grad[{n!r}]", "f") for n in names]
        if all(e == 0 for (a, b), e in so.fisher.items() if a != b):
            parts = ", ".join(f"{n!r}: " + k.helper("_positive_zero", f"{g} * " + k.helper("_pinv_diagonal", f"f[..., {i}, {i}]"))
                              for i, (n, g) in enumerate(zip(names, grads)))
            lines.append(f"return {{{parts}}}")
            how = "F is diagonal"
        else:
            lines.append(f"g = {k.stacked(grads, 'f')}")
            # Moore–Penrose: F may be singular for a user's reparametrization (loc = a·b)
            lines.append(f"v = ({k.pinv('f')} @ g[..., None])[..., 0]  # batch axes broadcast")
            lines.append("return {" + ", ".join(f"{n!r}: " + k.helper("_positive_zero", f"v[..., {i}]") for i, n in enumerate(names)) + "}")
            how = "a batched P×P pseudo-inverse"
    doc = (
        "The natural gradient F(θ)⁺·grad, {parameter: array}, for grad shaped like the eligibility\n"
        f"    (e.g. the mean eligibility of a batch).  {how}.\n    "
    )
    return function_source("natural_gradient", ["grad", *args], doc, lines), k.printer.helpers


def doc(so, kind: str) -> str:
    """The docstring of ``hessian`` or ``fisher``: the shape of the result and its formulas."""
    first = so.first
    vector = vector_parameter(so)
    names = ", ".join(formula(first.wrt(n)) for n in first.parameters)
    what = "∂² log p(x | θ)/∂θ∂θᵀ" if kind == "hessian" else f"the Fisher information F(θ) ({so.method})"
    if vector:
        block = so.structure[(vector, vector)][kind]
        shape = (
            f"{{\"diagonal\": d, \"scale\": c, \"vector\": u}}, the K×K block δ_jl·d_j + c·u_j·u_l with\n"
            f"    d_j = {formula(block.diagonal)}, c = {formula(block.scale)}, u_j = {formula(block.vector)}\n"
            "    (``dense(block)`` gives the (..., K, K) matrix)"
        )
    else:
        matrix = so.hessian if kind == "hessian" else so.fisher
        entries = "\n".join(f"    [{formula(first.wrt(a))}, {formula(first.wrt(b))}] = {formula(e)}" for (a, b), e in matrix.items())
        shape = f"an array (..., P, P) over ({names}), symmetric:\n{entries}"
    return f"{what}: {shape}.\n    "
