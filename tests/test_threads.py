"""First use from several threads at once: lazy loading must not expose half-built state."""
from __future__ import annotations

import inspect
import json
import subprocess
import sys

import numpy as np

import symelig

SCRIPT = r"""
import threading, symelig
start = threading.Barrier(8)
seen = []
def first_use(kind):
    start.wait()
    try:
        if kind == 0:
            seen.append(("catalog", len(symelig.catalog())))
        elif kind == 1:
            seen.append(("derive", symelig.derive("categorical", "probs").family))
        else:
            from symelig.family import families
            seen.append(("families", len(families())))
    except Exception as err:
        seen.append(("error", repr(err)))
threads = [threading.Thread(target=first_use, args=(n % 3,)) for n in range(8)]
for t in threads: t.start()
for t in threads: t.join()
import json; print(json.dumps(sorted(seen)))
"""


def test_first_use_of_the_catalog_from_eight_threads():
    """The registry was marked loaded before its imports finished: the other threads saw an
    empty or partial catalog, then `unknown family 'categorical'`.  Fresh interpreters, since
    this process has loaded the catalog already; several runs, since it is a race."""
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        seen = json.loads(out.stdout)
        full = sum(1 for e in symelig.catalog() if e.builtin)  # the test process adds lab families
        families = {v for k, v in seen if k == "families"}
        assert all(k != "error" for k, _ in seen), seen
        assert {v for k, v in seen if k == "catalog"} == {full}, seen
        assert len(families) == 1, seen


DEADLOCK_SCRIPT = r"""
import importlib, os, pkgutil, threading, time, symelig.family as family
import symelig.families as package
modules = [m.name for m in pkgutil.iter_modules(package.__path__)]
start = threading.Barrier(len(modules) + 2)
def load():
    start.wait()
    family.families()
def direct(name):
    start.wait()
    importlib.import_module("symelig.families." + name)
threads = [threading.Thread(target=load, daemon=True) for _ in range(2)]
threads += [threading.Thread(target=direct, args=(name,), daemon=True) for name in modules]
for t in threads: t.start()
deadline = time.monotonic() + 60  # a hang detector: the threads finish in well under a second
for t in threads: t.join(max(0.0, deadline - time.monotonic()))
stuck = sum(t.is_alive() for t in threads)
print(f"{stuck} threads stuck" if stuck else len(family.families()), flush=True)
os._exit(0)  # stuck daemon threads hold import locks: leave without waiting for them
"""


def test_importing_family_modules_while_the_catalog_loads_does_not_deadlock():
    """A thread importing one family module (holding its import lock; @register waited for the
    registry lock) while another loaded the catalog (holding the registry lock, waiting for that
    module's import) hung forever: 15 of 20 runs with one module."""
    full = len({e.family for e in symelig.catalog() if e.builtin})
    for _ in range(5):
        out = subprocess.run([sys.executable, "-c", DEADLOCK_SCRIPT], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == [str(full)], out.stdout


CONCURRENT_SCRIPT = r"""
import json, sys, threading
import numpy as np
import symelig
entries = json.loads(sys.argv[1])
start = threading.Barrier(len(entries))
results = {}
def work(family, param, point):
    start.wait()
    try:
        d = symelig.derive(family, param)
        f = d.fisher(**{k: np.asarray(v) for k, v in point.items()})
        f = f if isinstance(f, dict) else {"F": f}
        results[family + "/" + param] = [d.second_order.method, {k: np.asarray(v).tolist() for k, v in f.items()}]
    except Exception as err:
        results[family + "/" + param] = ["error", repr(err)]
threads = [threading.Thread(target=work, args=e) for e in entries]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(results))
"""

# one entry per expectation route: moments, Mellin, category sum, product moments, free of x
CONCURRENT = [
    ("normal", "scale", {"loc": 0.3, "scale": 1.7}),
    ("student_t", "scale", {"df": 4.5, "loc": -0.2, "scale": 0.8}),
    ("gumbel", "log_scale", {"loc": 1.0, "log_scale": -0.4}),
    ("weibull", "scale_concentration", {"scale": 2.0, "concentration": 1.5}),
    ("categorical", "logits", {"logits": [0.1, -1.0, 2.0]}),
    ("multinomial", "normalized_probs", {"total_count": 3, "normalized_probs": [0.5, 0.3, 0.2]}),
    ("dirichlet", "concentration", {"concentration": [0.5, 2.0, 3.0]}),
    ("gamma", "concentration_rate", {"concentration": 2.5, "rate": 0.7}),
]


def test_second_order_from_eight_threads_at_once_matches_one_thread():
    """First use of eight different entries' second order from eight threads in a fresh
    process: no exception, and every method and number equals the one-thread result."""
    out = subprocess.run([sys.executable, "-c", CONCURRENT_SCRIPT, json.dumps(CONCURRENT)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    for family, param, point in CONCURRENT:
        method, values = seen[f"{family}/{param}"]
        assert method != "error", values
        d = symelig.derive(family, param)
        expected = d.fisher(**{k: np.asarray(v) for k, v in point.items()})
        expected = expected if isinstance(expected, dict) else {"F": expected}
        assert method == d.second_order.method
        for key, value in expected.items():
            np.testing.assert_allclose(values[key], value, rtol=1e-12, atol=1e-300)


def test_each_generated_module_keeps_its_own_source():
    """Kernels were registered in linecache under (family, param, kind), which every custom
    log-density (and every --via of one family) shares: inspect and tracebacks of the first
    showed the second's code."""
    a = symelig.custom("-(x-m)**2/2", wrt=["m"])
    b = symelig.custom("-(x-m)**4/4 + log(m**2 + 1)", wrt=["m"])
    c = symelig.reparametrize("normal", "loc = u**3", wrt=["u"])
    e = symelig.reparametrize("normal", "loc = exp(u)", wrt=["u"])
    for d in (a, b, c, e):
        assert inspect.getsource(d.kernels.log_prob) in d.numpy_source
        assert inspect.getsource(d.kernels.eligibility) in d.numpy_source
