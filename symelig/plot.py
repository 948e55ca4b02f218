"""A small plot of the eligibility against x at typical parameter values, as inline SVG.

Written by hand (a polyline per component, axes, ticks, a legend): no plotting library, and the
page stays one self-contained file.  The values come from the derivation's own kernels.

Typical values are chosen per constraint (``TYPICAL``): a location 0, a positive parameter 2, a
probability 0.3, K = 3 categories (K = 2 where x itself is a vector, so that x = (t, 1 − t) or
(t, n − t) is one number and the plot is against t).  The x range is where the density is at
least 1/100 of its largest value on a wide grid, so a heavy tail and a narrow peak both fit.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import SymeligError

# value of a scalar parameter, by constraint name
TYPICAL = {
    "real": 0.0, "positive": 2.0, "negative": -0.5, "unit_interval": 0.3, "above_minus_one": 1.0,
    "nonnegative_integer": 10, "angle": 0.0,
}
# vector parameters: a function of K
TYPICAL_VECTOR = {
    "simplex": lambda k: (k - np.arange(k)) / (k * (k + 1) / 2),
    "nonnegative_vector": lambda k: (k - np.arange(k)) / (k * (k + 1) / 2),
    "real_vector": lambda k: np.linspace(0.5, -0.5, k),
    "positive_vector": lambda k: 2.0 + np.arange(k),
    "above_minus_one_vector": lambda k: 1.0 + np.arange(k),
}
_RELATIVE_DENSITY = 1e-2   # the x range: where p(x) ≥ this × its largest value
_MAX_COUNT = 60            # the largest count shown for an unbounded discrete x
_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


@dataclass
class Curves:
    """What the plot shows: x (or t for a vector x), one series per eligibility component."""

    x: np.ndarray
    series: dict          # label -> values at x
    discrete: bool
    x_label: str
    values: dict          # the parameter (and argument) values, for the caption


def typical_values(d) -> dict:
    """{name: value} for the arguments and parameters of ``d``; SymeligError if a constraint has
    no typical value (a lab's own constraint)."""
    s = d.symbolic
    size = 2 if s.family.value.event_dim else 3
    out = {}
    for name in (*d.arguments, *d.parameters):
        constraint = s.constraints[name]
        if constraint.event_dim:
            make = TYPICAL_VECTOR.get(constraint.name)
            value = None if make is None else make(size)
        else:
            value = TYPICAL.get(constraint.name)
        if value is None:
            raise SymeligError(f"no typical value for {name} ({constraint.name})")
        out[name] = np.asarray(value, dtype=float)
    return out


def curves(d) -> Curves:
    """The eligibility of ``d`` along x at ``typical_values(d)``."""
    values = typical_values(d)
    s = d.symbolic
    value = s.family.value
    total = int(values["total_count"]) if "total_count" in values else None
    if value.own_axis:  # an ordering, one category per block: no one-dimensional path through x
        raise SymeligError(f"the eligibility is drawn along one coordinate of x, and x here is {value.allowed}")
    if value.event_dim:  # x = (t, 1 − t) on the simplex or (t, n − t) counts: K = 2
        if value.integer:
            t = np.arange(total + 1)
            x = np.stack([t, total - t], axis=-1)
        else:
            t = np.linspace(0.005, 0.995, 199)
            x = np.stack([t, 1 - t], axis=-1)
        label = "x₀, with x = (x₀, n − x₀)" if value.integer else "x₀, with x = (x₀, 1 − x₀)"
        return _evaluate(d, values, x, t, value.integer, label)
    if value.integer:
        x = _integers(d, values, value, total)
    elif value.name == "unit_interval":
        x = np.linspace(0.005, 0.995, 199)
    elif value.name == "angle":
        x = np.linspace(-np.pi, np.pi, 201)
    else:
        x = _continuous(d, values, positive=value.lower == 0.0)
    return _evaluate(d, values, x, x, value.integer, "x")


def _integers(d, values, value, total) -> np.ndarray:
    if value.name == "category":
        return np.arange(_size(values))
    if value.upper < np.inf:
        return np.arange(int(value.upper) + 1)
    if total is not None and value.name == "up_to_total_count":
        return np.arange(total + 1)
    x = np.arange(_MAX_COUNT + 1)
    density = _density(d, values, x)
    keep = np.nonzero(density >= _RELATIVE_DENSITY * density.max())[0]
    return np.arange(int(keep.max()) + 1)


def _size(values) -> int:
    return next(int(np.shape(v)[-1]) for v in values.values() if np.ndim(v))


def _continuous(d, values, positive: bool) -> np.ndarray:
    wide = np.geomspace(1e-6, 1e6, 4001) if positive else np.sinh(np.linspace(-9.0, 9.0, 4001))
    density = _density(d, values, wide)
    keep = wide[density >= _RELATIVE_DENSITY * density.max()]
    low, high = float(keep.min()), float(keep.max())
    if positive and low < high / 50:  # start near 0 rather than at a point of the wide grid
        low = high / 200
    return np.linspace(low, high, 201)


def _density(d, values, x) -> np.ndarray:
    with np.errstate(all="ignore"):
        log_p = np.asarray(d.log_prob(x, validate=False, **values), dtype=float)
    return np.where(np.isfinite(log_p), np.exp(log_p - np.nanmax(np.where(np.isfinite(log_p), log_p, -np.inf))), 0.0)


def _evaluate(d, values, x, t, discrete, label) -> Curves:
    with np.errstate(all="ignore"):
        e = d.eligibility(x, validate=False, **values)
    series = {}
    for name, result in e.items():
        result = np.asarray(result, dtype=float)
        symbol = _letter(d, name)
        if result.ndim == 2:  # a vector parameter: one curve per component j
            for k in range(result.shape[-1]):
                series[f"∂ log p/∂{symbol}{_subscript(k)}"] = result[:, k]
        else:
            series[f"∂ log p/∂{symbol}"] = np.broadcast_to(result, np.shape(t))
    return Curves(np.asarray(t, dtype=float), series, bool(discrete), label, values)


def _letter(d, name) -> str:
    from .emit.text import formula

    symbol = d.symbolic.symbols[name]
    return formula(getattr(symbol, "label", symbol))


def _subscript(k: int) -> str:
    return str(k).translate(str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉"))


def caption_values(c: Curves, d) -> str:
    """``μ = 0, σ = 2`` for the caption."""
    parts = []
    for name, value in c.values.items():
        shown = ", ".join(f"{v:.3g}" for v in np.ravel(value))
        parts.append(f"{_letter(d, name)} = {'(' + shown + ')' if np.ndim(value) else shown}")
    return ", ".join(parts)


# -- SVG -----------------------------------------------------------------------------------------

WIDTH, HEIGHT = 520, 280
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 170, 14, 40


def svg(c: Curves, title: str) -> str:
    """An ``svg`` element: the series of ``c`` against its x, clipped to a robust y range."""
    finite = np.concatenate([v[np.isfinite(v)] for v in c.series.values()] or [np.zeros(1)])
    low, high = (np.percentile(finite, [2, 98]) if finite.size else (0.0, 1.0))
    low, high = min(low, 0.0), max(high, 0.0)  # keep e = 0 in view: the sign is what matters
    if high - low < 1e-12:
        low, high = low - 1, high + 1
    pad = 0.06 * (high - low)
    low, high = low - pad, high + pad
    x0, x1 = float(c.x.min()), float(c.x.max())
    if x1 - x0 < 1e-12:
        x0, x1 = x0 - 1, x1 + 1
    if c.discrete:
        x0, x1 = x0 - 0.5, x1 + 0.5
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM

    def px(v):
        return _LEFT + (v - x0) / (x1 - x0) * plot_w

    def py(v):
        return _TOP + (high - v) / (high - low) * plot_h

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" width="{WIDTH}" height="{HEIGHT}" '
           f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img">',
           f"<title>{_escape(title)}</title>",
           f'<defs><clipPath id="frame"><rect x="{_LEFT}" y="{_TOP}" width="{plot_w}" height="{plot_h}"/></clipPath></defs>',
           f'<rect x="{_LEFT}" y="{_TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#888"/>']
    for tick in _ticks(x0, x1, integer=c.discrete):
        out.append(f'<line x1="{px(tick):.1f}" y1="{_TOP + plot_h}" x2="{px(tick):.1f}" y2="{_TOP + plot_h + 4}" stroke="#888"/>'
                   f'<text x="{px(tick):.1f}" y="{_TOP + plot_h + 16}" text-anchor="middle">{_number(tick)}</text>')
    for tick in _ticks(low, high):
        out.append(f'<line x1="{_LEFT - 4}" y1="{py(tick):.1f}" x2="{_LEFT}" y2="{py(tick):.1f}" stroke="#888"/>'
                   f'<text x="{_LEFT - 7}" y="{py(tick) + 4:.1f}" text-anchor="end">{_number(tick)}</text>')
    out.append(f'<line x1="{_LEFT}" y1="{py(0):.1f}" x2="{_LEFT + plot_w}" y2="{py(0):.1f}" stroke="#bbb" stroke-dasharray="4 3"/>')
    out.append(f'<text x="{_LEFT + plot_w / 2:.1f}" y="{HEIGHT - 6}" text-anchor="middle">{_escape(c.x_label)}</text>')
    out.append('<g clip-path="url(#frame)" fill="none" stroke-width="1.8">')
    for n, (label, values) in enumerate(c.series.items()):
        color = _COLORS[n % len(_COLORS)]
        ok = np.isfinite(values)
        if c.discrete:
            out += [f'<circle cx="{px(a):.1f}" cy="{py(b):.1f}" r="3.2" fill="{color}" stroke="none"/>'
                    for a, b in zip(c.x[ok], values[ok])]
        for run in _runs(ok):
            points = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in zip(c.x[run], values[run]))
            dash = ' stroke-dasharray="2 3"' if c.discrete else ""
            out.append(f'<polyline points="{points}" stroke="{color}"{dash}/>')
    out.append("</g>")
    for n, label in enumerate(c.series):
        y = _TOP + 10 + 18 * n
        color = _COLORS[n % len(_COLORS)]
        out.append(f'<line x1="{WIDTH - _RIGHT + 12}" y1="{y}" x2="{WIDTH - _RIGHT + 32}" y2="{y}" stroke="{color}" stroke-width="2.5"/>'
                   f'<text x="{WIDTH - _RIGHT + 38}" y="{y + 4}">{_escape(label)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _runs(ok: np.ndarray) -> list:
    """Index slices of the consecutive finite points (a polyline never bridges a gap)."""
    runs, start = [], None
    for n, good in enumerate(list(ok) + [False]):
        if good and start is None:
            start = n
        elif not good and start is not None:
            if n - start > 1:
                runs.append(slice(start, n))
            start = None
    return runs


def _ticks(low: float, high: float, integer: bool = False) -> list:
    """About five round numbers in [low, high]."""
    span = high - low
    step = 10 ** np.floor(np.log10(span / 5))
    for factor in (1, 2, 5, 10):
        if span / (step * factor) <= 6:
            step *= factor
            break
    if integer:
        step = max(1.0, np.round(step))
    first = np.ceil(low / step) * step
    return [float(v) for v in np.arange(first, high + step * 1e-9, step)]


def _number(v: float) -> str:
    text = f"{v:.4g}"
    return "0" if text in ("-0", "0") else text.replace("-", "−")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
