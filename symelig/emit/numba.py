"""Numba source from a derivation: one compiled loop nest per kernel, batch rows on all cores.

The numpy kernels make one pass over memory per operation; here each kernel is one parallel
loop over the batch rows (``prange``), and inside a row everything the formula needs is computed
in as few passes over its categories as the formula allows (:mod:`symelig.emit.rows`; the scalar
code and its helpers: :mod:`symelig.emit.scalar`).  The expressions are the numpy kernels' stable
ones (:func:`~symelig.emit.kernel.split_outputs`, :func:`~symelig.emit.standardize.standardized`,
``stable(asymptotic(·))``), not re-derived.

This module chooses each function's outputs (log_prob; the eligibility without its δ_jx term and
its value at x; the Hessian and Fisher blocks or matrices), writes the Python functions around
the kernels (the numpy kernels' argument handling: arguments broadcast, the batch axes flattened
into rows; an argument that is the same for every row is passed as one row, read with stride 0,
not copied; float16 computed in float32) and assembles the module.  :func:`load` runs a module
from a file in the cache folder, where numba's ``cache=True`` keeps the compiled kernels.
"""
from __future__ import annotations

import hashlib
import re
import sys

from sympy import DiracDelta, IndexedBase, S

from ..engine import split_delta
from . import runtime
from .assemble import header_and_docs
from .kernel import split_outputs
from .rows import Kernel, Output, Row
from .scalar import NotAvailable


# What each function returns: (output array, its axes after the batch, key in the returned dict).
def _first_order(d, which: str) -> tuple:
    """(row, outputs, returns) of ``log_prob`` or ``eligibility``."""
    row = Row(d)
    if which == "log_prob":
        lowered = row.lower(row.standardize({"_log_prob": d.log_prob})["_log_prob"])
        return row, [Output("_out", lowered, False)], [("_out", "", None)]
    parts, deltas = split_outputs(d)
    outputs = row.standardize({**parts, **{f"_at_x_{n}": c for n, c in deltas.items()}})
    result, returns = [], []
    for name in d.eligibility:
        vector = isinstance(d.symbols[name], IndexedBase)
        at = row.lower(outputs[f"_at_x_{name}"]) if name in deltas else None
        result.append(Output(f"_e_{name}", row.lower(outputs[f"e_{name}"]), vector, at))
        returns.append((f"_e_{name}", "size" if vector else "", name))
    return row, result, returns


def _second_order(so, kind: str) -> tuple:
    """(row, outputs, returns) of ``hessian`` or ``fisher`` (see emit/second_order.py)."""
    from .second_order import vector_parameter

    d = so.first
    with_x = kind == "hessian"
    row = Row(d, with_x)
    vector = vector_parameter(so)
    if vector:
        block = so.structure[(vector, vector)][kind]
        sample = row.sample if with_x else None
        diagonal, at_x = split_delta(block.diagonal, sample)
        parts = row.standardize({"d": diagonal, "c": block.scale, "u": block.vector, **({"at": at_x} if at_x != 0 else {})})
        at = row.lower(parts["at"]) if "at" in parts else None
        outputs = [Output("_diagonal", row.lower(parts["d"]), True, at, add=True),
                   Output("_scale", row.lower(parts["c"]), False), Output("_vector", row.lower(parts["u"]), True)]
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
        outputs.append(Output("_matrix", row.lower(entries[key]), False, places=places))
    return row, outputs, [("_matrix", f"{len(names)}, {len(names)}", None)]


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
        d, note="Backend: numba (compiled loops over the batch rows on all cores, cached on disk; export it with --backend numba).")
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
        kernel = Kernel(row, f"_{name}_kernel", outputs)
        arguments = ["x"] * with_x + [*d.family.arguments, *d.parameters]
        blocks += [_wrapper(d, name, kernel.name, returns, doc, with_x), kernel.source(arguments)]
        helpers |= kernel.printer.helpers
    helpers |= {"_rows", "_categories"}  # the wrappers' (and ``_njit``, which the kernels use)
    # (the kernels' code uses _math and _np)
    lines = ["import math", "import math as _math", "", "import numba as _numba", "import numpy as np", "import numpy as _np",
             "from numba import prange as _prange"]
    lines += [line for line in runtime.imports("numba", helpers | {"_njit"}) if line not in lines]
    python_helpers = runtime.sources("numpy", numpy_helpers | {"_float_dtype"})
    return "\n\n".join([
        header + "\n".join(lines),
        runtime.source("numba", "_njit"),  # before the kernels, which it decorates
        f"__all__ = [{', '.join(repr(n) for n in names)}]\nFAMILY = {d.family.name!r}\nPARAM = {d.param!r}\n"
        f"PARAMETERS = {tuple(d.parameters)!r}\nBACKEND = 'numba'",
        *blocks, *extra,
        *(h + "\n" for h in python_helpers),
        *(h + "\n" for h in runtime.sources("numba", helpers) if h != runtime.source("numba", "_njit")),
    ]).rstrip() + "\n"


def load(source: str, label: str):
    """The module of ``source`` (this package's own output, never user text), run from that text.

    numba's ``cache=True`` needs a real file and keeps the compiled kernels beside it: the source
    is written to ``numba/`` in symelig's cache folder (private, see :mod:`symelig.cache`), named
    by its SHA-256, atomically, and only when no identical file is there (a rewrite would make
    numba compile again).  What runs is ``source`` itself, not what is read back.  Where the cache
    folder cannot be used or written, a private temporary folder serves this process."""
    import types

    stem = f"{re.sub(r'[^A-Za-z0-9_]', '_', label)[:80]}_{hashlib.sha256(source.encode()).hexdigest()[:24]}"
    name = f"symelig_numba_{stem}"
    if name in sys.modules:
        return sys.modules[name]
    path = _written(source.encode(), f"{stem}.py")
    module = types.ModuleType(name)
    module.__file__ = str(path)
    exec(compile(source, str(path), "exec"), module.__dict__)
    sys.modules[name] = module  # numba finds a cached kernel's globals by importing its module
    return module


def _written(data: bytes, filename: str):
    """The path of ``filename`` holding ``data``: in the cache's ``numba/`` folder, else in a
    temporary one; written atomically unless an identical file is already there."""
    from ..errors import SymeligError
    from ..files import replace

    for folder in (_cache_folder(), _temporary_folder()):
        if folder is None:
            continue
        path = folder / filename
        try:
            if not (path.is_file() and not path.is_symlink() and path.read_bytes() == data):
                replace(path, data, keep=False)
            return path
        except (OSError, SymeligError):
            continue
    raise SymeligError("cannot write the numba kernels' module to the cache folder or to a temporary folder")


def _cache_folder():
    """``numba/`` in symelig's cache folder when that is usable and private, else None."""
    from .. import cache

    base = cache.folder()
    if base is not None and cache.private(base) and cache.private(base / "numba"):
        return base / "numba"
    return None


_temporary = None


def _temporary_folder():
    """A private temporary folder (0700), removed when the process exits."""
    global _temporary
    if _temporary is None:
        import atexit
        import shutil
        import tempfile
        from pathlib import Path

        _temporary = Path(tempfile.mkdtemp(prefix="symelig-numba-"))
        atexit.register(shutil.rmtree, _temporary, ignore_errors=True)
    return _temporary
