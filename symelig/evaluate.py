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
