"""``symelig eval``: numbers from the command line in, log p, e and p·e out.

The gradient of the probability itself, ∂p(x|θ)/∂θ = p(x|θ)·e, is what autograd reports
for ``exp(log_prob).backward()``; printing both answers the question symelig was founded on.
"""
from __future__ import annotations

import re

import numpy as np

from .errors import SymeligError, did_you_mean

# Plain ASCII decimal numbers only: Python's int()/float() would also take '1_000', 'nan',
# 'infinity' and non-ASCII digits, none of which a user means as a parameter value.
_INTEGER = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def _number(token: str, option: str):
    token = token.strip()
    if _INTEGER.fullmatch(token):
        return int(token)
    if _FLOAT.fullmatch(token):
        return float(token)
    raise SymeligError(
        f"--{option.replace('_', '-')}: {token!r} is not a number; give comma-separated decimal numbers, e.g. 0.69,0.1,0.2"
    )


def parse_arguments(args: list, names: list, entry: str, options=(), rows: bool = False, optional=()) -> dict:
    """``['--probs', '0.1,0.9', '--x', '1']`` → {"probs": array, "x": array}, names checked;
    a near miss of a name or of the command's own ``options`` gets a "did you mean".  With
    ``rows``, ';' separates the rows of a matrix (``1,0;0.5,2``); the ``optional`` names
    (arguments with a default) may be left out."""
    allowed = ", ".join(f"--{n.replace('_', '-')}" for n in names)
    values, pending = {}, list(args)
    while pending:
        flag = pending.pop(0)
        name, equals, inline = flag.partition("=")
        if not name.startswith("--") or name[2:].replace("-", "_") not in names:
            known = [f"--{n.replace('_', '-')}" for n in names] + list(options)
            hint = did_you_mean(name, known) if name.startswith("--") else ""
            raise SymeligError(f"unexpected {flag!r} for {entry};{hint} it takes {allowed}")
        name = name[2:].replace("-", "_")
        if equals and not inline:
            raise SymeligError(f"--{name.replace('_', '-')} needs a value after '='")
        if not equals:
            if not pending:
                raise SymeligError(f"--{name.replace('_', '-')} needs a value")
            inline = pending.pop(0)
        if name in values:
            raise SymeligError(f"--{name.replace('_', '-')} is given twice")
        if rows and ";" in inline:
            matrix = [[_number(t, name) for t in row.split(",")] for row in inline.split(";")]
            if len({len(row) for row in matrix}) > 1:
                raise SymeligError(f"--{name.replace('_', '-')}: the rows separated by ';' must have equal lengths")
            values[name] = np.array(matrix)
            continue
        tokens = inline.split(",")
        numbers = [_number(t, name) for t in tokens]
        values[name] = np.array(numbers) if len(numbers) > 1 else np.array(numbers[0])
    missing = [n for n in names if n not in values and n not in optional]
    if missing:
        raise SymeligError(f"missing --{missing[0].replace('_', '-')} for {entry}; it takes {allowed}")
    return values


def evaluate(derivation, values: dict, compat: str | None = None) -> dict:
    """The numbers ``eval`` prints; with ``compat`` (a library of symelig.squash) also log p as
    that library computes it and its difference from the exact value."""
    x = values.pop("x")
    extra = {}
    if compat is not None:
        from .squash import compat_log_prob

        found = compat_log_prob(compat, derivation.family, derivation.param, x, **values)
        extra = {"compat": {"library": compat, "log_prob": found.log_prob.tolist(), "difference": found.difference.tolist()}}
    e = derivation.eligibility(x, **values)
    log_p = derivation.log_prob(x, **values)
    if not np.all(np.isfinite(log_p)):
        raise SymeligError(f"log p(x | θ) = {np.ravel(log_p)[0]} is outside the float64 range at these values")
    prob = np.exp(log_p)
    return {
        "family": derivation.family,
        "param": derivation.param,
        "x": x.tolist(),
        "log_prob": log_p.tolist(),
        "prob": prob.tolist(),
        "eligibility": {n: v.tolist() for n, v in e.items()},
        "prob_gradient": {n: (_expand_like(prob, v) * v).tolist() for n, v in e.items()},
        **extra,
    }


def _expand_like(prob, value):
    prob = np.asarray(prob)
    return prob.reshape(prob.shape + (1,) * (value.ndim - prob.ndim))


def _fmt(value) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return f"{value:.6g}"


def render(derivation, result: dict) -> str:
    """The numbers as a table whose "=" signs line up, however long the parameter names."""
    x = _fmt(result["x"]) if isinstance(result["x"], list) else result["x"]
    rows = [("log p(x | θ)", result["log_prob"]), ("p(x | θ)", result["prob"])]
    rows += [(f"eligibility ∂log p/∂{n}", v) for n, v in result["eligibility"].items()]
    rows += [(f"gradient ∂p/∂{n} (p·e)", v) for n, v in result["prob_gradient"].items()]
    if "compat" in result:
        library = result["compat"]["library"]
        rows += [(f"log p as {library} computes it", result["compat"]["log_prob"]),
                 (f"{library} − exact log p", result["compat"]["difference"])]
    width = max(len(label) for label, _ in rows)
    lines = [f"{result['family']} --param {result['param']}, x = {x}"]
    lines += [f"{label.ljust(width)} = {_fmt(value)}" for label, value in rows]
    lines.append("(e is the gradient of log_prob; p·e is what autograd gives for exp(log_prob).backward())")
    if "compat" in result:
        lines.append(f"({result['compat']['library']}'s Jacobian term does not depend on θ: e is the same)")
    return "\n".join(lines) + "\n"


def quantity(derivation, which, samples, seed, args: list, options=()) -> dict:
    """``eval --quantity entropy|kl``: the closed form (value and gradients) at the given values,
    or with ``--samples`` the Monte Carlo estimate and its standard error; q's values as --NAME-q."""
    from .entropy_kl import closed_form

    if which not in ("entropy", "kl"):
        raise SymeligError("--samples and --seed go with --quantity entropy or kl" if which is None
                           else f"--quantity is entropy or kl, not {which!r}")
    if seed is not None and samples is None:
        raise SymeligError("--seed goes with --samples (the Monte Carlo estimate)")
    d = derivation
    names = [*d.arguments, *d.parameters]
    entry = f"{d.family} --param {d.param}"
    if which == "kl":
        names += [f"{n}_q" for n in d.parameters]
    values = parse_arguments(args, names, entry + f" --quantity {which}", options)
    sides = {"p": {n: values[n] for n in [*d.arguments, *d.parameters]}}
    if which == "kl":
        sides["q"] = {**{a: values[a] for a in d.arguments}, **{n: values[f"{n}_q"] for n in d.parameters}}
    result = {"family": d.family, "param": d.param, "quantity": which}
    if samples is not None:
        if which == "entropy":
            found = d.entropy(method="monte_carlo", samples=samples, seed=seed, **sides["p"])
        else:
            found = d.kl(sides["p"], sides["q"], method="monte_carlo", samples=samples, seed=seed)
        return {**result, "method": "monte_carlo", "samples": found.samples, "seed": seed,
                "value": found.value.tolist(), "standard_error": found.standard_error.tolist()}
    form = closed_form(which, d.family, d.param)  # the one-line error, with the Monte Carlo offer
    if which == "entropy":
        value, gradient = d.entropy(**sides["p"]), {"p": d.entropy_gradient(**sides["p"])}
    else:
        value, gradient = d.kl(sides["p"], sides["q"]), d.kl_gradient(sides["p"], sides["q"])
    return {**result, "method": "closed_form", "how": form.how, "value": np.asarray(value).tolist(),
            "gradients": {side: {n: np.asarray(g).tolist() for n, g in grads.items()} for side, grads in gradient.items()}}


def render_quantity(result: dict) -> str:
    """The value (± its standard error for a Monte Carlo estimate) and the gradients."""
    name = "H(p)" if result["quantity"] == "entropy" else "KL(p ‖ q)"
    lines = [f"{result['family']} --param {result['param']}, {result['quantity']}"]
    if result["method"] == "monte_carlo":
        seed = "" if result["seed"] is None else f", seed {result['seed']}"
        lines.append(f"{name} ≈ {_fmt(result['value'])} ± {_fmt(result['standard_error'])}")
        lines.append(f"(Monte Carlo: {result['samples']} draws of p{seed}; ± one standard error)")
        return "\n".join(lines) + "\n"
    rows = [(name, result["value"])]
    rows += [(f"∂{name}/∂{n}" + ("_q" if side == "q" else ""), v) for side, grads in result["gradients"].items() for n, v in grads.items()]
    width = max(len(label) for label, _ in rows)
    lines += [f"{label.ljust(width)} = {_fmt(value)}" for label, value in rows]
    lines.append(f"(closed form: {result['how'] or 'symbolic expectation'})")
    return "\n".join(lines) + "\n"
