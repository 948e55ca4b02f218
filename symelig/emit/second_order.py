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

HELPERS = {
    "_rank_one_solve": '''def _rank_one_solve(d, c, u, g):
    """(diag(d) + c·u·uᵀ)⁻¹ g by Sherman–Morrison, O(K): g/d − w·c(w·g)/(1 + c(w·u)), w = u/d;
    a category with d = 0 (and u = 0: a zero row of F) gets 0, as the pseudo-inverse gives."""
    inverse = _pinv_diagonal(d)
    w = u * inverse
    wg = np.sum(w * g, axis=-1, keepdims=True)
    wu = np.sum(w * u, axis=-1, keepdims=True)
    return g * inverse - w * (c * wg / (1 + c * wu))''',
    "_rank_one_pinv_solve": '''def _rank_one_pinv_solve(d, n, g):
    """F⁺g for F = diag(d) + c·u·uᵀ singular with null vector n = u/d: g is projected onto the
    range of F (n⊥), divided by d, and the result projected off n (the minimum-norm solution).
    Categories with d = 0 (a softmax that underflowed, a count total of 0) are zero rows of F:
    they are left out of the range, and get 0."""
    inverse = _pinv_diagonal(d)
    support = inverse != 0
    n = np.where(support, n, 0)
    nn = np.sum(n * n, axis=-1, keepdims=True)
    nn = np.where(nn == 0, 1, nn)
    g = np.where(support, g, 0)
    g = g - n * (np.sum(n * g, axis=-1, keepdims=True) / nn)
    v = g * inverse
    return v - n * (np.sum(n * v, axis=-1, keepdims=True) / nn)''',
    "_pinv_diagonal": '''def _pinv_diagonal(d):
    """1/d, and 0 where d = 0: the pseudo-inverse of a diagonal."""
    safe = np.where(d == 0, 1, d)
    return np.where(d == 0, 0, 1 / safe)''',
    "dense": '''def dense(block):
    """The (..., K, K) matrix diag(d) + c·u·uᵀ of a structured block (K² memory: for small K)."""
    d, c, u = block["diagonal"], block["scale"], block["vector"]
    out = c[..., None, None] * u[..., :, None] * u[..., None, :]
    out[..., range(d.shape[-1]), range(d.shape[-1])] += d
    return out''',
}


XP_HELPERS = {
    "_rank_one_solve": '''def _rank_one_solve(xp, d, c, u, g):
    """(diag(d) + c·u·uᵀ)⁻¹ g by Sherman–Morrison, O(K), without in-place updates."""
    inverse = _pinv_diagonal(xp, d)
    w = u * inverse
    wg = xp.sum(w * g, axis=-1, keepdims=True)
    wu = xp.sum(w * u, axis=-1, keepdims=True)
    return g * inverse - w * (c * wg / (1 + c * wu))''',
    "_rank_one_pinv_solve": '''def _rank_one_pinv_solve(xp, d, n, g):
    """F⁺g for a singular F = diag(d) + c·u·uᵀ with null vector n (see the numpy kernels)."""
    inverse = _pinv_diagonal(xp, d)
    support = inverse != 0
    n = xp.where(support, n, xp.zeros_like(n))
    nn = xp.sum(n * n, axis=-1, keepdims=True)
    nn = xp.where(nn == 0, xp.ones_like(nn), nn)
    g = xp.where(support, g, xp.zeros_like(g))
    g = g - n * (xp.sum(n * g, axis=-1, keepdims=True) / nn)
    v = g * inverse
    return v - n * (xp.sum(n * v, axis=-1, keepdims=True) / nn)''',
    "_pinv_diagonal": '''def _pinv_diagonal(xp, d):
    """1/d, and 0 where d = 0: the pseudo-inverse of a diagonal."""
    zero = d == 0
    return xp.where(zero, xp.zeros_like(d), 1 / xp.where(zero, xp.ones_like(d), d))''',
    "dense": '''def dense(block):
    """The (..., K, K) matrix diag(d) + c·u·uᵀ of a structured block (K² memory: for small K)."""
    d, c, u = block["diagonal"], block["scale"], block["vector"]
    xp = _namespace(d)
    eye = xp.eye(d.shape[-1], dtype=d.dtype, device=device(d))
    return c[..., None, None] * u[..., :, None] * u[..., None, :] + eye * d[..., None, :]''',
}


def vector_parameter(so) -> str | None:
    vectors = [n for n in so.first.parameters if isinstance(so.first.symbols[n], IndexedBase)]
    return vectors[0] if vectors else None


def supported(so) -> bool:
    """Kernels exist for scalar parameters or for one vector parameter (every catalog entry); a
    user's mix of a vector and scalar parameters (logits = z/τ) has its math printed only."""
    names = so.first.parameters
    return vector_parameter(so) is None or len(names) == 1


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
    xp = backend.dialect == "xp"
    ns = "xp" if xp else "np"
    pre = "xp, " if xp else ""
    args = [*first.family.arguments, *first.parameters]
    call = ", ".join(args)
    vector = vector_parameter(so)
    lines = [f"f = fisher({call})"]
    if xp:
        lines.append("xp = _namespace(f['diagonal'] if isinstance(f, dict) else f)")
    if vector:
        null = (so.null_space or {}).get((vector, vector))
        block = so.structure[(vector, vector)]["fisher"]
        g = (f"xp.astype(_asarray(xp, grad[{vector!r}], _device(f['diagonal'])), f['diagonal'].dtype)" if xp
             else f"np.asarray(grad[{vector!r}], f['diagonal'].dtype)")
        if null is not None:
            f_null = backend(first, with_x=False)
            lines += f_null.prologue()
            body, owned = f_null.elementwise({"_null": null})
            lines += body
            lines.append(f"_null = {f_null.output('_null', 'batch + (size,)', not owned['_null'])}")
            lines.append(f"return {{{vector!r}: _rank_one_pinv_solve({pre}f['diagonal'], _null, {g})}}")
            helpers = {"_rank_one_pinv_solve", "_pinv_diagonal"} | f_null.printer.helpers
            how = f"F is singular; its null space is spanned by n_j = {formula(null)}: F⁺ (Moore–Penrose) in O(K)"
        elif block.scale == 0:
            lines.append(f"return {{{vector!r}: {g} * _pinv_diagonal({pre}f['diagonal'])}}")
            helpers = {"_pinv_diagonal"}
            how = "F is diagonal"
        else:
            lines.append(f"return {{{vector!r}: _rank_one_solve({pre}f['diagonal'], f['scale'][..., None], f['vector'], {g})}}")
            helpers = {"_rank_one_solve", "_pinv_diagonal"}
            how = "F⁻¹ by Sherman–Morrison in O(K)"
    else:
        names = list(first.parameters)
        grads = {n: (f"xp.astype(_asarray(xp, grad[{n!r}], _device(f)), f.dtype)" if xp else f"grad[{n!r}]") for n in names}
        diagonal = all(e == 0 for (a, b), e in so.fisher.items() if a != b)
        if diagonal:
            helpers = {"_pinv_diagonal"}
            parts = ", ".join(f"{n!r}: {grads[n]} * _pinv_diagonal({pre}f[..., {k}, {k}])" for k, n in enumerate(names))
            lines.append(f"return {{{parts}}}")
            how = "F is diagonal"
        else:
            stacked = ", ".join(grads[n] for n in names)
            lines.append(f"g = {ns}.stack({ns}.broadcast_arrays({stacked}), axis=-1)" + ("" if xp else ".astype(f.dtype)"))
            # Moore–Penrose: F may be singular for a user's reparametrization (loc = a·b)
            pinv = "xp.linalg.pinv(f)" if xp else "np.linalg.pinv(f, hermitian=True)"
            lines.append(f"v = ({pinv} @ g[..., None])[..., 0]  # batch axes broadcast")
            lines.append("return {" + ", ".join(f"{n!r}: v[..., {k}]" for k, n in enumerate(names)) + "}")
            how = "a batched P×P pseudo-inverse"
            helpers = set()
    if xp:
        helpers |= {"_namespace", "_asarray", "_device"}
    doc = (
        "The natural gradient F(θ)⁺·grad, {parameter: array}, for grad shaped like the eligibility\n"
        f"    (e.g. the mean eligibility of a batch).  {how}.\n    "
    )
    return function_source("natural_gradient", ["grad", *args], doc, lines), helpers


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
