"""What ``-o`` does with what is already at the path, for every subcommand that takes a file:
``-o -`` is stdout; a symlink is written through; read-only files, hard-linked files and
anything but a regular file are refused with one line, and left as they were."""
from __future__ import annotations

import os
import socket
import stat

import pytest

from symelig.cli import main

COMMANDS = {
    "derive": ["derive", "categorical", "--param", "probs"],
    "explain": ["explain", "categorical", "--param", "probs"],
    "export": ["export", "categorical", "--param", "probs"],
    "export-user": ["export", "custom", "--log-prob", "-(x-m)**2/2", "--wrt", "m"],
}


def run(capsys, *argv):
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


@pytest.fixture(params=list(COMMANDS))
def command(request):
    return COMMANDS[request.param]


@pytest.fixture
def expected(command, capsys, tmp_path):
    """The text the command writes, as it writes it to a fresh file."""
    code, _, err = run(capsys, *command, "-o", str(tmp_path / "reference.py"))
    assert code == 0, err
    text = (tmp_path / "reference.py").read_text(encoding="utf-8")
    (tmp_path / "reference.py").unlink()
    return text


def refused(capsys, command, path, needle):
    code, out, err = run(capsys, *command, "-o", str(path))
    assert code == 2 and err.startswith("symelig: error: ") and err.count("\n") == 1, err
    assert needle in err and "Traceback" not in err and out == ""
    return err


def no_temporaries(folder):
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_dash_is_stdout(command, expected, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, *command, "-o", "-")
    assert code == 0 and err == "" and out == expected
    assert list(tmp_path.iterdir()) == []  # no file named "-"


def test_a_symlink_is_written_through(command, expected, capsys, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    real = data / "real.py"
    real.write_text("old")
    real.chmod(0o640)
    link = tmp_path / "mod.py"
    link.symlink_to(real)
    chained = tmp_path / "chained.py"
    chained.symlink_to(link)
    for path in (link, chained):
        code, _, err = run(capsys, *command, "-o", str(path))
        assert code == 0, err
        assert path.is_symlink() and os.readlink(path) in (str(real), str(link))
        assert real.read_text(encoding="utf-8") == expected and stat.S_IMODE(real.stat().st_mode) == 0o640
        real.write_text("old")
    dangling = tmp_path / "dangling.py"
    dangling.symlink_to(data / "new.py")  # like `>`: the file the link names is created
    assert run(capsys, *command, "-o", str(dangling))[0] == 0
    assert dangling.is_symlink() and (data / "new.py").read_text(encoding="utf-8") == expected
    no_temporaries(tmp_path)
    no_temporaries(data)


@pytest.mark.parametrize("mode", [0o444, 0o400, 0o555])
def test_a_read_only_file_is_refused(command, capsys, tmp_path, mode):
    path = tmp_path / "mod.py"
    path.write_text("keep")
    path.chmod(mode)
    link = tmp_path / "link.py"
    link.symlink_to(path)
    for target in (path, link):
        refused(capsys, command, target, "read-only")
        assert path.read_text() == "keep" and stat.S_IMODE(path.stat().st_mode) == mode and link.is_symlink()
    no_temporaries(tmp_path)


def test_a_hard_linked_file_is_refused(command, capsys, tmp_path):
    path = tmp_path / "mod.py"
    path.write_text("keep")
    other = tmp_path / "other.py"
    os.link(path, other)
    for target in (path, other):
        refused(capsys, command, target, "2 hard links")
    assert path.stat().st_ino == other.stat().st_ino and path.read_text() == "keep" and path.stat().st_nlink == 2
    no_temporaries(tmp_path)


def _non_regular(kind, path):
    """Make ``path`` a node of ``kind``; device nodes are private copies, never the system's
    (the old code replaced the node: a test on /dev/null itself would break the machine)."""
    if kind == "folder":
        path.mkdir()
    elif kind == "named pipe":
        os.mkfifo(path)
    elif kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
        return server
    elif kind == "link to a device":
        _non_regular("character device", path.with_name("null"))
        path.symlink_to(path.with_name("null"))
    else:
        try:
            os.mknod(path, (stat.S_IFCHR if kind == "character device" else stat.S_IFBLK) | 0o666, os.makedev(1, 3))
        except OSError as err:
            pytest.skip(f"cannot make a device node here: {err}")
    return None


@pytest.mark.parametrize("kind,needle", [
    ("folder", "it is a folder"), ("named pipe", "named pipe"), ("socket", "socket"),
    ("character device", "character device"), ("block device", "block device"),
    ("link to a device", "character device"),
])
def test_non_regular_files_are_refused(command, capsys, tmp_path, kind, needle):
    path = tmp_path / "out.py"
    server = _non_regular(kind, path)
    before = stat.S_IFMT(os.lstat(path).st_mode)
    try:
        refused(capsys, command, path, needle)
    finally:
        if server is not None:
            server.close()
    assert stat.S_IFMT(os.lstat(path).st_mode) == before  # the node is still there, unchanged
    if kind == "link to a device":
        assert stat.S_ISCHR(os.lstat(path.with_name("null")).st_mode)
    no_temporaries(tmp_path)


@pytest.mark.parametrize("name", ["new/", "mod.py/"])
def test_a_trailing_slash_is_refused(command, capsys, tmp_path, name):
    (tmp_path / "mod.py").write_text("keep")
    needle = "give -o FILE.py" if command[0] == "export" else "cannot end with /"  # export asks for a .py name first
    refused(capsys, command, f"{tmp_path}/{name}", needle)
    assert [p.name for p in tmp_path.iterdir()] == ["mod.py"] and (tmp_path / "mod.py").read_text() == "keep"


def test_export_all_checks_every_file_before_writing_any(capsys, tmp_path):
    blocked = tmp_path / "normal_scale.py"
    blocked.write_text("keep")
    blocked.chmod(0o444)
    refused_err = run(capsys, "export", "--all", "-o", str(tmp_path))
    assert refused_err[0] == 2 and "read-only" in refused_err[2] and refused_err[2].count("\n") == 1
    assert [p.name for p in tmp_path.iterdir()] == ["normal_scale.py"] and blocked.read_text() == "keep"


def test_replacing_keeps_the_owner_and_mode(capsys, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("only root can hand a file to another user")
    path = tmp_path / "mod.py"
    path.write_text("old")
    os.chown(path, 12345, 12345)
    path.chmod(0o664)
    assert run(capsys, *COMMANDS["export"], "-o", str(path))[0] == 0
    info = path.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (12345, 12345, 0o664)
    assert path.read_text().startswith('"""Eligibility')


def test_the_data_is_synced_before_the_rename(capsys, tmp_path, monkeypatch):
    events = []
    fsync, rename = os.fsync, os.replace

    def record_fsync(fd):
        events.append(("fsync", stat.S_ISDIR(os.fstat(fd).st_mode)))
        fsync(fd)

    def record_replace(src, dst):
        events.append(("replace", os.path.basename(dst)))
        rename(src, dst)

    monkeypatch.setattr(os, "fsync", record_fsync)
    monkeypatch.setattr(os, "replace", record_replace)
    monkeypatch.setenv("SYMELIG_CACHE_DIR", "off")
    assert run(capsys, *COMMANDS["derive"], "-o", str(tmp_path / "out.txt"))[0] == 0
    assert events == [("fsync", False), ("replace", "out.txt"), ("fsync", True)]
