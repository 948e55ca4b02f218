"""Families with matrix parameters, derived in matrix form (see :mod:`symelig.matrix.normal`).

The catalog engine (:mod:`symelig.engine`) differentiates scalars and vectors of a symbolic
length K written with ``IndexedBase``; a d × d triangular parameter does not fit it.  These
families have their own derivation, printers and kernels, and join the catalog's commands
(``list``, ``derive``, ``eval``, ``export``, ``explain``, ``derivations/``) through the
functions here.
"""
from __future__ import annotations

from ..family import Entry

FAMILIES = ("multivariate_normal",)


def is_matrix_family(name) -> bool:
    return name in FAMILIES


def derive(family: str, param: str | None = None):
    """The :class:`~symelig.matrix.entry.MatrixEntry` of ``family`` in ``param``."""
    from .entry import entry

    return entry(param)


def entries() -> list:
    """Catalog-style rows (:class:`symelig.family.Entry`) for ``symelig list`` and the README."""
    from . import normal

    return [Entry(normal.NAME, p, names, (), normal.TORCH, normal.DOCS[p], normal.SUPPORT)
            for p, names in normal.PARAMETRIZATIONS.items()]
