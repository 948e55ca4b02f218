"""The one error type users see.

Every problem caused by the user's input (an unknown family, a malformed number, a wrong
shape, a sample outside the support) raises :class:`SymeligError` with a one-line message
that names what is wrong and what is allowed.  The CLI prints that line and exits with 2.
"""


class SymeligError(ValueError):
    """Bad input, described in one line: what is wrong and what is allowed."""
