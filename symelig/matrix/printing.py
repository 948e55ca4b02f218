"""Matrix expressions printed as papers write them: L⁻ᵀ z zᵀ, tril(·), diag(L)⁻¹ (text), and
``L^{-\\top} z z^{\\top}`` (LaTeX).  SymPy's own printers write ``(L^T)^{-1}`` and do not know
the operators of :mod:`symelig.matrix.calculus`."""
from __future__ import annotations

from sympy import Identity, Integer, Inverse, MatAdd, MatMul, MatrixSymbol, Mul, Rational, Symbol, Transpose, ZeroMatrix, log, pi

from .calculus import Diag, ExpDiag, Tril, is_log_det

GREEK = {"mu": ("μ", r"\mu")}


def text(expr) -> str:
    return _print(expr, _TEXT)


def latex(expr) -> str:
    return _print(expr, _LATEX)


_TEXT = {"T": "ᵀ", "inv": "⁻¹", "invT": "⁻ᵀ", "times": " ", "half": "½", "minus": "−", "I": "I",
         "tril": "tril({}{})", "minus_one": ", −1", "diag": "diag({})", "exp": "exp(diag({}))",
         "logdet": "log det {}", "log2pi": "log 2π", "open": "(", "close": ")"}
_LATEX = {"T": r"^{\top}", "inv": "^{-1}", "invT": r"^{-\top}", "times": r"\, ", "half": r"\tfrac{1}{2}", "minus": "-",
          "I": "I", "tril": r"\operatorname{{tril}}\left({}{}\right)", "minus_one": ", -1", "diag": r"\operatorname{{diag}}\left({}\right)",
          "exp": r"\exp\left(\operatorname{{diag}}\left({}\right)\right)", "logdet": r"\log\det {}", "log2pi": r"\log 2\pi",
          "open": r"\left(", "close": r"\right)"}


def _name(symbol, style) -> str:
    greek = GREEK.get(symbol.name)
    return (greek[0] if style is _TEXT else greek[1]) if greek else symbol.name


def _atom(expr, style) -> str:
    """``expr`` printed so that a superscript or a neighbouring factor binds to all of it."""
    out = _print(expr, style)
    if isinstance(expr, (MatrixSymbol, Symbol, Tril, Diag, ExpDiag, Identity)) or _is_power(expr):
        return out
    return style["open"] + out + style["close"]


def _is_power(expr) -> bool:
    return isinstance(expr, (Transpose, Inverse)) and isinstance(expr.args[0], (MatrixSymbol, Transpose, Diag))


def _print(expr, style) -> str:
    s = style
    if isinstance(expr, (MatrixSymbol, Symbol)):
        return _name(expr, style)
    if isinstance(expr, Identity):
        return s["I"]
    if isinstance(expr, ZeroMatrix):
        return "0"
    if isinstance(expr, Transpose):
        return _atom(expr.arg, style) + s["T"]
    if isinstance(expr, Inverse):
        if isinstance(expr.arg, Transpose):
            return _atom(expr.arg.arg, style) + s["invT"]
        return _atom(expr.arg, style) + s["inv"]
    if isinstance(expr, Tril):
        return s["tril"].format(_print(expr.args[0], style), s["minus_one"] if int(expr.args[1]) == -1 else "")
    if isinstance(expr, Diag):
        return s["diag"].format(_print(expr.args[0], style))
    if isinstance(expr, ExpDiag):
        return s["exp"].format(_print(expr.args[0], style))
    if is_log_det(expr):
        return s["logdet"].format(_atom(expr.args[0].arg, style))
    if isinstance(expr, MatAdd) or expr.is_Add:
        # as a paper orders them: the tril terms first, subtracted terms last
        ordered = sorted(expr.args, key=lambda t: not isinstance(t, Tril))
        terms = sorted((_print(t, style) for t in ordered), key=lambda t: t.startswith(s["minus"]))
        out = terms[0]
        for t in terms[1:]:
            out += f" {s['minus']} {t[len(s['minus']):].lstrip()}" if t.startswith(s["minus"]) else f" + {t}"
        return out
    if isinstance(expr, MatMul) or expr.is_Mul:
        return _product(expr, style)
    if expr == log(2 * pi):
        return s["log2pi"]
    if isinstance(expr, Integer):
        return str(expr).replace("-", s["minus"])
    raise NotImplementedError(f"no matrix notation for {type(expr).__name__}: {expr}")


def _product(expr, style) -> str:
    s = style
    coefficient, factors = expr.as_coeff_mmul() if isinstance(expr, MatMul) else expr.as_coeff_Mul()
    factors = factors.args if isinstance(factors, (MatMul, Mul)) else (factors,)
    sign = s["minus"] if coefficient < 0 else ""
    coefficient = abs(coefficient)
    if coefficient == Rational(1, 2):
        lead = s["half"] + (" " if style is _TEXT else "")
    elif coefficient == 1:
        lead = ""
    else:
        lead = f"{coefficient} "
    body = s["times"].join(_atom(f, style) if isinstance(f, (MatAdd,)) or getattr(f, "is_Add", False) else _print(f, style)
                           for f in factors)
    return f"{sign}{lead}{body}"
