"""The CLI's on-disk cache of rendered derivations: same answers, safe to delete, safe under
concurrent runs, never in the way."""
from __future__ import annotations

import os
import re
import stat
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
    import symelig.version

    monkeypatch.setattr(symelig.version, "__version__", "9.9.9")
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
    assert len(entries) == 1 and entries[0].read_text().partition("\n")[2] == outputs[0][0]


# --- Verified entries and a private folder (issue 12, item 6) ---------------------------------

TEXT = ("derive", "categorical", "probs", "text", False, None)  # `derive categorical --param probs`
MODULE = ("derive", "categorical", "probs", "numpy", False, None, 2)  # what `export` writes


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """What the two commands print and write with no cache at all."""
    import symelig

    d = symelig.derive("categorical", "probs")
    return d.text(1), d.full_numpy_source


def outputs(capsys, tmp_path, reference):
    """Run derive and export; both must give the reference, the module must import and work."""
    import importlib.util

    import numpy as np

    code, out, err = run(capsys, "derive", "categorical", "--param", "probs")
    assert code == 0 and out.rstrip("\n") == reference[0].rstrip("\n"), err
    module = tmp_path / "cat_probs.py"
    code, _, export_err = run(capsys, "export", "categorical", "--param", "probs", "-o", str(module))
    assert code == 0 and module.read_text(encoding="utf-8") == reference[1], export_err
    spec = importlib.util.spec_from_file_location("cat_probs", module)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    e = loaded.eligibility(np.array([0]), np.array([[0.5, 0.5]]))
    np.testing.assert_allclose(e["probs"], [[1.0, -1.0]])
    module.unlink()
    return err + export_err.replace(f"wrote {module}\n", "")


def split(data: bytes):
    """(header line, text) of an entry; (None, data) for one without a header."""
    first, _, rest = data.partition(b"\n")
    return (first, rest) if first.startswith(b"symelig-cache") else (None, data)


def forge(payload: bytes, key_of: bytes, version=b"1") -> bytes:
    """An entry with a hash that matches ``payload``: what anyone who can write the folder can make."""
    import hashlib

    header, _ = split(key_of)
    key = header.split()[2] if header else b"0" * 64
    return b"symelig-cache " + version + b" " + key + b" sha256=" + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


DAMAGE = {
    "empty": lambda own, other: b"",
    "truncated": lambda own, other: own[: len(own) // 2],
    "truncated header": lambda own, other: own[:10],
    "header only": lambda own, other: own.partition(b"\n")[0] + b"\n",
    "flipped text byte": lambda own, other: _flip(own, len(own) - 40),
    "flipped hash byte": lambda own, other: _flip(own, own.index(b"\n") - 3),
    "wrong version": lambda own, other: forge(split(own)[1], own, version=b"0"),
    "another entry's text": lambda own, other: split(other)[1],
    "another entry whole": lambda own, other: other,
    "planted code": lambda own, other: b"import os\nos.environ['PLANTED'] = '1'\n",
    "undecodable": lambda own, other: forge(b"\xff\xfe" + split(own)[1], own),
    "bom": lambda own, other: b"\xef\xbb\xbf" + own,
}


def _entries(cache_dir):
    return {request: cache._path(request) for request in (TEXT, MODULE)}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_entries_are_recomputed_and_overwritten(capsys, cache_dir, tmp_path, reference, damage):
    assert outputs(capsys, tmp_path, reference) == ""
    entries = _entries(cache_dir)
    original = {r: p.read_bytes() for r, p in entries.items()}
    (own_text, own_module) = original[TEXT], original[MODULE]
    entries[TEXT].write_bytes(DAMAGE[damage](own_text, own_module))
    entries[MODULE].write_bytes(DAMAGE[damage](own_module, own_text))
    assert outputs(capsys, tmp_path, reference) == ""
    for request, path in entries.items():  # the damaged entries were replaced by good ones
        assert path.read_bytes() == original[request] and cache.get(request) is not None


@pytest.mark.parametrize("kind", ["symlink", "writable by others", "folder"])
def test_entries_that_are_not_private_regular_files_are_misses(capsys, cache_dir, tmp_path, reference, kind):
    assert outputs(capsys, tmp_path, reference) == ""
    entries = _entries(cache_dir)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    original = {request: path.read_bytes() for request, path in entries.items()}
    for request, path in entries.items():
        other = original[MODULE if request == TEXT else TEXT]
        forged = forge(split(other)[1], original[request])  # valid header and hash, the other command's text
        if kind == "symlink":
            (elsewhere / path.name).write_bytes(forged)
            path.unlink()
            path.symlink_to(elsewhere / path.name)
        elif kind == "writable by others":
            path.write_bytes(forged)
            path.chmod(0o666)
        else:
            path.unlink()
            path.mkdir()
    assert outputs(capsys, tmp_path, reference) == ""
    if kind != "folder":
        for path in entries.values():
            assert path.is_file() and not path.is_symlink() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert all(split(p.read_bytes())[1] != b"" for p in elsewhere.iterdir())  # a link's target is left alone


def test_a_fifo_entry_does_not_block(tmp_path, reference):
    folder = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "SYMELIG_CACHE_DIR": str(folder)}
    argv = [sys.executable, "-m", "symelig", "derive", "categorical", "--param", "probs"]
    subprocess.run(argv, env=env, check=True, capture_output=True, timeout=120)
    (entry,) = folder.iterdir()
    entry.unlink()
    os.mkfifo(entry)
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)  # a watchdog, not a timing
    assert done.returncode == 0 and done.stdout.rstrip("\n") == reference[0].rstrip("\n") and done.stderr == ""


WARNING = re.compile(r"symelig: warning: cache folder (.+) (is writable by others \(mode \d{4}\)|is owned by uid \d+, "
                     r"not by you \(uid \d+\)|is inside .+, which anyone can write \(mode \d{4}\)); not using it\n")


def _poison(capsys, cache_dir, tmp_path, reference):
    """Fill the cache, then replace both entries by forged ones (valid header and hash) whose text
    is planted code.  Returns the forged bytes per entry."""
    assert outputs(capsys, tmp_path, reference) == ""
    planted = {}
    for request, path in _entries(cache_dir).items():
        planted[path] = forge(b"import os\nos.environ['PLANTED'] = '1'\n", path.read_bytes())
        path.write_bytes(planted[path])
    return planted


def _refused(capsys, tmp_path, reference, cache_dir, planted, monkeypatch, reason):
    """Both commands ignore the folder: right output, one warning per run, nothing written there."""
    for command in ("derive", "export"):
        monkeypatch.setattr(cache, "_warned", set())  # a fresh process
        code, out, err = run(capsys, *(["derive", "categorical", "--param", "probs"] if command == "derive" else
                                       ["export", "categorical", "--param", "probs", "-o", str(tmp_path / "m.py")]))
        assert code == 0
        warnings = WARNING.findall(err)
        assert len(warnings) == 1 and err.count("\n") == (1 if command == "derive" else 2), err
        assert reason in warnings[0][1] and warnings[0][0] == str(cache_dir)
    monkeypatch.setattr(cache, "_warned", {str(cache_dir)})
    outputs(capsys, tmp_path, reference)
    assert {p: p.read_bytes() for p in cache_dir.resolve().iterdir()} == planted  # read nothing from it, wrote nothing


def test_a_forged_entry_passes_the_hash_which_is_why_the_folder_must_be_private(capsys, cache_dir, tmp_path, reference):
    _poison(capsys, cache_dir, tmp_path, reference)
    assert cache.get(TEXT) == "import os\nos.environ['PLANTED'] = '1'\n"  # a hash is no signature


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o770, 0o757, 0o733, 0o720, 0o702, 0o1777], ids=lambda m: f"{m:04o}")
def test_a_folder_others_can_write_is_not_used(capsys, cache_dir, tmp_path, reference, monkeypatch, mode):
    planted = _poison(capsys, cache_dir, tmp_path, reference)
    cache_dir.chmod(mode)
    _refused(capsys, tmp_path, reference, cache_dir, planted, monkeypatch, "writable by others")


def test_a_folder_owned_by_another_user_is_not_used(capsys, cache_dir, tmp_path, reference, monkeypatch):
    if os.geteuid() != 0:
        pytest.skip("only root can give a folder to another user")
    planted = _poison(capsys, cache_dir, tmp_path, reference)
    os.chown(cache_dir, 12345, 12345)
    _refused(capsys, tmp_path, reference, cache_dir, planted, monkeypatch, "owned by uid 12345")


def test_a_folder_that_links_to_a_folder_others_can_write_is_not_used(capsys, tmp_path, reference, monkeypatch):
    real = tmp_path / "real"
    monkeypatch.setenv("SYMELIG_CACHE_DIR", str(real))
    planted = _poison(capsys, real, tmp_path, reference)
    real.chmod(0o777)
    link = tmp_path / "link"
    link.symlink_to(real)
    monkeypatch.setenv("SYMELIG_CACHE_DIR", str(link))
    _refused(capsys, tmp_path, reference, link, planted, monkeypatch, "writable by others")


def test_a_folder_others_could_swap_is_not_used(capsys, tmp_path, reference, monkeypatch):
    """In a world-writable parent without the sticky bit anyone can rename our folder away and put
    theirs in its place; with the sticky bit (like /tmp) they cannot."""
    parent = tmp_path / "shared"
    parent.mkdir()
    cache_dir = parent / "cache"
    monkeypatch.setenv("SYMELIG_CACHE_DIR", str(cache_dir))
    planted = _poison(capsys, cache_dir, tmp_path, reference)
    parent.chmod(0o777)
    _refused(capsys, tmp_path, reference, cache_dir, planted, monkeypatch, "anyone can write")
    parent.chmod(0o1777)
    code, _, err = run(capsys, "derive", "categorical", "--param", "probs")
    assert code == 0 and err == ""


def test_a_new_folder_is_private_whatever_the_umask(capsys, tmp_path, reference, monkeypatch):
    cache_dir = tmp_path / "deep" / "cache"
    monkeypatch.setenv("SYMELIG_CACHE_DIR", str(cache_dir))
    old = os.umask(0)
    try:
        assert outputs(capsys, tmp_path, reference) == ""
    finally:
        os.umask(old)
    assert stat.S_IMODE(cache_dir.stat().st_mode) == stat.S_IMODE(cache_dir.parent.stat().st_mode) == 0o700
    assert sorted(stat.S_IMODE(p.stat().st_mode) for p in cache_dir.iterdir()) == [0o600, 0o600]


def test_the_warning_is_one_line_once_per_run(tmp_path, reference):
    folder = tmp_path / "cache"
    folder.mkdir()
    folder.chmod(0o777)
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "SYMELIG_CACHE_DIR": str(folder)}
    done = subprocess.run([sys.executable, "-m", "symelig", "derive", "categorical", "--param", "probs"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.rstrip("\n") == reference[0].rstrip("\n")
    assert done.stderr == f"symelig: warning: cache folder {folder} is writable by others (mode 0777); not using it\n"
    assert list(folder.iterdir()) == []
