"""Prose for LaTeX: the engine's sentences (Unicode, for a terminal) as running text with real math.

A sentence such as "a sum against a Kronecker delta picks out one term: Σ_i f(i) δ_ij = f(j)"
mixes words and formulas.  Each whitespace-separated token is classified as math or text
(Greek letters, operators, sub- and superscripts, single-letter symbols and function calls are
math; identifiers with underscores such as ``total_count`` are code); consecutive math tokens
become one ``$…$`` run, printed with TeX's symbols (``\\sum_i f(i) \\delta_{ij} = f(j)``), and the
words are escaped as text.  So the PDF shows π₀ as $\\pi_0$, never as "π\\_0".
"""
from __future__ import annotations

import re
import unicodedata

# characters that make a token a formula
_MATH_CHARS = set("∂Σ∈≤≥²½−=<>|~^_′₀₁₂…+×·√∞!/δπθ𝟙ψΓ→≈≠⁻¹")
_FUNCTIONS = {"log": r"\log", "exp": r"\exp", "cos": r"\cos", "sin": r"\sin"}
_OPERATORS = {"sigmoid", "softplus", "softmax", "loggamma", "Beta", "Abs"}
_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9]+(?:_[A-Za-z0-9]+)+|[A-Za-z]{2,}[0-9]+")
_SYMBOLS = {
    "∂": r"\partial ", "∈": r"\in ", "≤": r"\leq ", "≥": r"\geq ", "−": "-", "·": r"\cdot ", "…": r"\dots ",
    "×": r"\times ", "√": r"\surd ", "∞": r"\infty ", "→": r"\to ", "≈": r"\approx ", "≠": r"\neq ",
    "~": r"\sim ", "½": r"\tfrac12 ", "′": "'", "𝟙": r"\mathbf{1}", "²": "^2", "¹": "^1", "⁻": "^-",
    "₀": "_0", "₁": "_1", "₂": "_2", "%": r"\%", "#": r"\#", "&": r"\&",
}
_TEXT = {
    "_": r"\_", "&": r"\&", "%": r"\%", "#": r"\#", "$": r"\$", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}", "\\": r"\textbackslash{}", "…": r"\dots{}", "“": "``", "”": "''", "’": "'",
    "–": "--", "—": "---", "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}", "−": "--",
}


def _greek(ch: str) -> str | None:
    name = unicodedata.name(ch, "")
    for prefix, case in (("GREEK SMALL LETTER ", str.lower), ("GREEK CAPITAL LETTER ", str.capitalize)):
        if name.startswith(prefix) and " " not in name[len(prefix):]:
            word = case(name[len(prefix):])
            return {"Lamda": r"\Lambda", "lamda": r"\lambda"}.get(word, "\\" + word)
    return None


def _is_math(token: str, following: str) -> bool:
    core = token.strip(".,;:")
    if not core:
        return False
    if _IDENTIFIER.fullmatch(core.strip("()[]")):
        return False
    if any(ch in _MATH_CHARS or _greek(ch) for ch in core):
        return True
    bare = core.strip("()[]{}")
    if bare in ("a", "A"):  # the article, unless it is a symbol being defined ("a = concentration1")
        return following.startswith("=")
    if re.fullmatch(r"[A-Za-z]|[0-9]+[A-Za-z]?", bare):
        return True
    if core == "-" or re.match(r"[(\[]*[A-Z]\[", core):  # a minus between formulas; E[log x]
        return True
    head = re.match(r"[(\[]*([A-Za-z]+)\(", core)
    if head and (len(head.group(1)) == 1 or head.group(1) in _FUNCTIONS or head.group(1) in _OPERATORS):
        return True
    return token in _FUNCTIONS and bool(following) and _is_math(following, "")


def tex_text(sentence: str) -> str:
    """``sentence`` as LaTeX running text: words escaped, formulas as inline math, ````code````
    as typewriter text."""
    parts = re.split(r"``(.*?)``", sentence)
    return "".join(rf"\texttt{{{_escape(p)}}}" if n % 2 else _sentence(p) for n, p in enumerate(parts))


def _sentence(sentence: str) -> str:
    tokens = sentence.split()
    kinds = [_is_math(t, tokens[n + 1] if n + 1 < len(tokens) else "") for n, t in enumerate(tokens)]
    out, n = [], 0
    while n < len(tokens):
        if not kinds[n]:
            out.append(_words(tokens[n]))
            n += 1
            continue
        end = n
        while end + 1 < len(tokens) and kinds[end + 1] and not tokens[end].endswith((":", ";")):
            end += 1
        run = " ".join(tokens[n:end + 1])
        tail = re.search(r"[.,;:]*$", run).group()
        run = run[: len(run) - len(tail)] if tail else run
        opening = "(" if run.startswith("(") and run.count("(") > run.count(")") else ""  # "(0 log 0 = 0 kept …"
        closing = ")" if run.endswith(")") and run.count(")") > run.count("(") else ""   # "… indexed like x)"
        run = run[len(opening): len(run) - len(closing)]
        out.append(f"{opening}${_math(run)}${closing}{tail}")
        n = end + 1
    return (" " if sentence[:1].isspace() else "") + " ".join(out) + (" " if sentence[-1:].isspace() else "")


def _words(token: str) -> str:
    core = token.strip(".,;:()")
    if _IDENTIFIER.fullmatch(core) and "_" in core:
        return token.replace(core, rf"\texttt{{{_escape(core)}}}")
    return _escape(token)


def _escape(text: str) -> str:
    return "".join(_TEXT.get(ch) or (ch if ord(ch) < 128 else _greek_text(ch)) for ch in text)


def _greek_text(ch: str) -> str:
    g = _greek(ch)
    return f"${g}$" if g else _SYMBOLS.get(ch, "?").join("$$") if ch in _SYMBOLS else "?"


def _math(run: str) -> str:
    """One formula of a sentence in TeX math (without the dollars)."""
    out, n = [], 0
    while n < len(run):
        ch = run[n]
        word = re.match(r"[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)*", run[n:])
        if word and (n == 0 or not run[n - 1].isalnum() and run[n - 1] not in "_^"):
            w = word.group()
            if _IDENTIFIER.fullmatch(w):
                out.append(rf"\mathtt{{{w.replace('_', chr(92) + '_')}}}")
            elif w in _FUNCTIONS:
                out.append(_FUNCTIONS[w] + " ")
            elif w in _OPERATORS:
                out.append(rf"\operatorname{{{w}}}")
            elif "_" in w:  # f_i, δ_ij: a symbol with a subscript
                base, sub = w.split("_", 1)
                out.append(f"{base}_{{{sub}}}")
            elif len(w) > 1 and not re.fullmatch(r"[A-Z]?[0-9]*", w):  # a word inside a formula: e(probs)
                out.append(rf"\mathrm{{{w}}}")
            else:
                out.append(w)
            n += len(w)
            continue
        if ch in "_^":
            out.append(ch)
            n += 1
            if n < len(run) and run[n] in "({":  # u^(n−1), π_{K−1}: a group
                depth, start = 0, n
                while n < len(run):
                    depth += run[n] in "({"
                    depth -= run[n] in ")}"
                    n += 1
                    if depth == 0:
                        break
                out.append("{" + _math(run[start + 1:n - 1]) + "}")
            else:
                sub = re.match(r"[A-Za-z0-9]+|.", run[n:]).group() if n < len(run) else ""
                out.append("{" + (sub if sub.isalnum() else _math(sub)) + "}")  # δ_ij: the indices i, j
                n += len(sub)
            continue
        if run.startswith(" | ", n):
            out.append(r" \mid ")
            n += 3
            continue
        if ch == "Σ":
            out.append(r"\sum" if run[n + 1:n + 2] == "_" else r"\Sigma ")
        elif ch in "{}":
            out.append("\\" + ch)
        elif _greek(ch):
            out.append(_greek(ch) + " ")
        elif ch in _SYMBOLS:
            out.append(_SYMBOLS[ch])
        else:
            out.append(ch if ord(ch) < 128 else "?")
        n += 1
    return "".join(out).replace("  ", " ").strip()
