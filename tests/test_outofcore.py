"""``symelig eval-files`` on damaged inputs, concurrent runs and signals: one line, the row in the
file, nothing left behind (issue 12, item 8)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest

import symelig
from symelig import outofcore
from symelig.cli import main

ROWS, K = 5000, 4
LIMIT = "20KB"  # blocks of a few dozen rows: row 4321 is deep inside a later block


def run(capsys, *argv):
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


@pytest.fixture
def folders(tmp_path):
    data, out = tmp_path / "in", tmp_path / "out"
    data.mkdir()
    out.mkdir()
    return data, out


def save(data, **arrays):
    for name, value in arrays.items():
        np.save(data / f"{name}.npy", value)


def one_error(capsys, argv, needle):
    """The command fails with exit 2 and one error line (after the progress bar's label)."""
    code, out, err = run(capsys, "eval-files", *argv)
    lines = [line for line in err.splitlines() if line != "eligibility"]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("symelig: error: "), err
    assert needle in lines[0] and "Traceback" not in err
    return lines[0]


# --- damaged and unsupported .npy files ----------------------------------------------------------

def npy(header, data=b"", version=b"\x01\x00"):
    """The bytes of a .npy file with this header (a dict, or raw text) and data section."""
    text = (repr(header) if isinstance(header, dict) else header).encode("latin1")
    text += b" " * ((-(10 + len(text) + 1)) % 64) + b"\n"
    size = len(text).to_bytes(2 if version == b"\x01\x00" else 4, "little")
    return b"\x93NUMPY" + version + size + text + data


def header(shape, descr="<f8", fortran=False):
    return {"descr": descr, "fortran_order": fortran, "shape": shape}


DAMAGED = {  # name: (file, bytes or a function of the good bytes, words of the message)
    "empty x": ("x", b"", "x.npy is not a usable .npy file: it is empty"),
    "empty logits": ("logits", b"", "logits.npy is not a usable .npy file: it is empty"),
    "negative rows": ("logits", npy(header((-3, 4)), bytes(96)), "negative shape (-3, 4)"),
    "negative columns": ("logits", npy(header((3, -4)), bytes(96)), "negative shape (3, -4)"),
    "both negative": ("logits", npy(header((-3, -4)), bytes(96)), "negative shape (-3, -4)"),
    "negative x": ("x", npy(header((-3,), "<i8"), bytes(24)), "negative shape (-3,)"),
    "truncated data": ("logits", lambda good: good[:-10], "the file holds 86 (truncated?)"),
    "header promises more": ("logits", npy(header((30, 4)), bytes(96)), "promises 960 bytes"),
    "header only": ("logits", npy(header((3, 4))), "the file holds 0"),
    "huge shape": ("logits", npy(header((2**62, 2**62)), bytes(96)), "promises"),
    "object dtype": ("logits", npy(header((3, 4), "|O"), bytes(96)), "dtype object"),
    "string dtype": ("logits", npy(header((3, 4), "<U2"), bytes(96)), "dtype <U2"),
    "bytes dtype": ("x", npy(header((3,), "|S1"), bytes(3)), "dtype |S1"),
    "complex dtype": ("logits", npy(header((3, 4), "<c16"), bytes(192)), "dtype complex128"),
    "structured dtype": ("logits", npy(header((3, 4), [("a", "<f8")]), bytes(96)), "dtype [('a', '<f8')]"),
    "datetime dtype": ("logits", npy(header((3, 4), "<M8[s]"), bytes(96)), "dtype datetime64[s]"),
    "unknown dtype": ("logits", npy(header((3, 4), "<q9"), bytes(96)), "header cannot be read"),
    "header cut short": ("logits", b"\x93NUMPY\x01\x00\x46\x00{'descr': '<f8', 'fortran", "header cannot be read"),
    "header not a dict": ("logits", npy("[1, 2, 3]", bytes(96)), "header cannot be read"),
    "header missing keys": ("logits", npy({"descr": "<f8"}, bytes(96)), "header cannot be read"),
    "header with code": ("logits", npy("__import__('os').system('true')", bytes(96)), "header cannot be read"),
    "not a .npy file": ("logits", b"hello world, not a .npy file at all", "header cannot be read"),
    "pickle": ("logits", b"\x80\x04\x95" + bytes(40), "header cannot be read"),
    "magic only": ("logits", b"\x93NUMPY", "header cannot be read"),
    "version 9": ("logits", npy(header((3, 4)), bytes(96), version=b"\x09\x00"), "version 9.0 is not supported"),
    "version 3": ("logits", npy(header((3, 4)), bytes(96), version=b"\x03\x00"), "version 3.0 is not supported"),
    "0-d x": ("x", npy(header((), "<i8"), bytes(8)), "at least one row"),
    "0-d logits": ("logits", npy(header(()), bytes(8)), "category axis"),
    "fewer rows": ("logits", npy(header((2, 4)), bytes(64)), "logits.npy has shape (2, 4); x.npy has 3 rows"),
    "more rows": ("logits", npy(header((5, 4)), bytes(160)), "logits.npy has shape (5, 4); x.npy has 3 rows"),
    "no rows": ("logits", npy(header((0, 4))), "logits.npy has shape (0, 4)"),
    "too many axes": ("logits", npy(header((3, 4, 2)), bytes(192)), "logits.npy has shape (3, 4, 2)"),
    "no categories": ("logits", npy(header((3, 0))), "category axis"),
    "a folder": ("logits", None, "logits.npy is not a regular file"),
    "a named pipe": ("logits", "fifo", "logits.npy is not a regular file"),
    "long double": ("logits", npy(header((3, 4), "<f16"), bytes(192)), "float128"),
}


@pytest.mark.parametrize("case", list(DAMAGED))
def test_damaged_files_are_one_line(capsys, folders, case):
    data, out = folders
    save(data, x=np.array([0, 1, 2]), logits=np.zeros((3, 4)))
    name, content, needle = DAMAGED[case]
    path = data / f"{name}.npy"
    if callable(content):
        content = content(path.read_bytes())
    if content is None or content == "fifo":
        path.unlink()
        path.mkdir() if content is None else os.mkfifo(path)
    else:
        path.write_bytes(content)
    one_error(capsys, ["categorical", "-p", "logits", "-i", str(data), "-o", str(out)], needle)
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("layout", ["fortran order", "big endian", "version 2.0", "float32", "bool x"])
def test_unusual_but_valid_files_give_the_right_numbers(folders, layout):
    data, out = folders
    rng = np.random.default_rng(4)
    x, z = rng.integers(0, 2, size=300), rng.normal(size=(300, 2))
    if layout == "fortran order":
        z = np.asfortranarray(z)
    elif layout == "big endian":
        z = z.astype(">f8")
    elif layout == "float32":
        z = z.astype(np.float32)
    elif layout == "bool x":
        x = x.astype(bool)
    save(data, x=x, logits=z)
    if layout == "version 2.0":
        with open(data / "logits.npy", "wb") as handle:
            np.lib.format.write_array(handle, z, version=(2, 0))
    d = symelig.derive("categorical", "logits")
    outofcore.run(d, data, out, 2_000)
    expected = d.eligibility(np.asarray(x), logits=np.asarray(z))["logits"]
    np.testing.assert_allclose(np.load(out / "logits.npy"), expected, rtol=1e-6 if layout == "float32" else 1e-13)


# --- errors name the row in the file ------------------------------------------------------------

def _rows(seed=5):
    rng = np.random.default_rng(seed)
    return rng, rng.integers(0, K, ROWS), rng.normal(size=(ROWS, K)), rng.dirichlet(np.ones(K), ROWS)


def _nan_logits(row, column=3):
    _, x, z, _ = _rows()
    z[row, column] = np.nan
    return "categorical", "logits", {"x": x, "logits": z}, f"logits[{row}, {column}] = nan"


def _bad_x(row):
    _, x, z, _ = _rows()
    x[row] = 7
    return "categorical", "logits", {"x": x, "logits": z}, f"x[{row}] = 7"


def _bad_scale(row):
    rng = np.random.default_rng(6)
    scale = rng.uniform(1, 2, ROWS)
    scale[row] = -1
    return "normal", "scale", {"x": rng.normal(size=ROWS), "loc": np.zeros(ROWS), "scale": scale}, f"scale[{row}] = -1.0"


def _probability_zero(row):
    _, x, _, p = _rows()
    p[row], x[row] = [0, 0.5, 0.5, 0], 0
    return "categorical", "probs", {"x": x, "probs": p}, f"the sample x at batch index [{row}] has probability 0"


def _not_finite(row):
    rng = np.random.default_rng(7)
    x, scale = rng.normal(size=ROWS), np.ones(ROWS)
    x[row], scale[row] = 1e300, 1e-300
    return "normal", "scale", {"x": x, "loc": np.zeros(ROWS), "scale": scale}, f"at batch index [{row}] is not finite"


def _simplex_sum(row):
    _, x, _, p = _rows()
    p[row] *= 2
    return "categorical", "normalized_probs", {"x": x, "normalized_probs": p}, f"row {row}: normalized_probs sums to 2"


def _counts_sum(row):
    rng = np.random.default_rng(8)
    x = rng.multinomial(5, np.full(K, 1 / K), size=ROWS)
    x[row, 0] += 1
    return ("multinomial", "logits", {"x": x, "total_count": np.full(ROWS, 5), "logits": rng.normal(size=(ROWS, K))},
            f"row {row}: x sums to 6")


def _binomial_above(row):
    rng = np.random.default_rng(9)
    x = rng.integers(0, 4, ROWS)
    x[row] = 9
    return "binomial", "logits", {"x": x, "total_count": np.full(ROWS, 4), "logits": rng.normal(size=ROWS)}, f"row {row}: x = 9 exceeds"


def _two_d_batch(row):
    rng = np.random.default_rng(10)
    z = rng.normal(size=(ROWS, 3, K))
    z[row, 2, 1] = np.inf
    return "categorical", "logits", {"x": rng.integers(0, K, (ROWS, 3)), "logits": z}, f"logits[{row}, 2, 1] = inf"


def _later_argument_earlier_row(row):
    """Two bad rows in one block, the later one in an argument checked first: the first row wins."""
    _, x, z, _ = _rows()
    x[row] = 9
    if row + 3 < ROWS:
        z[row + 3, 0] = np.nan
    return "categorical", "logits", {"x": x, "logits": z}, f"x[{row}] = 9"


BAD_ROWS = {f.__name__.strip("_"): f for f in (_nan_logits, _bad_x, _bad_scale, _probability_zero, _not_finite,
                                               _simplex_sum, _counts_sum, _binomial_above, _two_d_batch,
                                               _later_argument_earlier_row)}


@pytest.mark.parametrize("row", [4321, 7, 0, ROWS - 1])
@pytest.mark.parametrize("case", list(BAD_ROWS))
def test_errors_name_the_row_in_the_file(capsys, folders, case, row):
    data, out = folders
    family, param, arrays, needle = BAD_ROWS[case](row)
    save(data, **arrays)
    if row == 0:
        needle = needle.replace("row 0: ", "")  # the first row is checked on its own, before any block
    one_error(capsys, [family, "-p", param, "-i", str(data), "-o", str(out), "--memory-limit", LIMIT], needle)
    assert list(out.iterdir()) == []


# --- concurrent runs and signals ----------------------------------------------------------------

SCRIPT = """
import os, signal, sys
import numpy as np
import symelig
from symelig import outofcore
from symelig.cli import main

d = symelig.derive("categorical", "logits")
eligibility, calls = d.eligibility, []

def hooked(*args, **kwargs):
    calls.append(1)
    if len(calls) == 3:  # in the second block
        {hook}
    return eligibility(*args, **kwargs)

d.eligibility = hooked
main(["eval-files", "categorical", "-p", "logits", "-i", sys.argv[1], "-o", sys.argv[2], "--memory-limit", "{limit}"])
"""


def _script(tmp_path, hook, limit=LIMIT):
    path = tmp_path / "hooked.py"
    path.write_text(SCRIPT.format(hook=hook, limit=limit))
    return path


def _launch(script, *argv):
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    return subprocess.run([sys.executable, str(script), *map(str, argv)], capture_output=True, text=True, env=env, timeout=300)


def test_two_runs_into_one_folder_do_not_share_files(tmp_path, folders):
    """A second run starts and finishes while the first is in its second block (different data,
    a different size): each writes its own temporary files, the first still ends right."""
    data, out = folders
    other = tmp_path / "other"
    other.mkdir()
    _, x, z, _ = _rows()
    save(data, x=x, logits=z)
    save(other, x=x[:1000], logits=z[:1000] * 2)
    hook = f"outofcore.run(symelig.derive('categorical', 'logits'), {str(other)!r}, sys.argv[2], 10_000)"
    done = _launch(_script(tmp_path, hook), data, out)
    assert done.returncode == 0, done.stderr
    d = symelig.derive("categorical", "logits")
    np.testing.assert_allclose(np.load(out / "logits.npy"), d.eligibility(x, logits=z)["logits"], rtol=1e-13)
    np.testing.assert_allclose(np.load(out / "log_prob.npy"), d.log_prob(x, logits=z), rtol=1e-13)
    assert sorted(p.name for p in out.iterdir()) == ["log_prob.npy", "logits.npy"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: signal.Signals(s).name)
def test_a_signal_removes_the_partial_files(tmp_path, folders, signum):
    data, out = folders
    _, x, z, _ = _rows()
    save(data, x=x, logits=z)
    (out / "keep.txt").write_text("not ours")
    np.save(out / "logits.npy", np.arange(3.0))  # a complete output of an earlier run stays as it was
    done = _launch(_script(tmp_path, f"os.kill(os.getpid(), {int(signum)})"), data, out)
    name = signal.Signals(signum).name
    assert done.returncode == 128 + signum and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.splitlines()[-1] == f"symelig: interrupted by {name}; removed the partial outputs in {out}"
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt", "logits.npy"]
    np.testing.assert_array_equal(np.load(out / "logits.npy"), np.arange(3.0))


def test_a_signal_during_the_renames_waits_for_them(tmp_path, folders):
    """Stopping between two renames would leave outputs of two runs side by side."""
    data, out = folders
    _, x, z, _ = _rows()
    save(data, x=x, logits=z)
    script = tmp_path / "renames.py"  # a process of its own: SIGTERM ends it where the handler is missing
    script.write_text(
        "import os, signal, sys\n"
        "from symelig import outofcore\n"
        "from symelig.cli import main\n"
        "replace = os.replace\n"
        "def signalled(src, dst):\n"
        "    replace(src, dst)\n"
        "    if str(dst).endswith('log_prob.npy'):\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "outofcore.os.replace = signalled\n"
        "main(['eval-files', 'categorical', '-p', 'logits', '-i', sys.argv[1], '-o', sys.argv[2]])\n"
    )
    done = _launch(script, data, out)
    assert done.returncode == 128 + signal.SIGTERM and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.splitlines()[-1].startswith("symelig: interrupted by SIGTERM")
    d = symelig.derive("categorical", "logits")
    assert sorted(p.name for p in out.iterdir()) == ["log_prob.npy", "logits.npy"]
    np.testing.assert_allclose(np.load(out / "logits.npy"), d.eligibility(x, logits=z)["logits"], rtol=1e-13)


def test_the_previous_handlers_come_back(folders):
    data, out = folders
    save(data, x=np.array([0, 1]), logits=np.zeros((2, 3)))
    d = symelig.derive("categorical", "logits")
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    outofcore.run(d, data, out, 10_000)
    (data / "logits.npy").write_bytes(np.zeros((2, 3)).tobytes())  # no header: an error
    with pytest.raises(symelig.SymeligError):
        outofcore.run(d, data, out, 10_000)
    save(data, x=np.array([0, 9]), logits=np.zeros((2, 3)))  # a bad row: an error inside the block loop
    with pytest.raises(symelig.SymeligError, match=r"x\[1\] = 9"):
        outofcore.run(d, data, out, 200)  # one row per block
    assert {s: signal.getsignal(s) for s in before} == before


def test_a_run_outside_the_main_thread_keeps_the_signals(folders):
    """Handlers can only be set in the main thread: elsewhere the run goes on without them."""
    data, out = folders
    save(data, x=np.array([0, 1]), logits=np.zeros((2, 3)))
    failures = []

    def work():
        try:
            outofcore.run(symelig.derive("categorical", "logits"), data, out, 10_000)
        except BaseException as err:  # noqa: BLE001 -- reported to the test's thread
            failures.append(err)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert failures == [] and sorted(p.name for p in out.iterdir()) == ["log_prob.npy", "logits.npy"]


def test_the_temporary_names_are_fresh_per_run(folders, monkeypatch):
    """Another run's file under an old fixed name is neither used nor removed."""
    data, out = folders
    save(data, x=np.array([0, 1]), logits=np.zeros((2, 3)))
    stranger = out / ".logits.npy.partial"
    stranger.write_bytes(b"another run's partial output")
    outofcore.run(symelig.derive("categorical", "logits"), data, out, 10_000)
    assert stranger.read_bytes() == b"another run's partial output"
    assert sorted(p.name for p in out.iterdir()) == [".logits.npy.partial", "log_prob.npy", "logits.npy"]

