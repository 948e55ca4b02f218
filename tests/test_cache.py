"""The CLI's on-disk cache of rendered derivations: same answers, safe to delete, safe under
concurrent runs, never in the way."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from symelig import cache
from symelig.cli import main


def run(capsys, *argv):
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("SYMELIG_CACHE_DIR", str(folder))
    return folder


def test_second_run_is_served_from_the_cache_with_the_same_text(capsys, cache_dir, monkeypatch):
    code, first, _ = run(capsys, "derive", "categorical", "--param", "probs", "-f", "latex")
    assert code == 0 and len(list(cache_dir.iterdir())) == 1
    import symelig.cli

    def no_derivation(*args):
        raise AssertionError("derived again instead of reading the cache")

    monkeypatch.setattr(symelig.cli, "_derived", no_derivation)
    code, second, _ = run(capsys, "derive", "categorical", "--param", "probs", "-f", "latex")
    assert code == 0 and second == first


def test_requests_do_not_share_entries(capsys, cache_dir):
    outputs = {fmt: run(capsys, "derive", "categorical", "-f", fmt)[1] for fmt in ("text", "latex", "json")}
    assert len(set(outputs.values())) == 3 and len(list(cache_dir.iterdir())) == 3


def test_deleted_or_corrupted_entries_are_recomputed(capsys, cache_dir):
    _, expected, _ = run(capsys, "derive", "normal", "--param", "scale")
    (entry,) = cache_dir.iterdir()
    entry.write_bytes(b"\xff\xfe not utf-8")
    assert run(capsys, "derive", "normal", "--param", "scale")[1] == expected  # recomputed, no crash
    for path in cache_dir.iterdir():
        path.unlink()
    cache_dir.rmdir()
    assert run(capsys, "derive", "normal", "--param", "scale")[1] == expected


def test_an_unwritable_cache_is_skipped(capsys, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("SYMELIG_CACHE_DIR", str(blocker / "cache"))
    code, out, err = run(capsys, "derive", "categorical")
    assert code == 0 and "δ" in out and err == ""
    monkeypatch.setenv("SYMELIG_CACHE_DIR", "off")
    assert cache.folder() is None and run(capsys, "derive", "categorical")[1] == out


def test_source_changes_change_the_key(monkeypatch):
    request = ("derive", "categorical", "probs", "text", False, None)
    before = cache._path(request)
    cache._fingerprint.cache_clear()
    import symelig

    monkeypatch.setattr(symelig, "__version__", "9.9.9")
    try:
        assert cache._path(request) != before
    finally:
        cache._fingerprint.cache_clear()


def test_concurrent_first_runs_agree(tmp_path):
    """Several processes fill one empty cache at once: every one prints the whole answer and the
    cache holds one whole entry."""
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "SYMELIG_CACHE_DIR": str(tmp_path / "cache")}
    argv = [sys.executable, "-m", "symelig", "derive", "multinomial", "--param", "logits", "-f", "latex"]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(4)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len({out for out, _ in outputs}) == 1 and all(err == "" for _, err in outputs)
    entries = list((tmp_path / "cache").iterdir())
    assert len(entries) == 1 and entries[0].read_text() == outputs[0][0]
