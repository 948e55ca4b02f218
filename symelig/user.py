"""Derivations the catalog does not have: a family reparametrized by an expression the user
types (``logits = z / tau``), or a whole log-density (``-(x-m)**2/(2*s**2) - log(s)``).

User text only ever goes through :mod:`symelig.parse` (a whitelist over Python's syntax tree,
nothing executed); names that reach generated code are checked plain identifiers; every result
is verified against central differences of its own kernels before it is returned.
"""
from __future__ import annotations

import inspect

import numpy as np
from sympy import Indexed, IndexedBase, Lambda, Symbol

from . import constraints
from .derivation import Derivation
from .engine import derive_symbolic
from .errors import SymeligError
from .family import Family, Parametrization, families, i
from .parse import check_name, parse


def _constraint(vector: bool, positive: bool):
    if positive:
        return constraints.positive_vector if vector else constraints.positive
    return constraints.real_vector if vector else constraints.real


def _signature(function, names):
    function.__signature__ = inspect.Signature([inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY) for n in names])
    return function


def reparametrize(family: str, via: str, wrt, positive=(), vector=None) -> Derivation:
    """Substitute ``via`` ("logits = z / tau") into ``family`` and differentiate w.r.t. ``wrt``.

    The left side names a parameter of one of the family's parametrizations (that parametrization
    is the base); the right side is an expression in the new parameters ``wrt`` (and the base's
    other parameters, which stay).  When the left side is a vector, the new names listed in
    ``vector`` are vectors (component i); by default the first name of ``wrt`` is.
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
    wrt = [check_name(n, "parameter") for n in wrt]
    if not wrt:
        raise SymeligError("--wrt names the new parameters, e.g. --wrt z,tau")
    kept = [n for n in base.parameters if n != lhs]
    # names and letters the family already prints (mu, sigma, n, pi…): a new parameter called the
    # same would read as the old one, or merge with it
    shown = [*kept, *cls.parameters, *cls.arguments, "x"]  # what the new derivation prints besides wrt
    taken = {*shown, *(cls.symbols.get(n, n) for n in shown)}
    clash = [n for n in wrt if n in taken]
    if clash:
        raise SymeligError(f"parameter name {clash[0]!r} is already used by {family}; choose another")
    lhs_vector = bool(base.parameters[lhs].event_dim)
    if vector and not lhs_vector:
        raise SymeligError(f"--vector applies when the left side is a vector parameter; {lhs} is a scalar")
    vectors = set(vector if vector is not None else wrt[:1]) if lhs_vector else set()
    unknown = (vectors | set(positive)) - set(wrt)
    if unknown:
        raise SymeligError(f"{sorted(unknown)[0]!r} is not one of the --wrt parameters ({', '.join(wrt)})")
    new = {n: _constraint(n in vectors, n in positive) for n in wrt}
    parameters = {**{n: base.parameters[n] for n in kept}, **new}
    probe = cls.make_symbols(Parametrization("probe", parameters, lambda: {}, ""))
    expression = parse(rhs, {n: probe[n] for n in parameters}, where="--via")
    missing = [n for n in wrt if not expression.has(probe[n])]
    if missing:
        raise SymeligError(f"--wrt names {missing[0]!r}, which the --via expression does not use")
    lhs_symbol = IndexedBase(f"_{lhs}") if lhs_vector else Symbol(f"_{lhs}")

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

    _signature(substitution, list(parameters))
    from .emit.text import formula

    doc = f"{lhs} = {formula(expression)}, substituted into the {base.name} parametrization of {family}."
    options = "".join(f" --{flag} {','.join(names)}" for flag, names in (("wrt", wrt), ("positive", positive), ("vector", sorted(vectors))) if names)
    command = f'symelig export {family} --via "{lhs} = {expression}"{options} -o FILE.py'
    return _checked_derivation(cls, Parametrization("via", parameters, substitution, doc, command=command))


def _checked_derivation(cls, parametrization) -> Derivation:
    """Derive, build the kernels and verify them; a form the kernel generator cannot vectorize
    is a one-line error, not a traceback."""
    try:
        derivation = Derivation(derive_symbolic(cls, parametrization))
        derivation.kernels  # noqa: B018  (generate and compile now, so failures surface here)
    except NotImplementedError as err:
        raise SymeligError(
            f"the derivation has a form the kernel generator cannot vectorize ({err}); declaring "
            "parameters --positive often lets the log rules simplify it"
        ) from None
    verify(derivation)
    return derivation


def custom(log_prob: str, wrt, x: str = "x", positive=()) -> Derivation:
    """A scalar log-density typed by the user, differentiated w.r.t. ``wrt``; ``x`` names the sample."""
    x = check_name(x, "sample name")
    wrt = [check_name(n, "parameter") for n in wrt]
    if not wrt:
        raise SymeligError("--wrt names the parameters to differentiate, e.g. --wrt m,s")
    if x in wrt or len(set(wrt)) != len(wrt):
        raise SymeligError("--wrt names must differ from each other and from --x")
    unknown = set(positive) - set(wrt) - {x}
    if unknown:
        raise SymeligError(f"--positive {sorted(unknown)[0]!r} is neither --x nor a --wrt parameter")
    parameters = {n: _constraint(False, n in positive) for n in wrt}
    value = _constraint(False, x in positive)
    made = {n: Symbol(n, **c.assumptions) for n, c in parameters.items()}
    sample = Symbol(x, **value.assumptions)
    expression = parse(log_prob, {x: sample, **made}, where="--log-prob")
    missing = [n for n in wrt if not expression.has(made[n])]
    if missing:
        raise SymeligError(f"--wrt names {missing[0]!r}, which --log-prob does not use")
    from .emit.text import formula

    def family_log_prob(**symbols):
        return expression.xreplace({sample: symbols["x"], **{made[n]: symbols[n] for n in wrt}})

    _signature(family_log_prob, ["x", *wrt])
    cls = type("Custom", (Family,), {
        "__doc__": f"Custom log-density: log p({x} | {', '.join(wrt)}) = {formula(expression)}.",
        "name": "custom", "torch": None, "value": value, "arguments": {}, "parameters": parameters,
        "symbols": {"x": x}, "log_prob": staticmethod(family_log_prob),
    })
    options = f" --wrt {','.join(wrt)} --x {x}" + (f" --positive {','.join(positive)}" if positive else "")
    parametrization = Parametrization(
        "custom", parameters, lambda: {}, "The log-density as typed, in its own parameters.",
        command=f'symelig export custom --log-prob "{expression}"{options} -o FILE.py',
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
        args.update({n: c.sample(rng, ()) + 1 for n, c in s.family.arguments.items()})
        value = s.family.value
        context = {"size": size, "probs": np.full(size, 1.0 / size), "total_count": args.get("total_count")}
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
