"""Beyond one machine: Dask arrays (a LocalCluster too) and the out-of-core .npy command."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import symelig
import symelig.dask  # noqa: F401  (the submodule, imported on demand like numpy.linalg)
from symelig import outofcore
from symelig.cli import main

da = pytest.importorskip("dask.array")


def _logits_data(rows=4000, k=50, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, k, size=rows), rng.normal(scale=3, size=(rows, k))


def test_dask_matches_in_memory_over_many_chunks():
    d = symelig.derive("categorical", "logits")
    x, z = _logits_data()
    result = symelig.dask.eligibility(d, da.from_array(x, chunks=500), logits=da.from_array(z, chunks=(500, 10)))
    assert result["logits"].numblocks[0] == 8
    np.testing.assert_allclose(result["logits"].compute(), d.eligibility(x, logits=z)["logits"], rtol=1e-13)
    np.testing.assert_allclose(symelig.dask.log_prob(d, da.from_array(x, chunks=500), logits=z).compute(),
                               d.log_prob(x, logits=z), rtol=1e-13)
    normal = symelig.derive("normal", "log_scale")
    rng = np.random.default_rng(1)
    args = {"x": rng.normal(size=1000), "loc": rng.normal(size=1000), "log_scale": rng.normal(size=1000)}
    lazy = symelig.dask.eligibility(normal, **{n: da.from_array(v, chunks=250) for n, v in args.items()})
    for name, value in normal.eligibility(**args).items():
        np.testing.assert_allclose(lazy[name].compute(), value, rtol=1e-13)


def test_dask_on_a_local_cluster():
    distributed = pytest.importorskip("dask.distributed")
    d = symelig.derive("multinomial", "logits")
    rng = np.random.default_rng(2)
    z = rng.normal(size=(800, 6))
    x = rng.multinomial(5, np.full(6, 1 / 6), size=800)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster):
        lazy = symelig.dask.eligibility(d, da.from_array(x, chunks=(100, 6)), total_count=da.full(800, 5, chunks=100),
                                        logits=da.from_array(z, chunks=(100, 6)))
        assert lazy["logits"].numblocks[0] >= 4
        computed = lazy["logits"].compute()
    np.testing.assert_allclose(computed, d.eligibility(x, total_count=5, logits=z)["logits"], rtol=1e-13)


def test_out_of_core_file_four_times_the_memory_limit(tmp_path, capsys):
    x, z = _logits_data(rows=20000, k=50)
    data, out = tmp_path / "in", tmp_path / "out"
    data.mkdir()
    out.mkdir()
    np.save(data / "x.npy", x)
    np.save(data / "logits.npy", z)
    limit = z.nbytes // 4
    with pytest.raises(SystemExit) as done:
        main(["eval-files", "categorical", "--param", "logits", "-i", str(data), "-o", str(out), "--memory-limit", str(limit)])
    assert done.value.code == 0, capsys.readouterr().err
    d = symelig.derive("categorical", "logits")
    # the block loop itself, measured without the CLI's imports: numpy's peak stays under the limit
    scratch = tmp_path / "again"
    scratch.mkdir()
    tracemalloc.start()
    outofcore.run(d, data, scratch, limit)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < limit, f"peak memory {peak} above the limit {limit}"
    np.testing.assert_allclose(np.load(out / "logits.npy"), d.eligibility(x, logits=z)["logits"], rtol=1e-13)
    np.testing.assert_allclose(np.load(out / "log_prob.npy"), d.log_prob(x, logits=z), rtol=1e-13)
    assert sorted(p.name for p in out.iterdir()) == ["log_prob.npy", "logits.npy"]


def test_out_of_core_errors_leave_nothing_behind(tmp_path, capsys):
    data, out = tmp_path / "in", tmp_path / "out"
    data.mkdir()
    out.mkdir()
    np.save(data / "x.npy", np.array([0, 1, 5]))
    np.save(data / "logits.npy", np.zeros((3, 4)))
    with pytest.raises(SystemExit) as done:
        main(["eval-files", "categorical", "--param", "logits", "-i", str(data), "-o", str(out)])
    err = capsys.readouterr().err
    assert done.value.code == 2 and "category index" in err and list(out.iterdir()) == []
    with pytest.raises(SystemExit) as done:
        main(["eval-files", "categorical", "--param", "probs", "-i", str(data), "-o", str(out)])
    assert done.value.code == 2 and "probs.npy is missing" in capsys.readouterr().err
    with pytest.raises(symelig.SymeligError, match="not a size"):
        outofcore.parse_size("lots")


def test_out_of_core_shapes_and_refusals(tmp_path, capsys):
    rng = np.random.default_rng(3)
    data, out = tmp_path / "in", tmp_path / "out"
    data.mkdir()
    out.mkdir()
    x, z = rng.integers(0, 5, size=(40, 3)), rng.normal(size=(40, 3, 5))  # a 2-D batch
    np.save(data / "x.npy", x)
    np.save(data / "logits.npy", z)
    d = symelig.derive("categorical", "logits")
    outofcore.run(d, data, out, 10_000)
    np.testing.assert_allclose(np.load(out / "log_prob.npy"), d.log_prob(x, logits=z), rtol=1e-13)
    np.save(data / "logits.npy", z[0, 0])  # one logits vector shared by every row
    outofcore.run(d, data, out, 10_000)
    np.testing.assert_allclose(np.load(out / "logits.npy"), d.eligibility(x, logits=z[0, 0])["logits"], rtol=1e-13)
    for argv, message in [
        (["-i", str(data), "-o", str(data)], "another folder"),
        (["-i", str(data), "-o", str(out), "--memory-limit", "nan"], "not a size"),
        (["-i", str(data), "-o", str(out), "--memory-limit", "1e400"], "not a size"),
    ]:
        with pytest.raises(SystemExit) as done:
            main(["eval-files", "categorical", "--param", "logits", *argv])
        err = capsys.readouterr().err
        assert done.value.code == 2 and message in err and err.count("\n") == 1
    np.save(data / "x.npy", np.zeros(0, dtype=int))
    with pytest.raises(symelig.SymeligError, match="at least one row"):
        outofcore.run(d, data, out, 10_000)
