"""Presentation MathML that browsers render natively (no script, no font download): the formulas of
the HTML catalog (``symelig html``).

SymPy's presentation printer writes functions it does not know as their class name in lower case
(``kroneckerdelta(j, x)``, ``polygamma(0, a)``, ``xlogy(x, p)``, ``softmax(z_i, i, K, j)``); the
printer below typesets them as the LaTeX printer does (δ_jx, ψ(a), x log p, softmax(z)_j), puts
positive terms first, and writes named character references (``&InvisibleTimes;``, ``&pi;``) as
the characters themselves, so that the markup is well-formed XML as well as HTML.
"""
from __future__ import annotations

import html.entities
import re

from sympy import Indexed, Mul, S
from sympy import log as sympy_log
from sympy.printing.mathml import MathMLPresentationPrinter
from sympy.printing.precedence import PRECEDENCE

from .text import PositiveFirst

NAMESPACE = "http://www.w3.org/1998/Math/MathML"
_ENTITY = re.compile(r"&([A-Za-z][A-Za-z0-9]*);")
_XML_ENTITIES = {"lt", "gt", "amp", "quot", "apos"}


class _MathML(PositiveFirst, MathMLPresentationPrinter):
    """SymPy's presentation MathML printer with symelig's functions and papers' notation."""

    def __init__(self):
        super().__init__({"mul_symbol": "\u2062"})  # invisible times, as a character

    # DOM helpers ---------------------------------------------------------------------------
    def _node(self, tag, *children, text=None, **attributes):
        element = self.dom.createElement(tag)
        if text is not None:
            element.appendChild(self.dom.createTextNode(text))
        for child in children:
            element.appendChild(child)
        for name, value in attributes.items():
            element.setAttribute(name, value)
        return element

    def _mi(self, text, upright=False):
        return self._node("mi", text=text, **({"mathvariant": "normal"} if upright and len(text) == 1 else {}))

    def _mo(self, text):
        return self._node("mo", text=text)

    def _row(self, *children):
        return self._node("mrow", *children)

    def _parens(self, inner):
        return self._row(self._mo("("), inner, self._mo(")"))

    def _applied(self, name, *args, upright=True):
        """``name(args)``: an operator name applied to its arguments, e.g. softplus(z)."""
        head = self._mi(name, upright) if isinstance(name, str) else name
        body = self._print(args[0]) if len(args) == 1 else self._row(*_joined(self, [self._print(a) for a in args], ","))
        return self._row(head, self._mo("\u2061"), self._parens(body))

    def _sub(self, base, subscript):
        return self._node("msub", base, subscript)

    def _frac(self, numerator, denominator):
        return self._node("mfrac", numerator, denominator)

    def _powered(self, node, exp):
        """SymPy's printers pass ``exp`` when a function is raised to a power (unused by this
        printer's Pow, kept for symmetry with the LaTeX methods)."""
        return node if exp is None else self._node("msup", self._parens(node), self._print(exp))

    def _log_of(self, *children):
        """log, a thin space unless a parenthesis follows (as TeX's \\log), the argument."""
        first = children[0]
        fenced = first.tagName == "mrow" and first.firstChild is not None and first.firstChild.tagName == "mo" \
            and first.firstChild.firstChild.data == "("
        space = [] if fenced else [self._node("mspace", width="0.1667em")]
        return self._row(self._mi("log"), self._mo("\u2061"), *space, *children)

    def _sum(self, index, upper, body, lower=S.Zero, under=None):
        under = under if under is not None else self._row(self._print(index), self._mo("="), self._print(lower))
        return self._row(self._node("munderover", self._mo("\u2211"), under, self._print(upper)), body)

    def _print_Symbol(self, sym, style="plain"):
        if sym.name == "ell":  # SymPy's table has the Greek letters, not the script ℓ
            return self._mi("ℓ")
        return super()._print_Symbol(sym, style)

    # SymPy's functions -----------------------------------------------------------------------
    def _print_KroneckerDelta(self, expr):
        a, b = expr.args
        return self._sub(self._mi("δ"), self._row(self._print(a), self._print(b)))

    def _print_polygamma(self, expr, exp=None):
        n, a = expr.args
        name = self._mi("ψ")
        if n == 1:
            name = self._node("msup", name, self._mo("′"))
        elif n != 0:
            name = self._node("msup", name, self._parens(self._print(n)))
        return self._powered(self._applied(name, a), exp)

    def _print_loggamma(self, expr, exp=None):
        return self._powered(self._log_of(self._mi("Γ"), self._parens(self._print(expr.args[0]))), exp)

    def _print_gamma(self, expr, exp=None):
        return self._powered(self._applied(self._mi("Γ"), expr.args[0]), exp)

    def _print_besseli(self, expr, exp=None):
        nu, z = expr.args
        return self._powered(self._applied(self._sub(self._mi("I"), self._print(nu)), z), exp)

    def _print_DiracDelta(self, expr, exp=None):
        return self._powered(self._applied(self._mi("δ"), expr.args[0]), exp)

    def _print_sign(self, expr, exp=None):
        return self._powered(self._applied("sign", expr.args[0]), exp)

    def _print_Piecewise(self, expr):
        rows = []
        for value, condition in expr.args:
            when = self._mi("otherwise", upright=True) if condition is S.true else self._print(condition)
            rows.append(self._node("mtr", self._node("mtd", self._print(value)), self._node("mtd", when)))
        return self._row(self._mo("{"), self._node("mtable", *rows, columnalign="left"))

    def _print_Exp1(self, expr):
        return self._mi("e", upright=True)

    def _print_Pi(self, expr):
        return self._mi("π")

    # symelig's functions (symelig.functions), as their LaTeX methods write them --------------
    def _print_xlogy(self, expr, exp=None):
        a, b = expr.args
        return self._powered(self._row(self.parenthesize(a, PRECEDENCE["Mul"]), self._mo("\u2062"),
                                       self._log_of(self.parenthesize(b, PRECEDENCE["Pow"]))), exp)

    def _print_xdivy(self, expr, exp=None):
        return self._powered(self._frac(self._print(expr.args[0]), self._print(expr.args[1])), exp)

    _print_quotient = _print_xdivy

    def _print_logfactorial(self, expr, exp=None):
        return self._powered(self._log_of(self.parenthesize(expr.args[0], PRECEDENCE["Pow"]), self._mo("!")), exp)

    def _print_LogSumExp(self, expr, exp=None):
        body = self._node("msup", self._mi("e", upright=True), self._print(expr.body))
        return self._powered(self._log_of(self._sum(expr.index, expr.size - 1, body)), exp)

    def _vector(self, reduction):
        """``z`` when the body is ``z[i]``, else the body itself (as the LaTeX printer)."""
        body = reduction.body
        if isinstance(body, Indexed) and body.indices == (reduction.index,):
            return self._print(body.base)
        return self._print(body)

    def _print_Softmax(self, expr, exp=None):
        softmax = self._row(self._mi("softmax"), self._mo("\u2061"), self._parens(self._vector(expr)))
        return self._powered(self._sub(softmax, self._print(expr.at)), exp)

    def _print_SoftmaxExcept(self, expr, exp=None):
        softmax = self._row(self._mi("softmax"), self._mo("\u2061"), self._parens(self._vector(expr)))
        return self._powered(self._row(self._node("mn", text="1"), self._mo("−"), self._sub(softmax, self._print(expr.at))), exp)

    def _remaining(self, expr):
        """Σ's underscript i ∉ {x_0, …, x_{r−1}}: the categories an ordering has not yet placed."""
        x = expr.ordering
        placed = self._row(self._mo("{"), self._sub(self._print(x), self._node("mn", text="0")), self._mo(","),
                           self._mo("…"), self._mo(","), self._sub(self._print(x), self._print(expr.step - 1)), self._mo("}"))
        return self._row(self._print(expr.index), self._mo("∉"), placed)

    def _print_LogSumExpRemaining(self, expr, exp=None):
        body = self._node("msup", self._mi("e", upright=True), self._print(expr.body))
        return self._powered(self._log_of(self._sum(expr.index, expr.size - 1, body, under=self._remaining(expr))), exp)

    def _print_SoftmaxRemaining(self, expr, exp=None):
        name = self._node("munder", self._mi("softmax"), self._remaining(expr))
        softmax = self._row(name, self._mo("\u2061"), self._parens(self._vector(expr)))
        return self._powered(self._sub(softmax, self._print(expr.at)), exp)

    def _print_LogSumExpBlock(self, expr, exp=None):
        body = self._node("msup", self._mi("e", upright=True), self._print(expr.body))
        return self._powered(self._log_of(self._sum(expr.index, expr.upper, body, lower=expr.lower)), exp)

    def _print_SoftmaxBlock(self, expr, exp=None):
        under = self._row(self._print(expr.index), self._mo("="), self._print(expr.lower))
        name = self._node("munderover", self._mi("softmax"), under, self._print(expr.upper))
        softmax = self._row(name, self._mo("\u2061"), self._parens(self._vector(expr)))
        return self._powered(self._sub(softmax, self._print(expr.at)), exp)

    def _print_SumExcept(self, expr, exp=None):
        under = self._row(self._print(expr.index), self._mo("≠"), self._print(expr.at))
        return self._powered(self._sum(expr.index, expr.size - 1, self._print(expr.body), under=under), exp)

    def _print_sigmoid(self, expr, exp=None):
        return self._powered(self._applied("sigmoid", expr.args[0]), exp)

    def _print_softplus(self, expr, exp=None):
        return self._powered(self._applied("softplus", expr.args[0]), exp)

    def _print_log_softplus(self, expr, exp=None):
        return self._powered(self._log_of(self._applied("softplus", expr.args[0])), exp)

    def _print_sigmoid_over_softplus(self, expr, exp=None):
        z = expr.args[0]
        return self._powered(self._frac(self._applied("sigmoid", z), self._applied("softplus", z)), exp)

    def _print_log_softplus_curvature(self, expr, exp=None):
        z = expr.args[0]
        numerator = self._row(self._applied("sigmoid", -z), self._mo("\u2062"), self._applied("softplus", z),
                              self._mo("−"), self._applied("sigmoid", z))
        denominator = self._node("msup", self._applied("softplus", z), self._node("mn", text="2"))
        return self._powered(self._frac(numerator, denominator), exp)

    def _print_log_bessel_i0(self, expr, exp=None):
        return self._powered(self._log_of(self._applied(self._sub(self._mi("I"), self._node("mn", text="0")), expr.args[0])), exp)

    def _print_bessel_i1_i0(self, expr, exp=None):
        a = expr.args[0]
        return self._powered(self._frac(self._applied(self._sub(self._mi("I"), self._node("mn", text="1")), a),
                                        self._applied(self._sub(self._mi("I"), self._node("mn", text="0")), a)), exp)

    def _print_log1mexp(self, expr, exp=None):
        inner = self._row(self._node("mn", text="1"), self._mo("−"),
                          self._node("msup", self._mi("e", upright=True), self._print(expr.args[0])))
        return self._powered(self._log_of(self._parens(inner)), exp)

    def _print_log_ndtr_difference(self, expr, exp=None):
        a, b = expr.args[:2]  # the third, b − a as written, is for the kernels
        mass = self._row(self._applied("Φ", b), self._mo("−"), self._applied("Φ", a))
        return self._powered(self._log_of(self._parens(mass)), exp)

    def _print_normal_pdf_over_mass(self, expr, exp=None):
        a, b = expr.args[:2]  # the third, b − a as written, is for the kernels
        mass = self._row(self._applied("Φ", b), self._mo("−"), self._applied("Φ", a))
        return self._powered(self._frac(self._applied("φ", a), mass), exp)

    def _print_log1pmx(self, expr, exp=None):
        z = expr.args[0]
        inner = self._row(self._log_of(self._parens(self._print(1 + z))), self._mo("−"), self._print(z))
        return self._powered(self._parens(inner), exp)

    def _print_gamma_difference(self, expr, exp=None):
        return self._powered(self._print(expr.doit()), exp)

    def _print_betaln(self, expr, exp=None):
        return self._powered(self._log_of(self._applied(self._mi("B"), *expr.args)), exp)

    def _print_bd0(self, expr, exp=None):
        x, m, _ = expr.args
        return self._powered(self._applied(self._sub(self._mi("bd"), self._node("mn", text="0")), x, m), exp)

    def _print_stirlerr(self, expr, exp=None):
        return self._powered(self._applied("stirlerr", expr.args[0]), exp)

    def _print_factorial_remainder(self, expr, exp=None):
        name = self._sub(self._mi("stirlerr"), self._mo("!"))
        return self._powered(self._applied(name, expr.args[0]), exp)

    def _print_added_first(self, expr, exp=None):
        return self._powered(self._parens(self._print(expr.args[0])), exp)

    def _print_fms(self, expr, exp=None):
        a, b, c = expr.args
        return self._powered(self._parens(self._print(a - Mul(b, c))), exp)

    def _print_select(self, expr, exp=None):
        from sympy import Piecewise

        condition, then, otherwise = expr.args
        return self._powered(self._print_Piecewise(Piecewise((then, condition), (otherwise, True))), exp)

    def _print_masked(self, expr, exp=None):
        z, m = expr.args
        return self._powered(self._print(z + sympy_log(m)), exp)  # a sum: parenthesized by precedence

    def _print_log_abs(self, expr, exp=None):
        return self._powered(self._log_of(self._row(self._mo("|"), self._print(expr.args[0]), self._mo("|"))), exp)


def _joined(printer, nodes, separator):
    out = []
    for n, node in enumerate(nodes):
        if n:
            out.append(printer._mo(separator))
        out.append(node)
    return out


def _finish(node) -> None:
    """Named references (``&InvisibleTimes;``) as characters, ``-`` as the minus sign U+2212 (XML
    knows only five names, and a hyphen is not a minus); parentheses around nothing taller than a
    line do not stretch (a stretched parenthesis is drawn from pieces, wider and looser, where
    the reader has no math font)."""
    for child in node.childNodes:
        if child.nodeType == child.TEXT_NODE:
            child.data = _ENTITY.sub(_resolve, child.data)
            if node.tagName in ("mo", "mn") and child.data.startswith("-"):
                child.data = "−" + child.data[1:]
            if node.tagName == "mo" and child.data in _FENCES and not _tall(node.parentNode):
                node.setAttribute("stretchy", "false")
        else:
            _finish(child)


_FENCES = {"(", ")", "[", "]", "|"}
_TALL = ("mfrac", "munderover", "munder", "mover", "mtable", "msqrt", "mroot")


def _tall(node) -> bool:
    return node is not None and any(node.getElementsByTagName(tag) for tag in _TALL)


def _resolve(match) -> str:
    name = match.group(1)
    if name in _XML_ENTITIES:
        return match.group(0)
    return html.entities.html5.get(f"{name};", match.group(0))


def mathml(expr) -> str:
    """The presentation MathML of ``expr`` (an ``mrow``, without the enclosing ``math``)."""
    printer = _MathML()
    node = printer._print(expr)
    _finish(node)
    return node.toxml()


def block(*parts: str, display: bool = True) -> str:
    """A ``math`` element around ``parts`` (MathML strings), in a row."""
    mode = "block" if display else "inline"
    return f'<math xmlns="{NAMESPACE}" display="{mode}"><mrow>{"".join(parts)}</mrow></math>'


def display(*parts: str) -> str:
    """A displayed formula: a block ``math`` in a box that scrolls sideways when it is too wide."""
    return f'<div class="formula">{block(*parts)}</div>\n'


def mo(text: str) -> str:
    return f"<mo>{_escape(text)}</mo>"


def mi(text: str) -> str:
    return f"<mi>{_escape(text)}</mi>"


def mtext(text: str) -> str:
    return f"<mtext>{_escape(text)}</mtext>"


def frac(numerator: str, denominator: str) -> str:
    return f"<mfrac><mrow>{numerator}</mrow><mrow>{denominator}</mrow></mfrac>"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# -- left sides: log p(x | θ), ∂ log p/∂θ -----------------------------------------------------------

def likelihood(d, names=None) -> str:
    """``p(x | θ)`` for a density, ``Pr(x | θ)`` for a probability mass (as the LaTeX printer), given
    the parameters ``names`` (those of the parametrization unless named)."""
    given = [mathml(d.symbols[n]) for n in (names if names is not None else d.parameters)]
    letter = "<mi>Pr</mi>" if d.discrete else "<mi>p</mi>"
    return (f'{letter}<mo stretchy="false">(</mo><mi>x</mi><mo stretchy="false">|</mo>'
            f'{"<mo>,</mo>".join(given)}<mo stretchy="false">)</mo>')


def log(*parts: str) -> str:
    """log, a thin space, then ``parts`` (a likelihood: log p(x | θ))."""
    return f'<mrow><mi>log</mi><mo>\u2061</mo><mspace width="0.1667em"/>{"".join(parts)}</mrow>'


def partial(numerator: str, *wrt: str) -> str:
    """∂ numerator/∂a (∂²/∂a ∂b for two)."""
    top = "<mo>∂</mo>" if len(wrt) == 1 else "<msup><mo>∂</mo><mn>2</mn></msup>"
    bottom = "<mo>\u2009</mo>".join(f"<mo>∂</mo>{w}" for w in wrt)
    return frac(f"{top}{numerator}", bottom)
