"""Derivations the catalog does not have: a family reparametrized by an expression the user
types (``logits = z / tau``), or a whole log-density (``-(x-m)**2/(2*s**2) - log(s)``).

User text only ever goes through :mod:`symelig.parse` (a whitelist over Python's syntax tree,
nothing executed, every constant and power bounded before SymPy works on it); names that reach
generated code are checked plain identifiers; every result is verified against central
differences of its own kernels before it is returned.

Whatever the text, the answer is a derivation or a one-line :class:`SymeligError`: the parser's
static limits keep the usual cost to a few seconds, every stage (parsing, differentiating,
generating kernels, verifying, the second order, printing) runs under :data:`TIME_LIMIT`
seconds of wall-clock time, in whichever thread it runs (a watchdog thread interrupts it), and
an unexpected failure inside a stage is reported as that stage failing.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import threading

import numpy as np
from sympy import Dummy, Indexed, IndexedBase, Lambda, Mul, Symbol, preorder_traversal

from . import constraints
from .derivation import Derivation
from .engine import derive_symbolic
from .errors import SymeligError
from .family import Family, Internal, Parametrization, families, i
from .parse import check_name, parse, unparse

# Seconds a user derivation may take: the first order (parse, derive, kernels, verification)
# once, and each later stage (second order, its kernels, printing) again.
TIME_LIMIT = 10.0
# User derivations made in this process: the CLI turns any unexpected exception into one line
# when it has made one (a catalog derivation's traceback is a bug report and is kept).
made = 0

class _NonzeroReal(type(constraints.real)):
    """A real number other than 0: a new --via name that the expression divides by (z / tau is
    undefined at tau = 0, and with tau ≠ 0 SymPy knows z/tau is real, so log(exp(z/tau)) = z/tau)."""

    def check(self, label, values, **context):
        super().check(label, values, **context)
        zero = np.asarray(values) == 0
        if zero.any():
            raise SymeligError(f"{constraints.first_bad(label, np.asarray(values), zero)} is not allowed: {label} must be {self.allowed}")


nonzero_real = _NonzeroReal("real", "a finite real number other than 0", {"real": True, "nonzero": True}, notation="ℝ∖{0}")
nonzero_real_vector = _NonzeroReal(
    "real_vector", "a vector of finite real numbers other than 0", {"real": True, "nonzero": True}, event_dim=1,
)


def _constraint(vector: bool, positive: bool, nonzero: bool = False):
    if positive:
        return constraints.positive_vector if vector else constraints.positive
    if nonzero:
        return nonzero_real_vector if vector else nonzero_real
    return constraints.real_vector if vector else constraints.real


def _signature(function, names):
    function.__signature__ = inspect.Signature([inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY) for n in names])
    return function


def names_of(value, option: str) -> list:
    """``wrt``/``positive``/``vector`` as a list of names: one name or comma-separated names in a
    string ("mu", "z,tau"), or any iterable of such strings; None is none.  The CLI and the
    Python API read them the same way."""
    if value is None:
        return []
    if isinstance(value, str):
        items = [value]
    else:
        try:
            items = list(value)
        except TypeError:
            raise SymeligError(f"{option} must be a name, comma-separated names, or a list of names; got {value!r}") from None
        if not all(isinstance(item, str) for item in items):
            raise SymeligError(f"{option} must be a name, comma-separated names, or a list of names; got {value!r}")
    return [name.strip() for item in items for name in item.split(",") if name.strip()]


def reparametrize(family: str, via: str, wrt, positive=(), vector=None) -> Derivation:
    """Substitute ``via`` ("logits = z / tau") into ``family`` and differentiate w.r.t. ``wrt``.

    The left side names a parameter of one of the family's parametrizations (that parametrization
    is the base); the right side is an expression in the new parameters ``wrt`` (and the base's
    other parameters, which stay).  When the left side is a vector, the new names listed in
    ``vector`` are vectors (component i); by default the first name of ``wrt`` is.  New names
    are real numbers (> 0 when listed in ``positive``; ≠ 0 where the right side divides by them).
    ``wrt``, ``positive`` and ``vector`` take a name, comma-separated names, or a list.
    """
    known = families()
    if family not in known:
        raise SymeligError(f"unknown family {family!r}; choose one of: {', '.join(known)}")
    cls = known[family]
    lhs, rhs = _split_assignment(via)
    base = next((p for p in cls.parametrizations().values() if lhs in p.parameters), None)
    if base is None:
        offered = sorted({n for p in cls.parametrizations().values() for n in p.parameters})
        raise SymeligError(f"--via must set a parameter of {family}: one of {', '.join(offered)}; got {lhs!r}")
    wrt = [check_name(n, "parameter") for n in names_of(wrt, "--wrt")]
    positive = names_of(positive, "--positive")
    vector = None if vector is None else names_of(vector, "--vector")
    if not wrt:
        raise SymeligError("--wrt names the new parameters, e.g. --wrt z,tau")
    if len(set(wrt)) != len(wrt):
        raise SymeligError("--wrt names must differ from each other")
    kept = [n for n in base.parameters if n != lhs]
    # names and letters the family already prints (mu, sigma, n, pi…): a new parameter called the
    # same would read as the old one, or merge with it
    shown = [*kept, *cls.parameters, *cls.arguments, "x"]  # what the new derivation prints besides wrt
    taken = {*shown, *(cls.symbols.get(n, n) for n in shown)}
    clash = [n for n in wrt if n in taken]
    if clash:
        raise SymeligError(f"parameter name {clash[0]!r} is already used by {family}; choose another")
    lhs_constraint = base.parameters[lhs]
    lhs_vector = bool(lhs_constraint.event_dim)
    if vector and not lhs_vector:
        raise SymeligError(f"--vector applies when the left side is a vector parameter; {lhs} is a scalar")
    vectors = set(vector if vector is not None else wrt[:1]) if lhs_vector else set()
    if lhs_vector and not vectors and not cls.value.event_dim:
        # nothing would carry the category axis: K, and the range of x, would be unknown
        raise SymeligError(f"{lhs} is a vector: --vector must name at least one new parameter, which carries the category axis")
    unknown = (vectors | set(positive)) - set(wrt)
    if unknown:
        raise SymeligError(f"{sorted(unknown)[0]!r} is not one of the --wrt parameters ({', '.join(wrt)})")
    global made
    made += 1
    with _stage("deriving --via"):  # one time limit for all of it; the inner stages name themselves
        return _reparametrized(cls, family, base, lhs, rhs, wrt, kept, positive, vectors)


def _reparametrized(cls, family, base, lhs, rhs, wrt, kept, positive, vectors) -> Derivation:
    lhs_constraint = base.parameters[lhs]
    lhs_vector = bool(lhs_constraint.event_dim)
    with _stage("parsing --via"):
        new = {n: _constraint(n in vectors, n in positive) for n in wrt}
        expression, probe, parameters = _parse_via(cls, base, kept, new, rhs)
        # a name the right side divides by is ≠ 0 there: say so, and SymPy knows z/tau is real
        divisors = {n for n in _divisors(expression, probe) if n in new and n not in positive}
        if divisors:
            new = {n: _constraint(n in vectors, n in positive, n in divisors) for n in wrt}
            expression, probe, parameters = _parse_via(cls, base, kept, new, rhs)
    missing = [n for n in wrt if not expression.has(probe[n])]
    if missing:
        raise SymeligError(f"--wrt names {missing[0]!r}, which the --via expression does not use (or cancels)")
    _check_constraint(lhs, lhs_constraint, expression, rhs, [n for n in wrt if expression.has(probe[n])])
    with _stage("building the check of the --via right side"):
        value_check = _via_check(lhs, lhs_constraint, expression, rhs, probe, parameters, bool(cls.value.event_dim))
    # the placeholder for the left side while the base's map is built: a Dummy, which no user
    # symbol can equal whatever its name
    lhs_symbol = IndexedBase(Dummy(lhs)) if lhs_vector else Dummy(lhs)

    def substitution(**symbols):
        # the text was parsed once, over the same symbols the engine makes: rename, do not re-parse
        replaced = expression.xreplace({probe[n]: symbols[n] for n in parameters})
        base_map = base.substitution({**symbols, lhs: lhs_symbol})
        if not base_map:  # the base parametrization is the canonical one: set the parameter itself
            return {lhs: Lambda(i, replaced) if lhs_vector else replaced}
        out = {}
        for canonical, value in base_map.items():
            if lhs_vector:
                value = value.replace(lambda e: isinstance(e, Indexed) and e.base == lhs_symbol,
                                      lambda e: replaced.xreplace({i: e.indices[0]}))
            else:
                value = value.xreplace({lhs_symbol: replaced})
            out[canonical] = value
        return out

    # the family's arguments too: the base map may read them (a mask enters π)
    _signature(substitution, list(dict.fromkeys([*parameters, *cls.arguments])))
    from .emit.text import formula

    shown_rhs = _as_text(expression, rhs, {n: probe[n] for n in parameters})
    doc = f"{lhs} = {formula(_display(expression))}, substituted into the {base.name} parametrization of {family}."
    options = "".join(f" --{flag} {','.join(names)}" for flag, names in (("wrt", wrt), ("positive", positive), ("vector", sorted(vectors))) if names)
    command = f'symelig export {family} --via "{lhs} = {shown_rhs}"{options} -o FILE.py'
    derivation = _checked_derivation(cls, Parametrization("via", parameters, substitution, doc, command=command))
    # at call time, the right side at the caller's values must satisfy the left side's constraint
    derivation.value_checks = (value_check,) if value_check is not None else ()
    return derivation


def _parse_via(cls, base, kept, new, rhs):
    parameters = {**{n: base.parameters[n] for n in kept}, **new}
    probe = cls.make_symbols(Parametrization("probe", parameters, lambda: {}, ""))
    expression = parse(rhs, {n: probe[n] for n in parameters}, where="--via")
    return expression, probe, parameters


def _divisors(expression, symbols: dict) -> set:
    """Names whose symbol (or component) is a factor of a denominator in ``expression``."""
    by_symbol = {}
    for name, symbol in symbols.items():
        by_symbol[symbol] = name
    found = set()
    for node in preorder_traversal(expression):
        if node.is_Pow and node.exp.is_number and node.exp.is_negative:
            for factor in Mul.make_args(node.base):
                base = factor.as_base_exp()[0]
                key = base.base if isinstance(base, Indexed) else base
                if key in by_symbol:
                    found.add(by_symbol[key])
    return found


def _check_constraint(lhs: str, constraint, expression, text: str, names: list) -> None:
    """Refuse a right side that breaks the left side's declared constraint for every value of
    the new parameters (scale = -a with a > 0): the family's formulas assume it.  Where SymPy
    cannot decide, the right side is checked at call time (:class:`ViaCheck`)."""
    for holds in _constraint_facts(constraint, expression):
        if holds is False:
            raise SymeligError(
                f"--via: {lhs} = {' '.join(text.split())} breaks the constraint of {lhs} ({constraint.allowed}) for "
                f"every value of {', '.join(names)}"
            )


# ---------------------------------------------------------------------------------------------
# the left side's constraint on the right side's value, at call time

class ViaCheck:
    """The declared constraint of a --via left side, checked on the right side evaluated at the
    caller's values (``scale = a - b`` at a = 1, b = 2 is −1; ``normalized_probs = w`` at
    w = [1, 1, 1] is not on the simplex): the family's formulas hold only inside the constraint,
    and outside it the kernels return finite nonsense.  The catalog entry checks its parameter
    itself; a --via derivation has this check in ``Derivation.value_checks`` instead, which
    ``log_prob``, ``eligibility``, ``hessian``, ``fisher``, ``natural_gradient`` and
    :mod:`symelig.dask` run on validated input.

    The right side is evaluated by ``source``: a function generated by the kernels' own printer
    (:class:`symelig.emit.numpy.ArrayPrinter`) from the parsed SymPy tree, never from the text,
    in its floating-point-stable form (e^a − 1 as expm1), one array operation per node (a sum
    over the category index is a reduction over the last axis), in float64.  Elementwise
    conditions that SymPy proves for every allowed value (``scale = exp(a)`` > 0) are not
    re-checked numerically, so an underflow to 0 of a positive value is not refused; where they
    are not proved, NaN (the right side undefined there: ``sqrt(a)`` at a < 0) is refused, and
    ±inf where the constraint bounds that side.  The sums of a simplex or of weights are always
    checked, when K is known.  Holds strings and a constraint only, so it pickles to Dask workers.
    """

    def __init__(self, lhs: str, text: str, constraint, source: str, names: tuple, vectors: tuple, elementwise: bool,
                 sized: tuple = ()):
        self.lhs = lhs
        self.text = " ".join(text.split())
        self.constraint = constraint
        self.source = source
        self.names = names          # the arguments the right side reads, in its signature's order
        self.vectors = vectors      # those of them with a category axis
        self.elementwise = elementwise  # whether the bounds (and NaN) need a numeric check
        self.sized = sized          # arguments whose last axis is the category axis: K comes from them

    def __repr__(self):
        return f"<ViaCheck {self.lhs} = {self.text}: {self.constraint.name}>"

    def _wider(self, args: dict, value: np.ndarray) -> np.ndarray:
        """``value`` with its NaN entries evaluated again in long double, whose exponent range
        (to 1e4932 on x86) holds the e^800 of a softmax written out (e^z/Σe^z): NaN from an
        overflow of a finite value is then that value, NaN from an undefined one stays.  Where
        long double is double, or scipy.special has no long-double loop (lgamma), as it was."""
        try:
            wide = _compiled_rhs(self.source).rhs(**{n: a.astype(np.longdouble) for n, a in args.items()})
            wide = np.broadcast_to(np.asarray(wide, dtype=np.float64), np.broadcast_shapes(np.shape(wide), value.shape))
        except Exception:  # noqa: BLE001 -- a function without a long-double loop
            return value
        return np.where(np.isnan(value), wide, value)

    def __call__(self, arrays: dict, locate=None) -> None:
        """Raise SymeligError at the first batch row where the right side breaks the constraint;
        ``locate`` turns a batch index within ``arrays`` into the one reported (Dask: the row of
        the whole array)."""
        args = {n: np.asarray(arrays[n], dtype=np.float64) for n in self.names}
        batch = np.broadcast_shapes(*(a.shape[:-1] if n in self.vectors else a.shape for n, a in args.items()))
        c = self.constraint
        with np.errstate(all="ignore"):
            value = np.asarray(_compiled_rhs(self.source).rhs(**args), dtype=np.float64)
            if self.elementwise and np.isnan(value).any():
                value = self._wider(args, value)
            # K from the arguments (the sample's counts where no new name is a vector); unknown
            # (the Fisher information of a scalar right side): each entry is checked, not the sum
            size = next((np.shape(arrays[n])[-1] for n in self.sized if n in arrays and np.ndim(arrays[n])), None)
            if c.event_dim:
                value = np.broadcast_to(value if value.ndim else value[None], batch + (size or 1,))
            else:
                value = np.broadcast_to(value, batch)
            bad = np.zeros(value.shape, bool)
            if self.elementwise:
                bad |= np.isnan(value)
                if c.lower > -np.inf:
                    bad |= (value <= c.lower) if c.lower_open else (value < c.lower)
                if c.upper < np.inf:
                    bad |= (value >= c.upper) if c.upper_open else (value > c.upper)
                if c.integer:
                    bad |= np.isfinite(value) & (value != np.round(value))
            rows = bad.any(-1) if c.event_dim else bad
            total = None
            if c.event_dim and size is not None:
                total = value.sum(-1)
                if isinstance(c, constraints.Simplex):
                    rows = rows | (np.abs(total - 1.0) > constraints.SUM_RTOL * value.shape[-1])
                elif isinstance(c, constraints.Weights):
                    rows = rows | (total <= 0) | np.isinf(total)  # all zeros, or a sum past the float range
        if not rows.any():
            return
        where = tuple(int(w) for w in np.argwhere(rows)[0])
        shown_at = list(locate(where)) if locate is not None else list(where)
        at = f" at batch index {shown_at}" if where else ""
        if c.event_dim:
            row = value[where].tolist()
            shown = "[" + ", ".join(f"{v:.6g}" for v in row[:8]) + (", …" if len(row) > 8 else "") + "]"
            s = float(total[where]) if total is not None else np.nan
            why = f", which sums to {_number(s)}" if s == s else ""
            if bad[where].any():  # the first entry outside the bounds, with all its digits
                entry = int(np.argmax(bad[where]))
                why = f", entry [{entry}] is {_number(row[entry])}"
        else:
            shown = _number(value[where].item())
            why = ""
        if np.isnan(value[where]).any():
            why = " (not a number: the right side is undefined there, or overflows float64)"
        scalars = [n for n in self.names if n not in self.vectors]
        given = ", ".join(f"{n} = {_number(np.broadcast_to(args[n], batch)[where].item())}" for n in scalars)
        raise SymeligError(
            f"--via {self.lhs} = {self.text} is {shown}{at}{' for ' + given if given else ''}{why}: "
            f"{self.lhs} must be {c.allowed}"
        )


def _number(v: float) -> str:
    """Six digits where they say which number it is, else all of them (1.0000000001, not 1)."""
    short = f"{v:.6g}"
    return short if float(short) == v or v != v else repr(float(v))


@functools.lru_cache(maxsize=64)
def _compiled_rhs(source: str):
    """The right side's evaluator from its source (our printer's output, never user text)."""
    import types

    module = types.ModuleType("symelig_via_rhs")
    exec(compile(source, "<symelig --via right side>", "exec"), module.__dict__)
    return module


def _summed(constraint) -> bool:
    """Whether the constraint also bounds the sum over the category axis (a simplex, weights)."""
    return isinstance(constraint, (constraints.Simplex, constraints.Weights))


def _constraint_facts(constraint, expression) -> list:
    """What SymPy knows of each elementwise condition of the constraint on ``expression`` for
    every allowed value of its symbols: True (always), False (never), None (not decided)."""
    facts = [getattr(expression, f"is_{flag}") for flag, wanted in constraint.assumptions.items() if wanted]
    if constraint.lower > -np.inf:
        gap = expression - constraint.lower
        facts.append(gap.is_positive if constraint.lower_open else gap.is_nonnegative)
    if constraint.upper < np.inf:
        gap = constraint.upper - expression
        facts.append(gap.is_positive if constraint.upper_open else gap.is_nonnegative)
    return facts


def _via_check(lhs: str, constraint, expression, text: str, probe: dict, parameters: dict, sample_vector: bool) -> ViaCheck:
    """A :class:`ViaCheck` of the parsed right side ``expression`` over ``probe``'s symbols."""
    from sympy import Float, Sum

    from .emit import runtime
    from .emit.numpy import ArrayPrinter
    from .emit.stable import stable

    used = [n for n in parameters if expression.has(probe[n])]
    vectors = tuple(n for n in used if isinstance(probe[n], IndexedBase))
    elementwise = not all(holds is True for holds in _constraint_facts(constraint, expression))
    if not elementwise and not _summed(constraint):
        return None  # nothing left to check at call time
    try:
        value = stable(expression, [probe[n] for n in used])
    except Exception:  # noqa: BLE001 -- the form as written is evaluated then
        value = expression
    value = value.replace(lambda c: c.is_number and not c.is_Rational and not c.is_Float, lambda c: Float(c.evalf(17), 17))
    # array names for the printer: Internal, so that none equals a user's symbol of that name
    plain = {probe[n]: Internal(n) for n in used if n not in vectors}
    bases = {probe[n]: n for n in vectors}

    def as_arrays(e):
        """Over array names: a scalar parameter is its array, a vector's component (at i, or at a
        sum's index) the whole vector, whose last axis is the category axis."""
        e = e.replace(lambda a: isinstance(a, Indexed) and a.base in bases, lambda a: Internal(bases[a.base]))
        return e.xreplace(plain)

    printer = ArrayPrinter()
    lines = [f"{n} = np.asarray({n})" + ("[..., None]" if constraint.event_dim and n not in vectors else "") for n in used]
    sums = []

    def reduce(s):
        name = Internal(f"_s{len(sums)}")
        sums.append((name, s.function))
        return name

    value = value.replace(lambda e: isinstance(e, Sum), reduce)  # the parser makes no nested sums
    allowed = {Internal(n) for n in used}
    for name, body in sums:
        body = as_arrays(body)
        if not body.free_symbols <= allowed:
            raise NotImplementedError(f"the right side has {sorted(map(str, body.free_symbols - allowed))}")
        lines.append(f"{name} = np.sum({printer.doprint(body)}, axis=-1, keepdims=True)")
    value = as_arrays(value)
    if not value.free_symbols <= allowed | {name for name, _ in sums}:
        raise NotImplementedError(f"the right side has {sorted(map(str, value.free_symbols - allowed))}")
    lines.append(f"return {printer.doprint(value)}")
    helpers = sorted(printer.helpers)
    source = "\n\n".join([
        "import numpy as np" + ("\nfrom scipy import special" if "scipy.special" in printer.module_imports else ""),
        f"def rhs({', '.join(used)}):\n" + "\n".join("    " + line for line in lines) + "\n",
        *(helper + "\n" for helper in runtime.sources("numpy", helpers)),
    ])
    return ViaCheck(lhs, text, constraint, source, tuple(used), vectors, elementwise, vectors + ("x",) * sample_vector)


def _display(expression):
    """The expression with its own summation index shown as i, as the grammar writes it."""
    from .parse import SUM_INDEX

    return expression.xreplace({SUM_INDEX: i}) if expression.has(SUM_INDEX) else expression


def _as_text(expression, typed: str, names: dict) -> str:
    """The expression in the grammar, for the regenerate command: SymPy's normal form when it
    reads back as the same expression, else the text as typed."""
    text = unparse(expression)
    try:
        if parse(text, names) == expression:
            return text
    except SymeligError:
        pass
    return " ".join(typed.split())


# ---------------------------------------------------------------------------------------------
# stages: a time limit, and one line for any failure

class _OutOfTime(BaseException):
    """Raised in the deriving thread when its time is up; a BaseException, so that SymPy's
    ``except Exception`` blocks (which try one rewrite after another) do not swallow it."""


_timer = threading.local()


def _interrupt(thread_id: int, exception) -> None:
    """Raise ``exception`` in the thread ``thread_id`` at its next bytecode (None: cancel a
    pending one).  CPython's PyThreadState_SetAsyncExc, the per-thread analogue of a signal."""
    import ctypes

    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exception) if exception else None)


@contextlib.contextmanager
def _time_limit(seconds: float):
    """At most ``seconds`` of wall-clock time for the block, in any thread: a watchdog thread
    raises _OutOfTime in this one when the time is up, and again every 0.25 s until the block
    has exited (code that swallows everything once does not outlive the limit).  Not nested:
    an inner block runs under the outer one's limit."""
    try:
        import ctypes

        usable = hasattr(ctypes, "pythonapi") and hasattr(ctypes.pythonapi, "PyThreadState_SetAsyncExc")
    except ImportError:
        usable = False
    if not usable or getattr(_timer, "on", False):
        yield
        return
    target = threading.get_ident()
    state = {"active": True}
    stopped = threading.Event()

    def watchdog():
        if stopped.wait(seconds):
            return
        for _ in range(4 * 60):  # at most a minute of reminders, whatever happens to the block
            if not state["active"]:
                return
            _interrupt(target, _OutOfTime)
            if stopped.wait(0.25):
                return

    dog = threading.Thread(target=watchdog, name="symelig-time-limit", daemon=True)
    _timer.on = True
    dog.start()
    try:
        yield
    finally:
        _stop_watchdog(state, stopped, dog, target)


def _stop_watchdog(state, stopped, dog, target) -> None:
    """End the watchdog and cancel an exception it may have sent but not yet delivered; an
    _OutOfTime that lands while doing so is absorbed (the block has finished)."""
    while True:
        try:
            state["active"] = False
            stopped.set()
            dog.join()
            _interrupt(target, None)
            _timer.on = False
            return
        except _OutOfTime:
            continue


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."


@contextlib.contextmanager
def _stage(stage: str):
    """Run a stage of a user derivation: within TIME_LIMIT, and any failure as one line."""
    try:
        with _time_limit(TIME_LIMIT):
            yield
    except SymeligError:
        raise
    except _OutOfTime:
        raise SymeligError(
            f"{stage} did not finish within {TIME_LIMIT:g} s: the expression is too complex to derive "
            "(fewer or smaller powers, products and nested functions help)"
        ) from None
    except NotImplementedError as err:
        raise SymeligError(
            f"{stage}: the derivation has a form the kernel generator cannot vectorize ({_one_line(err)}); "
            "declaring parameters --positive often lets the log rules simplify it"
        ) from None
    except RecursionError:
        raise SymeligError(f"{stage}: the expression is nested too deeply to derive") from None
    except MemoryError:
        raise SymeligError(f"{stage} ran out of memory: the expression is too complex to derive") from None
    except Exception as err:  # noqa: BLE001 -- a user derivation never ends in a traceback
        raise SymeligError(
            f"{stage} failed for this expression ({_one_line(err)}); symelig cannot derive it"
        ) from None


def _staged(stage: str, prop):
    """A cached property of Derivation, computed as a stage of a user derivation."""

    def compute(self):
        with _stage(stage):
            return prop.func(self)

    compute.__doc__ = prop.__doc__
    return functools.cached_property(compute)


class UserDerivation(Derivation):
    """A :class:`Derivation` of user text: its later stages (second order, kernels for other
    array libraries, printed forms) are bounded in time and fail in one line, like the first."""

    numpy_source = _staged("generating the numpy kernel", Derivation.numpy_source)
    kernels = _staged("compiling the numpy kernel", Derivation.kernels)
    array_api_kernels = _staged("generating the array API kernels", Derivation.array_api_kernels)
    second_order = _staged("deriving the Hessian and the Fisher information", Derivation.second_order)
    full_numpy_source = _staged("generating the second-order numpy kernels", Derivation.full_numpy_source)
    second_order_kernels = _staged("compiling the second-order numpy kernels", Derivation.second_order_kernels)
    second_order_array_api_kernels = _staged(
        "generating the second-order array API kernels", Derivation.second_order_array_api_kernels,
    )

    def text(self, order: int = 1) -> str:
        with _stage("printing the text form"):
            return super().text(order)

    def _latex(self, form: str, order: int) -> str:
        with _stage("printing the LaTeX form"):
            return super()._latex(form, order)

    def to_dict(self, order: int = 1) -> dict:
        with _stage("printing the JSON form"):
            return super().to_dict(order)


def _checked_derivation(cls, parametrization) -> Derivation:
    """Derive, build the kernels and verify them, each a stage (bounded, one-line failures)."""
    with _stage("differentiating"):
        symbolic = derive_symbolic(cls, parametrization)
    from .parse import NON_FINITE

    for name, e in {"log p": symbolic.log_prob, **{f"∂ log p/∂{n}": e for n, e in symbolic.eligibility.items()}}.items():
        if e.has(*NON_FINITE):
            raise SymeligError(
                f"{name} is not a finite real number for any value of the parameters (it has "
                f"{', '.join(str(a) for a in NON_FINITE if e.has(a))}): the expression is degenerate"
            )
    derivation = UserDerivation(symbolic)
    derivation.kernels  # noqa: B018  (generate and compile now, so failures surface here)
    with _stage("verifying the kernel"):
        verify(derivation)
    return derivation


def custom(log_prob: str, wrt, x: str = "x", positive=()) -> Derivation:
    """A scalar log-density typed by the user, differentiated w.r.t. ``wrt``; ``x`` names the
    sample.  ``wrt`` and ``positive`` take a name, comma-separated names, or a list of names."""
    x = check_name(x, "sample name")
    wrt = [check_name(n, "parameter") for n in names_of(wrt, "--wrt")]
    positive = names_of(positive, "--positive")
    if not wrt:
        raise SymeligError("--wrt names the parameters to differentiate, e.g. --wrt m,s")
    if x in wrt or len(set(wrt)) != len(wrt):
        raise SymeligError("--wrt names must differ from each other and from --x")
    if "x" in wrt:
        raise SymeligError("parameter name 'x' is the sample's argument in the generated code (log_prob(x, …)); choose another")
    unknown = set(positive) - set(wrt) - {x}
    if unknown:
        raise SymeligError(f"--positive {sorted(unknown)[0]!r} is neither --x nor a --wrt parameter")
    global made
    made += 1
    with _stage("deriving --log-prob"):  # one time limit for all of it; the inner stages name themselves
        return _custom(log_prob, wrt, x, positive)


def _custom(log_prob: str, wrt: list, x: str, positive: list) -> Derivation:
    parameters = {n: _constraint(False, n in positive) for n in wrt}
    value = _constraint(False, x in positive)
    made_symbols = {n: Symbol(n, **c.assumptions) for n, c in parameters.items()}
    sample = Symbol(x, **value.assumptions)
    with _stage("parsing --log-prob"):
        expression = parse(log_prob, {x: sample, **made_symbols}, where="--log-prob")
    missing = [n for n in wrt if not expression.has(made_symbols[n])]
    if missing:
        raise SymeligError(f"--wrt names {missing[0]!r}, which --log-prob does not use (or cancels)")
    from .emit.text import formula

    def family_log_prob(**symbols):
        return expression.xreplace({sample: symbols["x"], **{made_symbols[n]: symbols[n] for n in wrt}})

    _signature(family_log_prob, ["x", *wrt])
    cls = type("Custom", (Family,), {
        "__doc__": f"Custom log-density: log p({x} | {', '.join(wrt)}) = {formula(expression)}.",
        "name": "custom", "torch": None, "value": value, "arguments": {}, "parameters": parameters,
        "symbols": {"x": x}, "log_prob": staticmethod(family_log_prob),
    })
    options = f" --wrt {','.join(wrt)} --x {x}" + (f" --positive {','.join(positive)}" if positive else "")
    shown = _as_text(expression, log_prob, {x: sample, **made_symbols})
    parametrization = Parametrization(
        "custom", parameters, lambda: {}, "The log-density as typed, in its own parameters.",
        command=f'symelig export custom --log-prob "{shown}"{options} -o FILE.py',
    )
    return _checked_derivation(cls, parametrization)


def _split_assignment(via: str) -> tuple:
    if not isinstance(via, str) or via.count("=") != 1 or "==" in via:
        raise SymeligError('--via must be one assignment "NAME = EXPRESSION", e.g. "logits = z / tau"')
    lhs, rhs = (part.strip() for part in via.split("="))
    if lhs.endswith("[i]"):
        lhs = lhs[:-3].strip()
    if not lhs.isidentifier():
        raise SymeligError(f"--via: the left side {lhs!r} must be a parameter name")
    return lhs, rhs


def verify(derivation, points: int = 3, size: int = 3) -> None:
    """Kernel eligibility vs central differences of the kernel's log p at random valid points;
    a mismatch is an error that says where, never a silently wrong answer."""
    s = derivation.symbolic
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(20 * points):
        args = {n: _mild(c, rng, size) for n, c in s.parametrization.parameters.items()}
        for n, c in s.family.arguments.items():  # in order: a later one may depend on an earlier (high > low)
            args[n] = c.sample(rng, (size,), **args) if c.event_dim else c.sample(rng, (), **args) + (c.lower == 0)
        value = s.family.value
        context = {"size": size, "probs": np.full(size, 1.0 / size), **{n: args.get(n) for n in s.family.arguments}}
        args["x"] = value.sample(rng, (size,) if value.event_dim else (), **context)
        try:
            with np.errstate(all="ignore"):
                base = derivation.kernels.log_prob(**args)
                e = derivation.kernels.eligibility(**args)
        except Exception as err:  # noqa: BLE001 -- report any failure of generated code in one line
            raise SymeligError(f"the derived kernel fails at {_point(args)}: {type(err).__name__}: {err}") from None
        if not np.isfinite(base) or not all(np.all(np.isfinite(v)) for v in e.values()):
            continue
        for name, value in e.items():
            for index in np.ndindex(np.shape(value)):
                h = 1e-6 * max(1.0, abs(float(np.asarray(args[name])[index])))
                sides = []
                for sign in (1, -1):
                    moved = dict(args)
                    moved[name] = np.array(args[name], dtype=float)
                    moved[name][index] += sign * h
                    with np.errstate(all="ignore"):
                        sides.append(float(derivation.kernels.log_prob(**moved)))
                numeric = (sides[0] - sides[1]) / (2 * h)
                ours = float(np.asarray(value)[index])
                # rounding in log p itself limits a finite difference to about eps·|log p|/h
                rounding = 1e3 * np.finfo(float).eps * max(abs(float(base)), *(abs(v) for v in sides)) / h
                if not np.isclose(ours, numeric, rtol=1e-4, atol=1e-6 + rounding):
                    raise SymeligError(
                        f"verification failed: ∂ log p/∂{name}{list(index) if index else ''} = {ours:.6g} from the "
                        f"derived kernel but {numeric:.6g} by finite differences at {_point(args)}"
                    )
        checked += 1
        if checked == points:
            return
    raise SymeligError("cannot verify: log p is not finite at any random point of the declared domain (declare --positive?)")


def _mild(constraint, rng, size):
    """Random valid values of moderate size: finite differences need them."""
    shape = (size,) if constraint.event_dim else ()
    if constraint.name.startswith("real"):
        return rng.normal(size=shape)
    return constraint.sample(rng, shape)


def _point(args) -> str:
    return ", ".join(f"{n}={np.round(np.asarray(v, dtype=float), 4).tolist()}" for n, v in args.items())
