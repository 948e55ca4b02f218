"""The public derivation object: the math, its printed forms, and kernels that evaluate it."""
from __future__ import annotations

import functools
import hashlib
import linecache

import numpy as np

from .engine import SymbolicDerivation, derive_symbolic
from .errors import SymeligError
from .family import lookup


class Derivation:
    """log p(x | θ) and its eligibility for one catalog entry.

    ``log_prob(x, **params)`` and ``eligibility(x, **params)`` check their arguments against
    the family's declared constraints (one-line :class:`SymeligError` on bad input) and then run
    the generated numpy kernels, or with ``backend="numba"`` the numba ones; ``kernels`` is the
    generated numpy module itself, without checks (``numba_kernels`` the numba module).
    """

    # Checks across arguments, run after each argument's own constraint: f(arrays) raises
    # SymeligError.  A --via derivation checks its right side against the left side's
    # constraint (symelig.user.ViaCheck); catalog entries have none.
    value_checks: tuple = ()

    def __init__(self, symbolic: SymbolicDerivation, backend: str = "numpy", twin: "Derivation | None" = None):
        self.symbolic = symbolic
        self.backend = backend
        self._twin = twin  # the numpy derivation of the same entry, whose second-order math is shared
        self.family = symbolic.family.name
        self.param = symbolic.param
        self.parameters = symbolic.parameters
        self.arguments = tuple(symbolic.family.arguments)

    def __repr__(self):
        backend = "" if self.backend == "numpy" else f" backend={self.backend!r}"
        return f"<Derivation {self.family} param={self.param!r}{backend}>"

    # printed forms -----------------------------------------------------------------------
    def latex(self, standalone: bool = False, order: int = 1) -> str:
        """Math only: log p, each ∂ log p/∂θ and the reparametrization's definitions (with
        ``order=2`` the Hessian and the Fisher information) as one ``aligned`` block, which
        ``IPython.display.Math`` and MathJax take.  ``standalone=True`` is ``latex_document``."""
        return self._latex("document" if standalone else "math", order)

    def latex_fragment(self, order: int = 1) -> str:
        """The paper fragment ``derive --format latex`` prints: ``align`` environments with
        ``%`` comments naming the entry and a "where …" sentence for the symbols."""
        return self._latex("fragment", order)

    def latex_document(self, order: int = 1) -> str:
        """A whole document that pdflatex compiles (``derive --format latex --standalone``)."""
        return self._latex("document", order)

    def _latex(self, form: str, order: int) -> str:
        from .emit import latex

        second = self.second_order if order == 2 else None
        if form == "document":
            return latex.document(self.symbolic, second)
        if form == "fragment":
            return latex.fragment(self.symbolic) + (latex.second_order_fragment(second) if second else "")
        from .emit.display import derivation_math

        return derivation_math(self.symbolic, second)

    # what a notebook (IPython, Jupyter) displays instead of the repr
    def _repr_latex_(self) -> str:
        return f"$${self.latex()}$$"

    def _repr_markdown_(self) -> str:
        from .emit.display import derivation_markdown

        return derivation_markdown(self.symbolic)

    def _repr_html_(self) -> str:
        from .emit.display import derivation_html

        return derivation_html(self.symbolic)

    def text(self, order: int = 1) -> str:
        from .emit import text

        return text.render(self.symbolic) + (text.render_second_order(self.second_order) if order == 2 else "")

    @functools.cached_property
    def numpy_source(self) -> str:
        from .emit.numpy import module_source

        return module_source(self.symbolic)

    def to_dict(self, order: int = 1) -> dict:
        from .emit.latex import tex
        from .emit.text import formula

        s = self.symbolic
        out = {
            "family": self.family,
            "param": self.param,
            "parameters": list(self.parameters),
            "arguments": list(self.arguments),
            "convention": "eligibility = gradient of log p(x | theta) (Williams 1992)",
            "log_prob": {"text": formula(s.log_prob), "latex": tex(s.log_prob), "sympy": str(s.log_prob)},
            "eligibility": {
                n: {"wrt": formula(s.wrt(n)), "text": formula(e), "latex": tex(e), "sympy": str(e)}
                for n, e in s.eligibility.items()
            },
        }
        if order == 2:
            out.update(self._second_order_dict())
        return out

    def _second_order_dict(self) -> dict:
        from .emit.latex import tex
        from .emit.text import formula

        so = self.second_order

        def entries(matrix):
            return [{"wrt": [a, b], "text": formula(e), "latex": tex(e), "sympy": str(e)} for (a, b), e in matrix.items()]

        return {
            "hessian": entries(so.hessian),
            "fisher": entries(so.fisher) if so.fisher is not None else None,
            "fisher_method": so.method if so.fisher is not None else f"no closed form: {so.no_closed_form}",
            "fisher_assumptions": list(so.assumptions),
            "fisher_null_space": {a: formula(n) for (a, _), n in (so.null_space or {}).items()},
        }

    # kernels -----------------------------------------------------------------------------
    @functools.cached_property
    def kernels(self):
        """The generated module (``log_prob``, ``eligibility``), compiled from ``numpy_source``."""
        return self._compile(self.numpy_source, "numpy")

    def _compile(self, source: str, kind: str):
        import types

        # The source is our own printer's output over validated identifiers, never user text.
        # Named by its content: two derivations of one (family, param) — custom log-densities,
        # --via expressions — must not share a linecache entry (tracebacks and inspect.getsource
        # of one kernel showed the other's code), whichever thread compiles first.
        digest = hashlib.sha256(source.encode()).hexdigest()[:16]
        filename = f"<symelig {self.family} {self.param} {kind} {digest}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        module = types.ModuleType(f"symelig_generated_{self.family}_{self.param}_{kind}")
        exec(compile(source, filename, "exec"), module.__dict__)
        return module

    @functools.cached_property
    def array_api_kernels(self):
        """The same kernels for any array API library (torch, jax, cupy, numpy): arrays in, arrays
        of the same library, device and dtype out (see :mod:`symelig.emit.xp`)."""
        from .emit.xp import module_source

        return self._compile(module_source(self.symbolic), "array_api")

    @functools.cached_property
    def numba_kernels(self):
        """The kernels compiled by numba (``log_prob``, ``eligibility``): one parallel loop over the
        batch rows per kernel, the same formulas and arguments as ``kernels`` (see
        :mod:`symelig.emit.numba`); compiled on first use, and cached on disk."""
        from .emit.numba import load, module_source

        require_numba()
        return load(module_source(self.symbolic), f"{self.family}_{self.param}")

    @functools.cached_property
    def second_order_numba_kernels(self):
        """``numba_kernels`` with ``hessian``, ``fisher`` and ``natural_gradient``."""
        from .emit.numba import load, module_source

        require_numba()
        return load(module_source(self.symbolic, self.second_order), f"{self.family}_{self.param}_second_order")

    @property
    def _first_order_kernels(self):
        return self.numba_kernels if self.backend == "numba" else self.kernels

    @property
    def _second_order_kernels(self):
        return self.second_order_numba_kernels if self.backend == "numba" else self.second_order_kernels

    # second order -----------------------------------------------------------------------
    @functools.cached_property
    def second_order(self):
        """The Hessian and Fisher information math (:class:`symelig.second_order.SecondOrder`)."""
        from .second_order import derive_second_order

        if self._twin is not None:
            return self._twin.second_order
        return derive_second_order(self.symbolic)

    @functools.cached_property
    def full_numpy_source(self) -> str:
        """``numpy_source`` with ``hessian``, ``fisher`` and ``natural_gradient`` added."""
        from .emit.numpy import module_source

        return module_source(self.symbolic, self.second_order)

    @functools.cached_property
    def second_order_kernels(self):
        return self._compile(self.full_numpy_source, "second_order")

    @functools.cached_property
    def second_order_array_api_kernels(self):
        """``array_api_kernels`` with the second-order functions, for torch, JAX and CuPy arrays."""
        from .emit.xp import module_source

        return self._compile(module_source(self.symbolic, "array-api", self.second_order), "array_api_second_order")

    def hessian(self, x, *, validate: bool = True, **params):
        """∂² log p(x | θ)/∂θ∂θᵀ: an array (..., P, P) over the parameters in order, or for a
        vector parameter the block δ_jl·d_j + c·u_j·u_l as {"diagonal", "scale", "vector"}.
        A value that is not finite (beyond the dtype's range) is an error, as for ``eligibility``."""
        self._require_kernels()
        return self._second_order_call("hessian", x, self.defaulted(x, params), validate)

    def fisher(self, *, validate: bool = True, **params):
        """The Fisher information F(θ) = E[e eᵀ], shaped like ``hessian`` (no sample needed); a
        value that is not finite is an error (``validate=False`` returns it as it is)."""
        self._require_fisher()
        return self._second_order_call("fisher", None, self.defaulted(None, params), validate)

    # entropy and KL divergence (symelig.divergence) ---------------------------------------
    def entropy(self, *, method: str = "closed_form", samples: int = 100_000, seed=None, validate: bool = True, **params):
        """H = E_{x∼p}[−log p(x | θ)], shaped like the batch: in closed form (a one-line
        SymeligError where the engine derives none, naming ``method="monte_carlo"``), or with
        ``method="monte_carlo"`` an :class:`~symelig.monte_carlo.Estimate` (value, standard_error,
        samples) from ``samples`` draws of numpy's Generator seeded with ``seed``."""
        if _method(method) == "monte_carlo":
            from .monte_carlo import estimate

            return estimate(self, "entropy", {"p": params}, samples, seed)
        from .entropy_kl import closed_form, evaluate

        return evaluate(self, closed_form("entropy", self.family, self.param), {"p": params}, False, validate)

    def entropy_gradient(self, *, validate: bool = True, **params) -> dict:
        """{parameter: ∂H/∂parameter}, shaped like the parameters."""
        from .entropy_kl import closed_form, evaluate

        return evaluate(self, closed_form("entropy", self.family, self.param), {"p": params}, True, validate)["p"]

    def kl(self, p: dict, q: dict, *, method: str = "closed_form", samples: int = 100_000, seed=None, validate: bool = True):
        """KL(p ‖ q) = E_{x∼p}[log p(x) − log q(x)] for two members given as dicts of this
        parametrization's arguments, shaped like the broadcast batch; ``method="monte_carlo"``
        as for ``entropy`` (draws from p)."""
        if _method(method) == "monte_carlo":
            from .monte_carlo import estimate

            return estimate(self, "kl", {"p": p, "q": q}, samples, seed)
        from .entropy_kl import closed_form, evaluate

        return evaluate(self, closed_form("kl", self.family, self.param), {"p": p, "q": q}, False, validate)

    def kl_gradient(self, p: dict, q: dict, *, validate: bool = True) -> dict:
        """{"p": {parameter: ∂KL/∂θ_p}, "q": {parameter: ∂KL/∂θ_q}}."""
        from .entropy_kl import closed_form, evaluate

        return evaluate(self, closed_form("kl", self.family, self.param), {"p": p, "q": q}, True, validate)

    def _second_order_call(self, function: str, x, params: dict, validate: bool = True):
        """Checked numpy arguments to the numpy kernels, tensors to the array API ones."""
        if _foreign(x, params):
            return self._foreign_call(function, x, params, self.second_order_array_api_kernels)
        args = self._checked(x, params) if validate else params if x is None else {"x": x, **params}
        with np.errstate(all="ignore"):
            result = getattr(self._second_order_kernels, function)(**args)
        if validate:
            self._require_finite(function, result, args)
        return result

    def natural_gradient(self, grad: dict, *, validate: bool = True, **params) -> dict:
        """F(θ)⁺·grad for ``grad`` = {parameter: array} shaped like the eligibility."""
        self._require_fisher()
        params = self.defaulted(None, params)
        if not isinstance(grad, dict) or set(grad) != set(self.parameters):
            raise SymeligError(f"grad must be a dict with the keys {', '.join(self.parameters)}")
        if _foreign(None, {**params, **grad}):
            self.check_names(params)
            return self.second_order_array_api_kernels.natural_gradient(grad, **_like_tensors([*grad.values(), *params.values()], params))
        args = self._checked(None, params)
        grad = {n: as_array(f"grad[{n!r}]", g) for n, g in grad.items()}
        for n, g in grad.items():  # shaped like the eligibility: the parameter's, batch axes broadcasting
            shape = np.shape(args[n])
            vector = n in self._vectors
            if (vector and (g.ndim == 0 or g.shape[-1] != shape[-1])) or not _broadcasts(g.shape, shape):
                raise SymeligError(f"grad[{n!r}] has shape {g.shape}, which does not fit {n} of shape {shape}"
                                   + (" (the last axis is the category axis)" if vector else ""))
        batches = [g.shape[:-1] if n in self._vectors else g.shape for n, g in grad.items()]
        batches += [np.shape(a)[:-1] if self.symbolic.constraints[n].event_dim else np.shape(a) for n, a in args.items()]
        if not _broadcasts(*batches):
            listed = ", ".join([f"grad[{n!r}] {g.shape}" for n, g in grad.items()] + [f"{n} {np.shape(a)}" for n, a in args.items()])
            raise SymeligError(f"the batch shapes of grad and the parameters do not broadcast: {listed}")
        if validate:
            for n, g in grad.items():
                if g.dtype.kind == "f" and not np.all(np.isfinite(g)):
                    raise SymeligError(f"grad[{n!r}] holds a value that is not finite")
        with np.errstate(all="ignore"):
            result = self._second_order_kernels.natural_gradient(grad, **args)
        if validate:
            self._require_finite("natural_gradient", result, args)
        return result

    def _require_finite(self, function: str, result, args: dict) -> None:
        """A one-line error where a second-order result is inf or nan: its true value is beyond
        the dtype's range (a scale of 1e-160 gives 1/σ² > 1e308), or infinite (F at a category
        of probability 0)."""
        parts = result.values() if isinstance(result, dict) else [result]
        for value in parts:
            value = np.asarray(value)
            if np.all(np.isfinite(value)):
                continue
            bad = ~np.isfinite(value)
            where = np.argwhere(bad)[0]
            constraint_of = self.symbolic.constraints
            batch = len(np.broadcast_shapes(*(np.shape(a)[:-1] if constraint_of[n].event_dim else np.shape(a) for n, a in args.items())))
            at = f" at batch index {[int(w) for w in where[:batch]]}" if batch else ""
            zero = [n for n in self.parameters if constraint_of[n].lower == 0 and not constraint_of[n].lower_open
                    and np.any(np.asarray(args[n]) == 0)]
            why = (f"{zero[0]} has an entry 0 (a category of probability 0), where it is infinite" if zero and function != "hessian"
                   else ("x and " if function == "hessian" else "") + "the parameters are too extreme for this precision"
                   + ("" if value.dtype == np.float64 else "; float64 has more range"))
            what = {"hessian": "the Hessian", "fisher": "the Fisher information", "natural_gradient": "the natural gradient"}[function]
            raise SymeligError(f"{what}{at} is not finite in {value.dtype} ({value[tuple(where)].item()}): {why}")

    def _require_kernels(self) -> None:
        from .emit.second_order import supported

        if not supported(self.second_order):
            vectors = [n for n in self.parameters if n in self._vectors]
            if len(self.parameters) == 1:
                why = f"the Hessian of {self.parameters[0]} is not a diagonal plus a rank-one block"
            else:
                why = f"{', '.join(self.parameters)} {'are several vector parameters' if len(vectors) > 1 else 'mix both'}"
            raise SymeligError(
                "second-order kernels are generated for scalar parameters or one vector parameter with a diagonal "
                f"plus rank-one Hessian; {why} (the formulas are printed by `derive --order 2`)"
            )

    def _require_fisher(self) -> None:
        # no closed form is the first thing to say: no kernel could compute it either way
        if self.second_order.fisher is None:
            raise SymeligError(
                f"{self.family} param={self.param} has no closed-form Fisher information: {self.second_order.no_closed_form}"
            )
        self._require_kernels()

    def log_prob(self, x, *, validate: bool = True, **params):
        """log p(x | θ), shaped like the batch.  −inf is the answer for a discrete sample of
        probability 0; any other value that is not finite (a density beyond the dtype's range)
        is a one-line error (``validate=False`` returns it as it is)."""
        params = self.defaulted(x, params)
        if _foreign(x, params):
            return self._foreign_call("log_prob", x, params)
        if not validate:
            with np.errstate(all="ignore"):
                return self._first_order_kernels.log_prob(x, **params)
        args = self._checked(x, params)
        with np.errstate(all="ignore"):  # log 0 = −inf is the answer for a sample of probability 0
            result = self._first_order_kernels.log_prob(**args)
        allowed = np.isneginf(result) if self.symbolic.discrete else np.zeros(np.shape(result), bool)
        bad = ~np.isfinite(result) & ~allowed
        if np.any(bad):
            where = tuple(int(w) for w in np.argwhere(bad)[0])
            at = f" at batch index {list(where)}" if where else ""
            value = np.asarray(result)[where].item()
            hint = "" if result.dtype == np.float64 else "; float64 has more range"
            raise SymeligError(f"log p(x | θ){at} is not finite in {result.dtype} ({value}): x and the parameters are too extreme for this precision{hint}")
        return result

    def prob_gradient(self, x, *, validate: bool = True, **params) -> dict:
        """{parameter: ∂p(x | θ)/∂parameter = p(x | θ)·e}: the gradient of the probability (or
        density) itself, which autograd returns for ``exp(log_prob).backward()``, where the
        eligibility e is the gradient of ``log_prob``.  Shaped like the eligibility."""
        e = self.eligibility(x, validate=validate, **params)
        log_p = self.log_prob(x, validate=validate, **params)
        if _foreign(x, params):
            from array_api_compat import array_namespace

            xp = array_namespace(log_p)
            prob = xp.exp(log_p)
            return {n: xp.reshape(prob, (*prob.shape, *(1,) * (v.ndim - prob.ndim))) * v for n, v in e.items()}
        with np.errstate(under="ignore"):
            prob = np.exp(log_p)
        return {n: prob.reshape(prob.shape + (1,) * (v.ndim - prob.ndim)) * v for n, v in e.items()}

    def eligibility(self, x, *, validate: bool = True, **params) -> dict:
        """{parameter: ∂ log p(x | θ)/∂parameter}; with ``validate`` the arguments are checked and a
        result that is not finite (a sample of probability 0, an overflow) is an error, not inf."""
        params = self.defaulted(x, params)
        if _foreign(x, params):
            return self._foreign_call("eligibility", x, params)
        if not validate:
            return self._first_order_kernels.eligibility(x, **params)
        args = self._checked(x, params)
        with np.errstate(all="ignore"):
            result = self._first_order_kernels.eligibility(**args)
        for name, value in result.items():
            if not np.all(np.isfinite(value)):
                self._explain_non_finite(args, name, value)
        return result

    def _foreign_call(self, function: str, x, params: dict, kernels=None):
        """Tensors of another library go straight to the array API kernels (``kernels``, by
        default the first-order ones): checking their values would copy them to the host, which is
        what passing tensors avoids.  Names are checked; x is None for a function of θ alone."""
        self.check_names(params)
        kernel = getattr(kernels or self.array_api_kernels, function)
        if x is None:
            return kernel(**params)
        if self.symbolic.sample_index is not None:
            _check_foreign_categories(x, params)
        return kernel(x, **params)

    def defaulted(self, x, params: dict) -> dict:
        """``params`` with the family's argument defaults filled in where not given (tanh_normal's
        low = −1, high = 1), as vectors over the category axis of x or of a vector parameter, in
        the array library (and device) of a tensor argument.  Without such an axis nothing is
        added, and the name check reports the missing argument."""
        missing = {n: v for n, v in self.symbolic.family.defaults.items() if n not in params}
        if not missing:
            return params
        constraint_of = self.symbolic.constraints
        given = {"x": x, **params} if x is not None else params
        try:
            sizes = [np.shape(v)[-1] for n, v in given.items() if n in constraint_of and constraint_of[n].event_dim and np.ndim(v)]
        except ValueError:  # rows of different lengths: said as the argument checks say it
            for n, v in given.items():
                as_array(n, v)
            raise
        if not sizes:
            return params
        if _foreign(x, params):
            from array_api_compat import array_namespace, device

            tensor = next(v for v in given.values() if _foreign(None, {"v": v}))
            xp = array_namespace(tensor)
            dtype = tensor.dtype if xp.isdtype(tensor.dtype, "real floating") else None
            return {**params, **{n: xp.full((sizes[0],), v, dtype=dtype, device=device(tensor)) for n, v in missing.items()}}
        return {**params, **{n: np.full(sizes[0], float(v)) for n, v in missing.items()}}

    def check_names(self, params: dict) -> None:
        """The keyword arguments besides x are exactly the entry's arguments and parameters."""
        expected = [n for n in self.symbolic.constraints if n != "x"]
        unknown = sorted(set(params) - set(expected))
        missing = [n for n in expected if n not in params]
        problems = [f"unknown argument {n!r}" for n in unknown[:1]] + [f"missing argument {n!r}" for n in missing[:1]]
        if problems:
            raise SymeligError(f"{' and '.join(problems)} for {self.family} param={self.param}; expected x, {', '.join(expected)}")

    def _checked(self, x, params: dict) -> dict:
        family = self.symbolic.family
        self.check_names(params)
        expected = {n: c for n, c in self.symbolic.constraints.items() if n != "x"}
        arrays = {**({"x": as_array("x", x)} if x is not None else {}), **{n: as_array(n, params[n]) for n in expected}}
        vectors = [n for n, c in self.symbolic.constraints.items() if c.event_dim and n in arrays]
        for n in vectors:
            if arrays[n].ndim == 0 or arrays[n].shape[-1] == 0:
                raise SymeligError(f"{n} must have a non-empty category axis (last axis); got shape {arrays[n].shape}")
        sizes = {n: arrays[n].shape[-1] for n in vectors if not self.symbolic.constraints[n].own_axis}
        if len(set(sizes.values())) > 1:
            listed = ", ".join(f"{n} has {s}" for n, s in sizes.items())
            raise SymeligError(f"the category axes (last axes) disagree: {listed} categories")
        size = next(iter(sizes.values()), None)  # None: a family without a category axis
        try:
            np.broadcast_shapes(*(a.shape[:-1] if n in vectors else a.shape for n, a in arrays.items()))
        except ValueError:
            shapes = ", ".join(f"{n} {a.shape}" for n, a in arrays.items())
            raise SymeligError(f"batch shapes do not broadcast: {shapes} (the last axis of vectors is the category axis)") from None
        context = {"size": size, **{n: arrays.get(n) for n in family.arguments}}  # a check may read them (x ≤ total_count)
        # x last: its check uses the others; without x (the Fisher information) only θ is checked
        for n, c in {**expected, **({"x": family.value} if x is not None else {})}.items():
            c.check(n, arrays[n], **context)
        for check in self.value_checks:
            check(arrays)
        return arrays

    def _explain_non_finite(self, args: dict, name: str, value: np.ndarray) -> None:
        bad = ~np.isfinite(value)
        if name in self._vectors:
            bad = bad.any(-1)
        with np.errstate(all="ignore"):
            log_p = np.broadcast_to(self.kernels.log_prob(**args), bad.shape)
        where = tuple(int(w) for w in np.argwhere(bad)[0])
        at = f" at batch index {list(where)}" if where else ""
        if log_p[where] == -np.inf and self.symbolic.discrete:
            raise SymeligError(
                f"the sample x{at} has probability 0 under the given {', '.join(self.parameters)} "
                f"(log p = {log_p[where].item()}): its eligibility is undefined"
            )
        hint = "" if value.dtype == np.float64 else "; float64 has more range"
        raise SymeligError(
            f"∂ log p/∂{name}{at} is not finite in {value.dtype}: x and the parameters are too extreme for "
            f"this precision (log p = {log_p[where].item()}){hint}"
        )

    @functools.cached_property
    def _vectors(self) -> set:
        return {n for n, c in self.symbolic.parametrization.parameters.items() if c.event_dim}


def _method(method) -> str:
    if method not in ("closed_form", "monte_carlo"):
        raise SymeligError(f"method is 'closed_form' or 'monte_carlo', not {method!r}")
    return method


def _check_foreign_categories(x, params: dict) -> None:
    """Category indices of a tensor: integers, inside {0, …, K−1}.  The range check costs one
    device reduction and a scalar to the host; under jax tracing (jit, vmap) it is skipped."""
    from array_api_compat import array_namespace

    xp = array_namespace(x) if hasattr(x, "dtype") else None
    if xp is None:
        return
    if not xp.isdtype(x.dtype, "integral"):
        raise SymeligError(f"x must be integer category indices, got dtype {x.dtype}")
    size = next((v.shape[-1] for v in params.values() if getattr(v, "ndim", 0)), None)
    if size is None:
        return
    try:
        bad = bool(xp.any((x < 0) | (x >= size)))
    except Exception:  # noqa: BLE001 -- a tracer has no concrete value: nothing to check now
        return
    if bad:
        raise SymeligError(f"x holds a category index outside {{0, …, {size - 1}}}")


def _like_tensors(every: list, params: dict) -> dict:
    """``params`` as arrays of the library (and device, floating dtype) of the first tensor among
    ``every``: a numpy parameter beside a torch gradient must not pull the gradient to numpy."""
    from array_api_compat import array_namespace, device

    tensor = next(v for v in every if _foreign(None, {"v": v}))
    xp = array_namespace(tensor)
    dtype = tensor.dtype if xp.isdtype(tensor.dtype, "real floating") else None
    return {n: v if _foreign(None, {"v": v}) else xp.asarray(v, dtype=dtype, device=device(tensor)) for n, v in params.items()}


def _broadcasts(*shapes) -> bool:
    try:
        np.broadcast_shapes(*shapes)
        return True
    except ValueError:
        return False


def _foreign(x, params: dict) -> bool:
    """Whether an argument is an array of another library (torch, jax, cupy, dask…)."""
    plain = (np.ndarray, np.generic, int, float, bool, list, tuple)
    return any(hasattr(v, "shape") and hasattr(v, "dtype") and not isinstance(v, plain) for v in (x, *params.values()))


def as_array(name: str, value) -> np.ndarray:
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):
        raise SymeligError(f"{name} is not a rectangular array of numbers (rows of different lengths?)") from None
    if array.dtype == object and all(isinstance(v, int) for v in array.flat):
        raise SymeligError(f"{name} holds an integer too large for int64")
    if array.dtype.kind not in "biuf":
        raise SymeligError(f"{name} must be numeric (integers or floats), got dtype {array.dtype}")
    if array.dtype.kind == "f" and array.dtype.itemsize > 8:
        raise SymeligError(f"{name} has dtype {array.dtype}; the kernels take float16, float32 or float64")
    return array


BACKENDS = ("numpy", "numba")


def require_numba() -> None:
    """numba is an optional extra: a one-line error naming the install when it is missing."""
    try:
        import numba  # noqa: F401
    except ImportError:
        raise SymeligError("the numba backend needs numba, which is not installed: pip install 'symelig[numba]'") from None


def derive(family: str, param: str | None = None, backend: str = "numpy") -> Derivation:
    if backend not in BACKENDS:
        raise SymeligError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "numba":
        require_numba()
    return _derive(family, param, backend)


@functools.lru_cache(maxsize=None)
def _derive(family: str, param: str | None, backend: str) -> Derivation:
    if backend != "numpy":  # the same math, another backend's kernels
        twin = _derive(family, param, "numpy")
        return Derivation(twin.symbolic, backend, twin)
    cls, parametrization = lookup(family, param)
    return Derivation(derive_symbolic(cls, parametrization))
