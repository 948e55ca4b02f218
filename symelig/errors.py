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
