"""A worker process for tests whose way of failing is a hang.

A hang inside SymPy can sit in one C call (an exact 2**2**30) that holds the GIL, so a thread
with a timeout cannot stop it; a process can be killed.  ``Worker.ask(job)`` sends a job to a
spawned process and returns its answer, or fails the test when none comes within the budget
(the process is then killed and the next job starts a new one).

Jobs, each answered ("ok", value) | ("error", one-line message) | ("crash", traceback):
("parse", text, vector) · ("cli", argv) -> ("exit", (code, stdout, stderr)) ·
("custom", text, wrt) · ("via", family, via, wrt).
"""
from __future__ import annotations

import multiprocessing

BUDGET = 20.0
STARTUP = 60.0  # a fresh worker imports SymPy and symelig before its first answer


def names(vector: bool = False) -> dict:
    from sympy import IndexedBase, Symbol

    out = {"x": Symbol("x", real=True), "m": Symbol("m", real=True), "s": Symbol("s", positive=True),
           "tau": Symbol("tau", real=True)}
    if vector:
        out["z"] = IndexedBase("z", real=True)
    return out


def _answer(job):
    from symelig import user
    from symelig.parse import parse, unparse

    kind = job[0]
    if kind == "parse":
        return "ok", unparse(parse(job[1], names(job[2]), "--log-prob"))
    if kind == "custom":
        return "ok", user.custom(job[1], wrt=job[2], positive="s" if "s" in job[2].split(",") else ()).parameters
    if kind == "via":
        return "ok", user.reparametrize(job[1], job[2], wrt=job[3]).parameters
    if kind == "cli":
        import contextlib
        import io

        from symelig.cli import main

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(list(job[1]))
                code = 0
            except SystemExit as done:
                code = done.code
        return "exit", (code, out.getvalue(), err.getvalue())
    raise ValueError(f"unknown job {kind!r}")


def _serve(connection):
    import traceback

    from symelig import SymeligError

    while True:
        job = connection.recv()
        try:
            connection.send(_answer(job))
        except SymeligError as err:
            connection.send(("error", str(err)))
        except BaseException:  # noqa: BLE001 -- reported to the test as a crash
            connection.send(("crash", traceback.format_exc()))


class Worker:
    def __init__(self):
        self.process = None

    def ask(self, job, budget: float = BUDGET):
        extra = 0.0
        if self.process is None or not self.process.is_alive():
            context = multiprocessing.get_context("spawn")
            self.connection, child = context.Pipe()
            self.process = context.Process(target=_serve, args=(child,), daemon=True)
            self.process.start()
            extra = STARTUP
        self.connection.send(job)
        if not self.connection.poll(budget + extra):
            self.close()
            raise AssertionError(f"{job!r} gave neither a result nor an error within {budget:g} s")
        return self.connection.recv()

    def close(self):
        if self.process is not None:
            self.process.kill()
            self.process.join()
            self.process = None
