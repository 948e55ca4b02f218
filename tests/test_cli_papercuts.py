"""What a new user trips over on the command line: near-miss names get a "did you mean",
values given to derive point to eval and explain, the sample's name has an option of its own,
export --all makes its folder and reports progress, and eval's columns line up."""
from __future__ import annotations

import io
import time

import pytest

import symelig
from symelig import SymeligError
from symelig.cli import main
from symelig.progress import Status


def run(capsys, *argv):
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


@pytest.mark.parametrize(
    "argv,message",
    [
        (["derive", "categorcal"], "unknown family 'categorcal'; did you mean 'categorical'? choose one of: bernoulli"),
        (["derive", "Categorical"], "did you mean 'categorical'?"),
        (["derive", "categorical", "--param", "prob"], "unknown parametrization 'prob' of categorical; did you mean 'probs'?"),
        (["derive", "normal", "--param", "log_sclae"], "did you mean 'log_scale'?"),
        (["derive", "categorical", "--parm", "probs"], "No such option: --parm; did you mean '--param'?"),
        (["derive", "categorical", "--formt", "latex"], "did you mean '--format'?"),
        (["explain", "categorical", "--fromat", "latex"], "did you mean '--format'?"),
        (["eval", "categorical", "--prob", "0.5,0.5", "--x", "0"], "unexpected '--prob' for categorical --param probs; did you mean '--probs'?"),
        (["derive", "categorical", "--param", "probs", "--probs", "0.69,0.1", "--x", "0"],
         "derive prints formulas and takes no values: for numbers at --probs 0.69,0.1 --x 0 run "
         "`symelig eval categorical --param probs --probs 0.69,0.1 --x 0`, or `symelig explain"),
        (["derive", "normal", "--x", "0.5"], "`symelig eval normal --x 0.5`"),
        (["export", "categorical", "--logits", "0,1", "-o", "m.py"], "export writes code and takes no values"),
        (["derive", "categorical", "extra"], "unexpected argument 'extra'"),
        (["derive", "custom", "--log-prob", "-(x-m)^2", "--wrt", "m"], "the operator ^ (use ** for powers) is not allowed"),
        (["export", "--all", "-o", "README.md"], "README.md exists and is not one"),
    ],
)
def test_near_misses_get_a_hint_in_one_line(capsys, monkeypatch, tmp_path, argv, message):
    (tmp_path / "README.md").write_text("not a folder")
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, *argv)
    assert code == 2 and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err and out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md"]  # nothing written


def test_no_hint_where_nothing_is_close(capsys):
    code, _, err = run(capsys, "derive", "gaussian")
    assert code == 2 and "did you mean" not in err
    code, _, err = run(capsys, "derive", "categorical", "--nope")
    assert code == 2 and err.strip() == "symelig: error: No such option: --nope"


def test_python_names_get_the_hint_too():
    with pytest.raises(SymeligError, match="did you mean 'categorical'"):
        symelig.derive("Categorical")
    with pytest.raises(SymeligError, match="did you mean 'logits'"):
        symelig.derive("categorical", "logit")
    with pytest.raises(SymeligError, match=r"\(use \*\* for powers\)"):
        symelig.custom("-(x-m)^2", wrt=["m"])


def test_the_sample_has_a_name_option_and_the_old_spelling_still_works(capsys):
    density = ["derive", "custom", "--log-prob", "-(y-m)**2/2", "--wrt", "m"]
    code, named, err = run(capsys, *density, "--sample-name", "y")
    assert code == 0 and err == "" and "y" in named
    code, old, err = run(capsys, *density, "--x", "y")
    assert code == 0 and old == named
    assert "--x NAME for the sample's name is deprecated; use --sample-name NAME" in err and err.count("\n") == 1


def test_eval_columns_line_up(capsys):
    code, out, _ = run(capsys, "eval", "normal", "--param", "scale", "--loc", "0", "--scale", "2", "--x", "1")
    assert code == 0
    rows = [line for line in out.splitlines()[1:] if " = " in line and not line.startswith("(")]
    assert len(rows) == 6 and len({line.index(" = ") for line in rows}) == 1


def test_export_all_creates_its_folder_and_counts_the_entries(capsys, monkeypatch, tmp_path):
    import symelig.cli as cli

    entries = [e for e in symelig.catalog() if (e.family, e.param) in {("categorical", "logits"), ("normal", "scale")}]
    monkeypatch.setattr(symelig, "catalog", lambda: entries)
    shown = []

    class Recording(Status):
        def update(self, message):
            shown.append(message)
            super().update(message)

    monkeypatch.setattr(cli, "_working", Recording)
    folder = tmp_path / "new" / "kernels"
    code, out, err = run(capsys, "export", "--all", "-o", str(folder))
    assert code == 0 and out == ""
    assert sorted(p.name for p in folder.iterdir()) == ["categorical_logits.py", "normal_scale.py"]
    assert err == f"wrote 2 modules to {folder}\n"
    assert shown == ["exporting 1/2: categorical --param logits", "exporting 2/2: normal --param scale"]


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_the_status_line_shows_on_a_terminal_after_a_delay_and_is_erased():
    terminal = _Terminal()
    with Status("deriving student_t", stream=terminal, delay=0.05) as status:
        time.sleep(0.4)
        status.update("exporting 2/65")
        time.sleep(0.4)
    text = terminal.getvalue()
    assert "deriving student_t" in text and "exporting 2/65" in text
    assert text.endswith("\r\x1b[K")  # erased: what follows (an error, the result) starts clean
    quick = _Terminal()
    with Status("deriving", stream=quick, delay=5):
        pass
    assert quick.getvalue() == ""  # fast work prints nothing
    pipe = io.StringIO()
    with Status("deriving", stream=pipe, delay=0):
        time.sleep(0.1)
    assert pipe.getvalue() == ""  # never into a pipe or a log
