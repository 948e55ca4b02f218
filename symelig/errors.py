"""The one error type users see.

Every problem caused by the user's input (an unknown family, a malformed number, a wrong
shape, a sample outside the support) raises :class:`SymeligError` with a one-line message
that names what is wrong and what is allowed.  The CLI prints that line and exits with 2.
"""


class SymeligError(ValueError):
    """Bad input, described in one line: what is wrong and what is allowed."""


def first_failing(check, start: int, stop: int) -> int:
    """The first index in start…stop−1 where ``check(a, b)`` (raising SymeligError when any of
    a…b−1 is bad) fails, by bisection: rows are checked independently, so a range fails exactly
    when one of its rows does.  Callers re-check that one row to restate the error for it."""
    while stop - start > 1:
        middle = (start + stop) // 2
        try:
            check(start, middle)
            start = middle
        except SymeligError:
            stop = middle
    return start


def did_you_mean(word: str, choices) -> str:
    """" did you mean 'categorical'?" for a near miss (a typo, another letter case), else "":
    the hint that goes into an error listing ``choices``.  Options are compared without their
    leading dashes, which every option shares."""
    import difflib

    def key(name: str) -> str:
        return name.lower().lstrip("-")

    folded = {key(c): c for c in choices}
    close = [folded[key(word)]] if key(word) in folded else [
        folded[c] for c in difflib.get_close_matches(key(word), folded, n=1, cutoff=0.7)
    ]
    return f" did you mean {close[0]!r}?" if close else ""
