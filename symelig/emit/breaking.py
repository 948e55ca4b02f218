"""Long formulas on several lines, so that no line of a LaTeX document runs into the margin.

``width`` estimates how wide TeX sets a formula (in ems of a 10 pt font): it reads the LaTeX the
printer wrote, sets a fraction as wide as the wider of its numerator and denominator, scripts
at 70 %, a sum's limits under it.  The estimate errs wide, which costs an extra line, never an
overfull box.  ``lines`` splits an expression at its top-level ``+``/``−`` (the terms of a sum,
greedily filled) and, for a product with a long sum in it (a fraction over a long numerator),
takes the other factors out in front of a bracket: ``\\frac{1}{d}\\Bigl[a + b \\\\ + c\\Bigr]``.
"""
from __future__ import annotations

import re

from sympy import Mul, fraction

# ems per character class (Computer Modern, 10 pt); errs wide
_LETTER, _DIGIT, _BINARY, _RELATION = 0.58, 0.5, 1.25, 1.4
_COMMANDS = {
    r"\quad": 1.0, r"\qquad": 2.0, r"\,": 0.17, r"\;": 0.28, r"\:": 0.22, r"\!": -0.17, r"\ ": 0.33,
    r"\cdot": 0.8, r"\dots": 1.3, r"\ldots": 1.3, r"\cdots": 1.3, r"\mid": 0.85, r"\partial": 0.6,
    r"\nonumber": 0.0, r"\\": 0.0, r"\sum": 1.45, r"\prod": 1.3, r"\infty": 1.0, r"\in": 1.0,
    r"\log": 1.5, r"\exp": 1.7, r"\cos": 1.6, r"\sin": 1.4, r"\Gamma": 0.65, r"\psi": 0.7,
    r"\times": 1.2, r"\leq": 1.3, r"\geq": 1.3, r"\mathbf": 0.0, r"\displaystyle": 0.0,
}


def width(latex: str) -> float:
    """The estimated width of ``latex`` (math) in ems."""
    return _Reader(latex).sequence()


class _Reader:
    def __init__(self, text: str):
        self.text, self.at = text, 0

    def _token(self) -> str:
        m = re.compile(r"\\[A-Za-z]+|\\.|\s+|.").match(self.text, self.at)
        self.at = m.end()
        return m.group()

    def _argument(self) -> float:
        """The width of the next group or single token."""
        while self.at < len(self.text) and self.text[self.at].isspace():
            self.at += 1
        if self.at < len(self.text) and self.text[self.at] == "{":
            self.at += 1
            return self.sequence("}")
        return self.one(self._token()) if self.at < len(self.text) else 0.0

    def sequence(self, end: str | None = None) -> float:
        total = 0.0
        while self.at < len(self.text):
            if end and self.text[self.at] == end:
                self.at += 1
                break
            total += self.one(self._token())
        return total

    def one(self, token: str) -> float:
        if token.isspace() or token in "&":
            return 0.0
        if token == "{":
            return self.sequence("}")
        if token in ("^", "_"):
            return 0.7 * self._argument()
        if token in (r"\frac", r"\dfrac", r"\tfrac", r"\binom"):
            scale = 0.7 if token == r"\tfrac" else 1.0
            return scale * max(self._argument(), self._argument()) + 0.3
        if token in (r"\left", r"\right", r"\bigl", r"\bigr", r"\Bigl", r"\Bigr", r"\biggl", r"\biggr"):
            self._token()  # the delimiter
            return 0.45
        if token in (r"\operatorname", r"\mathrm", r"\text", r"\mathtt", r"\texttt", r"\textrm"):
            start = self.at
            self._argument()
            return 0.5 * len(re.sub(r"\\.|[{}]", "x", self.text[start:self.at]))
        if token in (r"\sum", r"\prod"):  # display limits stack under and over the sign
            limits = 0.0
            while self.text.startswith(("_", "^"), self.at):
                self._token()
                limits = max(limits, 0.7 * self._argument())
            return max(_COMMANDS[token], limits) + 0.3
        if token in _COMMANDS:
            return _COMMANDS[token]
        if token.startswith("\\"):
            return 0.7 if token[1:].isalpha() else 0.5  # a Greek letter, an escaped brace
        if token in "+-":
            return _BINARY
        if token in "=<>":
            return _RELATION
        if token in "()[]|":
            return 0.4
        if token in ",;":
            return 0.45
        return _DIGIT if token.isdigit() else _LETTER


def lines(expr, budget: float, tex) -> list:
    """``expr`` printed by ``tex`` as consecutive lines, each within ``budget`` ems where the
    expression can be broken; every line after the first starts with its sign."""
    whole = tex(expr)
    if width(whole) <= budget:
        return [whole]
    if expr.is_Add:
        return _sum_lines(expr, budget, tex)
    negative = expr.could_extract_minus_sign()
    magnitude = -expr if negative else expr
    numerator, denominator = fraction(magnitude)
    factors = Mul.make_args(numerator)
    long_sum = max((f for f in factors if f.is_Add), key=lambda f: width(tex(f)), default=None)
    if long_sum is None:
        return [whole]
    outside = Mul(*(f for f in factors if f is not long_sum)) / denominator
    # a sum in front is bracketed: (a − μ)[…], never a − μ[…]
    printed = rf"\left({tex(outside)}\right)" if outside.is_Add else tex(outside)
    front = ("" if outside == 1 else printed + " ") + r"\Bigl["
    inner = lines(long_sum, budget - width(front) - 1.0, tex)
    inner[0] = front + inner[0]
    inner[-1] += r"\Bigr]"
    if negative:
        inner[0] = "- " + inner[0]
    return inner


def _sum_lines(expr, budget: float, tex) -> list:
    from .latex import _Latex

    terms = _Latex()._as_ordered_terms(expr, order=None)
    terms = [t for t in terms if not t.could_extract_minus_sign()] + [t for t in terms if t.could_extract_minus_sign()]
    out, current = [], ""
    for term in terms:
        sign = "-" if term.could_extract_minus_sign() else "+"
        body = -term if sign == "-" else term
        piece = f"{sign} {_grouped(body, tex)}"
        if width(piece) > budget:  # a term too long for a line of its own: break it too
            parts = lines(body, budget - 1.5, tex)
            if len(parts) > 1:
                if current:
                    out.append(current)
                out += [f"{sign} {parts[0]}", *parts[1:-1]]
                current = parts[-1]
                continue
        if width(current + piece) <= budget or not current:
            current = f"{current} {piece}" if current else piece
        else:
            out.append(current)
            current = piece
    out.append(current)
    out[0] = out[0][2:] if out[0].startswith("+ ") else out[0]
    return out


def _grouped(term, tex) -> str:
    """A term after a sign: a sum in it gets parentheses (``- (a - b)`` stays one term)."""
    text = tex(term)
    return rf"\left({text}\right)" if term.is_Add else text


def align_row(lhs: str, rhs_lines: list) -> str:
    """One ``align`` row, its continuation lines indented and unnumbered: ``lhs &= l1 \\\\ &\\quad l2``."""
    return f"  {lhs} &= " + (r" \nonumber \\" + "\n  &\\quad ").join(rhs_lines)
