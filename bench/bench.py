"""``make bench``: generated eligibility kernels against what users would otherwise run.

For every row (entry × shape × dtype) the candidates are timed interleaved, in a shuffled order
per repetition, and reported as medians and as ratios to the generated kernel measured in the
same run: the careful hand-written numpy reference (bench/references.py), torch.distributions
autograd and torch's fused-op autograd (where torch is installed), the numba backend's kernel
(where numba is installed), and a copy of an output-sized array (the memory-bandwidth floor).
It also reports the generated kernel's peak extra memory in output-sized arrays, the numba
kernels' compile time (first call, cold and from the disk cache), the derivation's cost in K,
and the CLI's cold start.

    python bench/bench.py [--quick] [--out bench/results]
"""
from __future__ import annotations

import os

# torch's OpenMP threads otherwise spin for a while after each call and take the two cores from
# whatever runs next in the interleaved schedule (numpy's block threads included); passive
# waiting makes the candidates independent of their order.  Set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import platform
import random
import statistics
import subprocess
import sys
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ranking  # noqa: E402
import references  # noqa: E402

import symelig  # noqa: E402

VECTOR_SHAPES = [(4096, 1000), (65536, 16), (256, 100000)]
SCALAR_SHAPES = [(1_000_000,)]
MIXTURE_SHAPES = [(1_000_000, 8)]  # batch × components: one real x per row
ROWS = [
    (("categorical", "logits"), VECTOR_SHAPES),
    (("categorical", "probs"), VECTOR_SHAPES),
    (("multinomial", "logits"), VECTOR_SHAPES),
    (("normal", "scale"), SCALAR_SHAPES),
    (("bernoulli", "logits"), SCALAR_SHAPES),
    (("normal_mixture", "log_scale"), MIXTURE_SHAPES),
]


def inputs(entry, shape, dtype, rng):
    family, param = entry
    if family in ("categorical", "multinomial"):
        batch, k = shape
        z = rng.normal(scale=3.0, size=shape).astype(dtype)
        if family == "categorical":
            x = rng.integers(0, k, size=batch)
            return {"x": x, param: z if param == "logits" else np.exp(z).astype(dtype)}
        n = 20
        x = rng.multinomial(n, np.full(k, 1 / k), size=batch).astype(dtype)
        return {"x": x, "total_count": np.full(batch, n, dtype), "logits": z}
    if family == "normal_mixture":
        batch, k = shape
        return {"x": rng.normal(scale=3.0, size=batch).astype(dtype), "logits": rng.normal(size=shape).astype(dtype),
                "loc": rng.normal(scale=3.0, size=shape).astype(dtype), "log_scale": rng.normal(scale=0.5, size=shape).astype(dtype)}
    if family == "normal":
        return {"x": rng.normal(size=shape).astype(dtype), "loc": rng.normal(size=shape).astype(dtype),
                "scale": rng.uniform(0.5, 2, size=shape).astype(dtype)}
    return {"x": rng.integers(0, 2, size=shape).astype(dtype), "logits": rng.normal(scale=3, size=shape).astype(dtype)}


def time_interleaved(candidates: dict, budget: float, min_reps: int = 7, max_reps: int = 50) -> dict:
    """Median seconds per call of each candidate; one call each per repetition, shuffled order."""
    times = {name: [] for name in candidates}
    for fn in candidates.values():  # warm-up: imports, caches, first-touch page faults
        fn()
    start = time.perf_counter()
    reps = 0
    while reps < min_reps or (time.perf_counter() - start < budget and reps < max_reps):
        order = list(candidates.items())
        random.shuffle(order)
        for name, fn in order:
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
        reps += 1
    return {name: statistics.median(ts) for name, ts in times.items()}


def peak_extra_memory(fn, output_bytes: int) -> float:
    """Peak numpy allocation during one call, in output-sized arrays (outputs included)."""
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / output_bytes


# Rows whose arrays exceed this many bytes run in a fresh process: after a few 100 MB rows the
# heap and transparent huge pages leave the next rows' first-touch page faults slower, by up to
# 1.6× for whichever candidate happens to allocate then (seen as 117 ms against 73 ms alone).
_OWN_PROCESS_BYTES = 50 * 2**20


def kernel_rows(quick: bool, torch) -> list:
    rows = []
    for entry, shapes in ROWS:
        for shape in shapes[:1] if quick else shapes:
            for dtype in (np.float64, np.float32):
                if np.prod(shape) * np.dtype(dtype).itemsize > _OWN_PROCESS_BYTES:
                    spec = json.dumps([list(entry), list(shape), np.dtype(dtype).name, quick])
                    # stdout carries the row; stderr (a failure's traceback) goes to the terminal
                    run = subprocess.run([sys.executable, __file__, "--row", spec], check=True, stdout=subprocess.PIPE, text=True)
                    rows.append(json.loads(run.stdout.strip().splitlines()[-1]))
                else:
                    rows.append(kernel_row(entry, shape, dtype, quick, torch))
                print(_row_line(rows[-1]), flush=True)
    return rows


def row_rng(entry, shape, dtype):
    """The same inputs for a row whichever process or column times it."""
    return np.random.default_rng(zlib.crc32(repr((tuple(entry), tuple(shape), np.dtype(dtype).name)).encode()))


def _numba():
    try:
        import numba

        return numba
    except ImportError:
        return None


def kernel_row(entry, shape, dtype, quick: bool, torch) -> dict:
    """One row: every candidate on the same inputs, timed interleaved."""
    rng = row_rng(entry, shape, dtype)
    torch_refs = references.torch_references(torch) if torch else {}
    kernel = symelig.derive(*entry).kernels.eligibility
    hand = references.NUMPY[entry]
    args = inputs(entry, shape, dtype, rng)
    out = kernel(**args)
    expected = hand(**args)
    for n in out:  # the reference must compute the same thing, or the race is void
        np.testing.assert_allclose(out[n], expected[n], rtol=1e-3 if dtype == np.float32 else 1e-9, atol=1e-4)
    output_bytes = sum(v.nbytes for v in out.values())
    floor_src = np.ones(output_bytes // np.dtype(dtype).itemsize, dtype)
    floor_dst = np.empty_like(floor_src)
    candidates = {
        "generated": lambda: kernel(**args),
        "hand numpy": lambda: hand(**args),
        "copy (floor)": lambda: np.copyto(floor_dst, floor_src),
    }
    first_call = None
    if _numba():
        compiled = symelig.derive(*entry, backend="numba").numba_kernels.eligibility
        start = time.perf_counter()
        got = compiled(**args)  # compiles for this dtype, or loads from the disk cache (see compile_rows)
        first_call = time.perf_counter() - start
        for n in out:
            np.testing.assert_allclose(got[n], out[n], rtol=1e-3 if dtype == np.float32 else 1e-9, atol=1e-4)
        del got
        candidates["numba"] = lambda: compiled(**args)
    del out, expected
    if entry in torch_refs:
        targs = {n: torch.from_numpy(np.ascontiguousarray(v)) for n, v in args.items()}
        if entry[0] == "categorical":
            targs["x"] = targs["x"].long()
        dist, fused = torch_refs[entry]
        candidates["torch.distributions"] = lambda: dist(**targs)
        candidates["torch fused op"] = lambda: fused(**targs)
        candidates["torch fused, 1 thread"] = lambda: _one_thread(torch, fused, targs)
        nograd = references.torch_nograd(torch)[entry]
        torch_kernel = symelig.derive(*entry).array_api_kernels.eligibility
        candidates["symelig on torch"] = lambda: torch_kernel(**targs)
        candidates["torch no-grad hand"] = lambda: nograd(**targs)
    medians = time_interleaved(candidates, budget=1.0 if quick else 2.0)
    return {
        "entry": f"{entry[0]} {entry[1]}",
        "shape": "×".join(map(str, shape)),
        "dtype": np.dtype(dtype).name,
        "ms": {n: round(t * 1e3, 3) for n, t in medians.items()},
        "ratio_to_generated": {n: round(t / medians["generated"], 2) for n, t in medians.items()},
        "peak_memory_outputs": round(peak_extra_memory(lambda: kernel(**args), output_bytes), 2),
        "numba_first_call_s": None if first_call is None else round(first_call, 3),
    }


_COMPILE_PROBE = """
import json, sys, time, numpy as np
sys.path.insert(0, {bench!r})
import bench, symelig
entry, dtype = tuple({entry!r}), np.dtype({dtype!r})
shape = (8, 5) if entry[0] in ("categorical", "multinomial", "normal_mixture") else (8,)
args = bench.inputs(entry, shape, dtype, np.random.default_rng(0))
start = time.perf_counter()
kernels = symelig.derive(*entry, backend="numba").numba_kernels  # derivation and module source
ready = time.perf_counter()
kernels.eligibility(**args)
print(json.dumps([ready - start, time.perf_counter() - ready]))
"""


def compile_rows(quick: bool) -> list:
    """The numba eligibility kernel's first call in a fresh process: cold (compiled, into an empty
    cache folder) and warm (the next process, loading the compiled kernel from that folder)."""
    import tempfile

    rows = []
    for entry, _ in ROWS:
        for dtype in (np.float64,) if quick else (np.float64, np.float32):
            with tempfile.TemporaryDirectory() as folder:
                env = {**os.environ, "SYMELIG_CACHE_DIR": folder}
                code = _COMPILE_PROBE.format(bench=str(Path(__file__).resolve().parent), entry=list(entry), dtype=np.dtype(dtype).name)
                cold, warm = (json.loads(subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True,
                                                        text=True).stdout) for _ in range(2))
            rows.append({"entry": f"{entry[0]} {entry[1]}", "dtype": np.dtype(dtype).name, "compile_s": round(cold[1], 2),
                         "cached_s": round(warm[1], 3), "source_s": round(cold[0], 2)})
            print(f"numba compile: {rows[-1]}", flush=True)
    return rows


def _torch():
    try:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        return torch
    except ImportError:
        return None


def jax_rows(rows: list, quick: bool) -> str:
    """JAX (jit) timings, after all other rows: XLA's CPU thread pool keeps spinning once it has
    run, which would slow whatever is interleaved with it.  Added to the rows as their own column."""
    try:
        import jax
    except ImportError:
        return "not installed"
    jax.config.update("jax_enable_x64", True)
    index = 0
    for entry, shapes in ROWS:
        jitted = jax.jit(symelig.derive(*entry).array_api_kernels.eligibility)
        for shape in shapes[:1] if quick else shapes:
            for dtype in (np.float64, np.float32):
                args = inputs(entry, shape, dtype, row_rng(entry, shape, dtype))
                jargs = {n: jax.numpy.asarray(v) for n, v in args.items()}
                median = time_interleaved({"jax": lambda: jax.block_until_ready(jitted(**jargs))}, budget=1.0)["jax"]
                row = rows[index]
                row["ms"]["symelig on jax (jit)"] = round(median * 1e3, 3)
                row["ratio_to_generated"]["symelig on jax (jit)"] = round(median * 1e3 / row["ms"]["generated"], 2)
                index += 1
    return jax.__version__


def derivation_rows(quick: bool) -> dict:
    """Symbolic-K derivation time (no K in it) and --k N expansion times."""
    from symelig.engine import derive_symbolic
    from symelig.expand import expand
    from symelig.family import lookup

    from sympy.core.cache import clear_cache

    family, parametrization = lookup("categorical", "logits")

    def cold_derivation():  # SymPy memoizes; clear it so every run does the whole work
        clear_cache()
        derive_symbolic(family, parametrization)

    symbolic = statistics.median(_seconds(cold_derivation) for _ in range(5))
    d = derive_symbolic(family, parametrization)
    # The kernel built from the symbolic derivation is evaluated at several K: one derivation serves all.
    kernel = symelig.derive("categorical", "logits").kernels.eligibility
    per_k = {}
    for k in (4, 16, 64, 1024):
        z = np.zeros((8, k))
        per_k[k] = round(statistics.median(_seconds(lambda: kernel(np.zeros(8, int), z)) for _ in range(20)) * 1e6, 1)
    expansion = {n: round(_seconds(lambda: expand(d, n)), 2) for n in ((4, 16) if quick else (4, 16, 64))}
    return {"derive_symbolic_K_s": round(symbolic, 3), "kernel_us_at_K": per_k, "expand_s": expansion}


def cli_rows(reps: int) -> dict:
    """Cold-start wall time of fresh processes (median), with the derivation cache cold and warm."""
    import tempfile

    exe = [sys.executable, "-m", "symelig"]
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "SYMELIG_CACHE_DIR": cache}
        first = _seconds(lambda: subprocess.run([*exe, "derive", "categorical", "--param", "probs"], env=env, check=True, capture_output=True))
        derive = [_seconds(lambda: subprocess.run([*exe, "derive", "categorical", "--param", "probs"], env=env, check=True, capture_output=True)) for _ in range(reps)]
        help_ = [_seconds(lambda: subprocess.run([*exe, "--help"], env=env, check=True, capture_output=True)) for _ in range(reps)]
    return {"derive_first_run_s": round(first, 3), "derive_cached_median_s": round(statistics.median(derive), 3),
            "help_median_s": round(statistics.median(help_), 3)}


def _one_thread(torch, fn, args):
    """torch on one core, as numpy runs: separates the algorithm from torch's intra-op threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn(**args)
    finally:
        torch.set_num_threads(threads)


def _seconds(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


COLUMNS = ["generated", "numba", "hand numpy", "torch.distributions", "torch fused op", "torch fused, 1 thread",
           "symelig on torch", "torch no-grad hand", "symelig on jax (jit)", "copy (floor)"]


def _row_line(r) -> str:
    cells = [f"{r['ms'][c]:.2f} ms ({r['ratio_to_generated'][c]:.2f}×)" if c in r["ms"] else "-" for c in COLUMNS]
    return f"| {r['entry']} | {r['shape']} | {r['dtype']} | " + " | ".join(cells) + f" | {r['peak_memory_outputs']} |"


def compact_rows(result) -> list:
    """float64 / float32 side by side, as ratios to the generated kernel (the README's table)."""
    rows, by_key = [], {}
    for r in result["kernels"]:
        by_key.setdefault((r["entry"], r["shape"]), {})[r["dtype"]] = r["ratio_to_generated"]
    for (entry, shape), ratios in by_key.items():
        cells = []
        for column in ("hand numpy", "torch.distributions", "torch fused op", "torch fused, 1 thread"):
            pair = [ratios.get(d, {}).get(column) for d in ("float64", "float32")]
            cells.append(" / ".join(f"{v:.2f}×" for v in pair) if None not in pair else "-")
        rows.append(f"| {entry} | {shape} | " + " | ".join(cells) + " |")
    return rows


def numba_rows(result) -> list:
    """The numba kernel against the generated numpy kernel, torch's fused op and the copy floor,
    as speed-ups (time of the other / numba time; > 1: numba is faster) and numba time / copy."""
    rows, by_key = [], {}
    for r in result["kernels"]:
        if "numba" in r["ms"]:
            by_key.setdefault((r["entry"], r["shape"]), {})[r["dtype"]] = r["ms"]
    for (entry, shape), ms in by_key.items():
        cells = []
        for other, inverse in (("generated", False), ("torch fused op", False), ("copy (floor)", True)):
            pair = [(m[other] / m["numba"] if not inverse else m["numba"] / m[other]) if other in m else None
                    for m in (ms.get("float64", {}), ms.get("float32", {}))]
            cells.append(" / ".join("-" if v is None else f"{v:.2f}×" for v in pair))
        times = " / ".join(f"{m['numba']:.2f}" if "numba" in m else "-" for m in (ms.get("float64", {}), ms.get("float32", {})))
        rows.append(f"| {entry} | {shape} | {times} | " + " | ".join(cells) + " |")
    return rows


def markdown(result) -> str:
    head = "| entry | shape | dtype | " + " | ".join(COLUMNS) + " | peak memory (outputs) |"
    lines = [
        f"Machine: {result['machine']}; numpy {result['numpy']}, torch {result['torch']}. "
        "Medians of interleaved runs; (r×) = time / generated time, so r > 1 means the generated kernel is faster. "
        f"torch uses {result['torch_threads']} threads unless the column says 1 thread (OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}); "
        "the generated numpy kernels split large compute-bound batches into one block per core. "
        "Peak memory: the largest numpy allocation during one generated call, in output-sized arrays (the outputs included).",
        "",
        head,
        "|" + "---|" * (head.count("|") - 1),
        *(_row_line(r) for r in result["kernels"]),
        "",
    ]
    d = result["derivation"]
    lines += [
        f"Derivation of categorical logits with symbolic K: {d['derive_symbolic_K_s']} s, once for every K; "
        "its kernel at K = " + ", ".join(f"{k}: {us} µs" for k, us in d["kernel_us_at_K"].items()) + " (batch 8).",
        "`--k N` expansion (every component separately): " + ", ".join(f"N = {n}: {s} s" for n, s in d["expand_s"].items()) + ".",
        "",
    ]
    lines += ["Ratios to the generated kernel, float64 / float32:", "",
              "| entry | shape | hand numpy | torch.distributions | torch fused op | torch fused, 1 thread |",
              "|---|---|---|---|---|---|", *compact_rows(result), ""]
    if result.get("numba_compile"):
        lines += [f"numba backend (numba {result['numba']}, {result['numba_threads']} threads), float64 / float32: its time, and "
                  "speed-ups = other time / numba time (> 1: numba is faster); against the copy floor, numba time / copy time:", "",
                  "| entry | shape | numba ms | over generated numpy | over torch fused op (2 threads) | numba / copy floor |",
                  "|---|---|---|---|---|---|", *numba_rows(result), "",
                  "numba compile time, the eligibility kernel's first call in a fresh process (not in the times above): "
                  "cold (compiled into an empty cache folder; the derivation and module source take another "
                  "`source` seconds before it) and from the disk cache (the next process):", "",
                  "| entry | dtype | cold compile s | from disk cache s | source s |", "|---|---|---|---|---|",
                  *(f"| {c['entry']} | {c['dtype']} | {c['compile_s']} | {c['cached_s']} | {c['source_s']} |" for c in result["numba_compile"]),
                  ""]
    if result.get("multivariate_normal"):
        lines += ["multivariate_normal `scale_tril` (a loc and a Cholesky factor per sample, batch × d), ratios = time / generated "
                  "numpy kernel (> 1: the generated kernel is faster):", "",
                  "| shape | dtype | generated ms | torch.distributions autograd | symelig on torch |", "|---|---|---|---|---|",
                  *(f"| {r['shape']} | {r['dtype']} | {r['ms']['generated']} | "
                    + " | ".join(f"{r['ms'][c]} ms ({r['ratio_to_generated'][c]}×)" if c in r["ms"] else "-"
                                 for c in ("torch.distributions", "symelig on torch")) + " |"
                    for r in result["multivariate_normal"]), ""]
    if result.get("token_policy"):
        lines += ["Token policy through the output layer (float32, T, V, d as shown): Σ A log π and its gradients "
                  "w.r.t. hidden and weight; peak resident memory beyond the inputs, each candidate in a fresh process:", "",
                  "| shape | candidate | median s (× autograd) | peak extra MB (× autograd) |", "|---|---|---|---|",
                  *(f"| {tuple(r['shape'])} | {r['candidate']} | {r['median_s']} ({r['time_ratio_to_autograd']}×) "
                    f"| {r['peak_extra_mb']} ({r['memory_ratio_to_autograd']}×) |" for r in result["token_policy"]), ""]
    lines += ranking.markdown(result.get("plackett_luce", []))
    c = result["cli"]
    lines.append(
        f"CLI cold start (fresh process): `symelig derive categorical --param probs` {c['derive_cached_median_s']} s median "
        f"({c['derive_first_run_s']} s on the very first run, which fills the cache); `symelig --help` {c['help_median_s']} s."
    )
    return "\n".join(lines) + "\n"


TOKEN_POLICY_SHAPE = (4096, 151936, 1024)  # tokens T, vocabulary V, hidden d: the target
TOKEN_POLICY_CANDIDATES = ("torch autograd", "symelig on numpy", "symelig on torch")


def token_policy_candidate(name: str, shape, reps: int) -> dict:
    """One candidate in this (fresh) process: float32 inputs, then one call whose growth of the
    peak resident memory is reported, then ``reps`` timed calls."""
    import resource

    import torch

    T, V, d = shape
    rng = np.random.default_rng(0)
    # float32 from the start: a float64 draw would raise the peak-memory mark above the calls'
    hidden = rng.standard_normal((T, d), dtype=np.float32)
    weight = rng.standard_normal((V, d), dtype=np.float32)
    weight *= np.float32(1 / np.sqrt(d))
    tokens, advantages = rng.integers(0, V, T), rng.normal(size=T).astype(np.float32)
    if name == "torch autograd":
        h, w, x, a = (torch.from_numpy(v) for v in (hidden, weight, tokens, advantages))

        def call():
            hg, wg = h.detach().requires_grad_(), w.detach().requires_grad_()
            objective = (a * torch.log_softmax(hg @ wg.T, -1).gather(1, x[:, None])[:, 0]).sum()
            objective.backward()
            return objective, hg.grad, wg.grad
    else:
        args = (hidden, weight, tokens, advantages)
        if name == "symelig on torch":
            args = tuple(torch.from_numpy(v) for v in args)
        from symelig import token_policy

        token_policy.derivation(), token_policy.linear_forms()  # derived (or loaded from the cache) before the memory mark

        def call():
            return symelig.token_policy_gradient(*args)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    call()
    peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    seconds = [_seconds(call) for _ in range(reps)]
    return {"candidate": name, "median_s": round(statistics.median(seconds), 3), "peak_extra_mb": round(peak_mb, 1)}


def token_policy_rows(shape, reps: int) -> list:
    """Each candidate in its own process (peak memory is per process), ratios to autograd."""
    rows = []
    for name in TOKEN_POLICY_CANDIDATES:
        spec = json.dumps([name, list(shape), reps])
        run = subprocess.run([sys.executable, __file__, "--token-policy-candidate", spec], check=True, stdout=subprocess.PIPE, text=True)
        rows.append(json.loads(run.stdout.strip().splitlines()[-1]))
    base = rows[0]
    for r in rows:
        r["shape"] = list(shape)
        r["time_ratio_to_autograd"] = round(r["median_s"] / base["median_s"], 3)
        r["memory_ratio_to_autograd"] = round(r["peak_extra_mb"] / base["peak_extra_mb"], 4) if base["peak_extra_mb"] else None
        print(f"| token policy {tuple(shape)} float32 | {r['candidate']} | {r['median_s']} s ({r['time_ratio_to_autograd']}×) "
              f"| {r['peak_extra_mb']} MB ({r['memory_ratio_to_autograd']}×) |", flush=True)
    return rows


MVN_DIMENSIONS = (4, 8, 16)
MVN_BATCH = 4096


def mvn_row(d: int, batch: int, dtype, quick: bool, torch) -> dict:
    """multivariate_normal scale_tril, a loc and a Cholesky factor per sample (a policy's output):
    the generated numpy kernel (triangular substitutions), the array API kernel on torch
    (torch.linalg.solve_triangular) and torch.distributions.MultivariateNormal autograd, timed
    interleaved on the same inputs; every candidate's result checked against the generated one."""
    rng = np.random.default_rng(zlib.crc32(repr(("multivariate_normal", d, batch, np.dtype(dtype).name)).encode()))
    L = np.tril(rng.normal(scale=0.3, size=(batch, d, d)))
    L[:, np.arange(d), np.arange(d)] = rng.uniform(0.5, 2.0, size=(batch, d))
    loc = rng.normal(size=(batch, d))
    x = loc + np.einsum("bij,bj->bi", L, rng.normal(size=(batch, d)))
    args = {"x": x.astype(dtype), "loc": loc.astype(dtype), "scale_tril": L.astype(dtype)}
    entry = symelig.derive("multivariate_normal", "scale_tril")
    kernel = entry.kernels.eligibility
    out = kernel(**args)
    candidates = {"generated": lambda: kernel(**args)}
    if torch is not None:
        from torch.distributions import MultivariateNormal

        targs = {n: torch.from_numpy(v) for n, v in args.items()}

        def autograd(x, loc, scale_tril):
            loc, scale_tril = loc.detach().requires_grad_(), scale_tril.detach().requires_grad_()
            MultivariateNormal(loc, scale_tril=scale_tril, validate_args=False).log_prob(x).sum().backward()
            return {"loc": loc.grad, "scale_tril": scale_tril.grad}

        on_torch = entry.array_api_kernels.eligibility
        tolerance = 1e-3 if dtype == np.float32 else 1e-9
        for fn in (autograd, on_torch):  # the race is void unless all compute the same thing
            got = fn(**targs)
            np.testing.assert_allclose(got["loc"].numpy(), out["loc"], rtol=tolerance, atol=tolerance)
            np.testing.assert_allclose(np.tril(got["scale_tril"].numpy()), out["scale_tril"], rtol=tolerance, atol=tolerance)
        candidates["torch.distributions"] = lambda: autograd(**targs)
        candidates["symelig on torch"] = lambda: on_torch(**targs)
    medians = time_interleaved(candidates, budget=1.0 if quick else 2.0)
    row = {"entry": "multivariate_normal scale_tril", "shape": f"{batch}×{d}", "dtype": np.dtype(dtype).name,
           "ms": {n: round(t * 1e3, 3) for n, t in medians.items()},
           "ratio_to_generated": {n: round(t / medians["generated"], 2) for n, t in medians.items()}}
    print(f"| {row['entry']} | {row['shape']} | {row['dtype']} | "
          + " | ".join(f"{n} {t} ms ({row['ratio_to_generated'][n]}×)" for n, t in row["ms"].items()) + " |", flush=True)
    return row


def mvn_rows(quick: bool, torch) -> list:
    return [mvn_row(d, MVN_BATCH, dtype, quick, torch) for d in MVN_DIMENSIONS for dtype in (np.float64, np.float32)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one shape per entry, shorter timing")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--row", help=argparse.SUPPRESS)  # one row in this process: JSON [entry, shape, dtype, quick]
    parser.add_argument("--token-policy", metavar="T,V,d", help="only the token-policy row, at this size (default: the issue's 4096,151936,1024)",
                        nargs="?", const=",".join(map(str, TOKEN_POLICY_SHAPE)))
    parser.add_argument("--token-policy-candidate", help=argparse.SUPPRESS)  # JSON [candidate, shape, reps]
    parser.add_argument("--mvn", action="store_true", help="only the multivariate_normal rows (d = 4, 8, 16, batch 4096)")
    parser.add_argument("--plackett-luce", metavar="B,K,k", help="only the Plackett–Luce row, at this size (default: the issue's 1024,1000,1000)",
                        nargs="?", const=",".join(map(str, ranking.SHAPE)))
    args = parser.parse_args()
    if args.mvn:
        mvn_rows(args.quick, _torch())
        return
    if args.plackett_luce:
        ranking.rows(_torch(), time_interleaved, tuple(int(v) for v in args.plackett_luce.split(",")))
        return
    if args.token_policy_candidate:
        name, shape, reps = json.loads(args.token_policy_candidate)
        print(json.dumps(token_policy_candidate(name, tuple(shape), reps)))
        return
    if args.token_policy:
        token_policy_rows(tuple(int(v) for v in args.token_policy.split(",")), reps=3)
        return
    torch = _torch()
    if args.row:
        entry, shape, dtype, quick = json.loads(args.row)
        print(json.dumps(kernel_row(tuple(entry), tuple(shape), np.dtype(dtype), quick, torch)))
        return
    numba = _numba()
    if numba:  # the rows' first calls compile into a cache folder of this run (reported by compile_rows)
        import tempfile

        import atexit
        import shutil

        os.environ["SYMELIG_CACHE_DIR"] = tempfile.mkdtemp(prefix="symelig-bench-")
        atexit.register(shutil.rmtree, os.environ["SYMELIG_CACHE_DIR"], ignore_errors=True)
    print("| entry | shape | dtype | " + " | ".join(COLUMNS) + " | peak memory (outputs) |")
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or platform.platform()}",
        "numpy": np.__version__,
        "torch": torch.__version__ if torch else "not installed",
        "torch_threads": torch.get_num_threads() if torch else 0,
        "numba": numba.__version__ if numba else "not installed",
        "numba_threads": numba.get_num_threads() if numba else 0,
        "kernels": kernel_rows(args.quick, torch),
        "numba_compile": compile_rows(args.quick) if numba else [],
        "derivation": derivation_rows(args.quick),
        "cli": cli_rows(3 if args.quick else 7),
        "multivariate_normal": mvn_rows(args.quick, torch),
        "token_policy": token_policy_rows((512, 8192, 256) if args.quick else TOKEN_POLICY_SHAPE, reps=3) if torch else [],
        "plackett_luce": ranking.rows(torch, time_interleaved, (256, 1000, 1000) if args.quick else ranking.SHAPE, args.quick) if torch else [],
    }
    result["jax"] = jax_rows(result["kernels"], args.quick)  # last: see jax_rows
    text = markdown(result)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text, encoding="utf-8")
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
