"""The project verbs through the real `msb` binary: init, add, remove|rm, list,
their --help, exit statuses (docs/errors.md) and that a refused command leaves
every file exactly as it was."""

import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from conftest import BIN, scaled

MSB = BIN / "msb"

USAGE, NOT_FOUND, EXISTS = 2, 3, 4


def msb(*args, cwd=None, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([str(MSB), *map(str, args)], cwd=cwd, env=e, capture_output=True,
                          text=True, timeout=scaled(30))


def snapshot(d):
    """Every file under d (bytes) and every directory, to compare before/after."""
    out = {}
    for p in sorted(Path(d).rglob("*")):
        out[str(p.relative_to(d))] = p.read_bytes() if p.is_file() else None
    return out


@pytest.fixture
def proj(tmp_path):
    r = msb("init", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    return tmp_path


def test_init_creates_project_and_is_idempotent(tmp_path):
    r = msb("init", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "Sandboxfile").read_text() == "# Sandbox configurations\nsandboxes:\n"
    assert (tmp_path / ".gitignore").read_text() == ".menv/\n"
    for d in ("log", "rw"):
        assert (tmp_path / ".menv" / d).is_dir()
    db = sqlite3.connect(tmp_path / ".menv" / "sandbox.db")
    cols = [row[1] for row in db.execute("PRAGMA table_info(sandboxes)")]
    for c in ("name", "config_file", "config_last_modified", "status", "supervisor_pid",
              "microvm_pid", "supervisor_start", "microvm_start", "boot_id", "rootfs_paths"):
        assert c in cols
    db.close()
    (tmp_path / "Sandboxfile").write_text("# mine\nsandboxes:\n  a: {image: x}\n")
    before = snapshot(tmp_path)
    r = msb("init", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert snapshot(tmp_path) == before


def test_init_with_file_option(tmp_path):
    r = msb("init", "-f", tmp_path / "new" / "proj")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "new" / "proj" / "Sandboxfile").is_file()
    assert (tmp_path / "new" / "proj" / ".menv").is_dir()
    r = msb("init", "--file", tmp_path / "new" / "dev.yaml")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "new" / "dev.yaml").is_file()
    r = msb("add", "web", "-i", "python", "-f", tmp_path / "new" / "dev.yaml")
    assert r.returncode == 0, r.stderr
    assert "web:" in (tmp_path / "new" / "dev.yaml").read_text()
    r = msb("list", "-f", tmp_path / "new" / "dev.yaml")
    assert r.returncode == 0 and "web" in r.stdout


def test_add_keeps_the_rest_of_the_file_byte_for_byte(proj):
    original = ("# Sandbox configurations -- edited by hand\n"
                "meta:\n  description: demo   # inline comment\n\n"
                "sandboxes:\n"
                "  # the database\n"
                "  db:\n"
                "    image: postgres   # pinned later\n"
                "\n"
                "# after the sandboxes\n"
                "builds: {}\n")
    (proj / "Sandboxfile").write_text(original)
    r = msb("add", "web", "-i", "python", "--memory", "512", "--cpus", "2", "-v",
            "./src:/app/src", "-p", "8080:80", "--env", "DEBUG=1", "--depends-on", "db",
            "--workdir", "/app", "--shell", "/bin/bash", "--script", "test=pytest -q",
            "--start", "python app.py", "--scope", "NONE", cwd=proj)
    assert r.returncode == 0, r.stderr
    text = (proj / "Sandboxfile").read_text()
    assert text == ("# Sandbox configurations -- edited by hand\n"
                    "meta:\n  description: demo   # inline comment\n\n"
                    "sandboxes:\n"
                    "  # the database\n"
                    "  db:\n"
                    "    image: postgres   # pinned later\n"
                    "  web:\n"
                    "    image: python\n"
                    "    memory: 512\n"
                    "    cpus: 2\n"
                    "    shell: /bin/bash\n"
                    "    volumes:\n"
                    "      - \"./src:/app/src\"\n"
                    "    ports:\n"
                    "      - \"8080:80\"\n"
                    "    envs:\n"
                    "      - DEBUG=1\n"
                    "    depends_on:\n"
                    "      - db\n"
                    "    workdir: /app\n"
                    "    scripts:\n"
                    "      test: \"pytest -q\"\n"
                    "      start: \"python app.py\"\n"
                    "    scope: none\n"
                    "\n"
                    "# after the sandboxes\n"
                    "builds: {}\n")
    r = msb("list", cwd=proj)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:2] == ["NAME", "IMAGE"]
    web = next(line for line in lines if line.startswith("web "))
    for part in ("python", "2 / 512 MiB", "none", "8080:80", "./src:/app/src", "test, start",
                 "db"):
        assert part in web
    r = msb("rm", "web", cwd=proj)
    assert r.returncode == 0, r.stderr
    assert (proj / "Sandboxfile").read_text() == original


def test_env_file_becomes_envs(proj):
    (proj / "vars.env").write_text("# comment\nA=1\n\nB=two words\nFROM_ENV\nUNSET_X\n")
    r = msb("add", "w", "-i", "alpine", "--env-file", "vars.env", "--env", "C=3", cwd=proj,
            env={"FROM_ENV": "yes"})
    assert r.returncode == 0, r.stderr
    text = (proj / "Sandboxfile").read_text()
    assert ('    envs:\n      - A=1\n      - "B=two words"\n      - FROM_ENV=yes\n'
            '      - C=3\n') in text
    assert "env_file" not in text


def test_multiple_names_and_remove_alias(proj):
    assert msb("add", "a", "b", "c", "-i", "busybox", cwd=proj).returncode == 0
    assert msb("remove", "b", cwd=proj).returncode == 0
    r = msb("list", cwd=proj)
    names = [line.split()[0] for line in r.stdout.splitlines()[1:]]
    assert names == ["a", "c"]
    assert msb("rm", "a", "c", cwd=proj).returncode == 0
    r = msb("list", cwd=proj)
    assert r.returncode == 0 and "No sandboxes" in r.stdout


BAD_ADDS = [
    (["web", "-i", "python"], EXISTS, "already exists"),
    (["x"], USAGE, "image is required"),
    ([], USAGE, "name the sandboxes"),
    (["-bad", "-i", "python"], USAGE, None),
    (["bad.name", "-i", "python"], USAGE, "not a valid sandbox name"),
    (["x", "-i", "python", "-p", "80:http"], USAGE, "--port"),
    (["x", "-i", "python", "-p", "70000"], USAGE, "--port"),
    (["x", "-i", "python", "-v", "./a:relative"], USAGE, "absolute"),
    (["x", "-i", "python", "-v", "./a:/d", "-v", "./b:/d/e"], USAGE, "overlap"),
    (["x", "-i", "python", "--env", "=v"], USAGE, "NAME=VALUE"),
    (["x", "-i", "python", "--memory", "lots"], USAGE, "--memory"),
    (["x", "-i", "python", "--cpus", "0"], USAGE, "--cpus"),
    (["x", "-i", "python", "--scope", "local"], USAGE, "none, group, public, any"),
    (["x", "-i", "not an image!"], USAGE, "image reference"),
    (["x", "-i", "python", "--workdir", "app"], USAGE, "absolute"),
    (["x", "-i", "python", "--script", "a/b=run"], USAGE, "script name"),
    (["x", "-i", "python", "--env-file", "missing.env"], NOT_FOUND, "missing.env"),
    (["x", "-i", "python", "--depends-on", "ghost"], USAGE, "ghost"),
    (["x", "x", "-i", "python"], USAGE, "named twice"),
    (["x", "-i", "python", "-b"], USAGE, "not supported"),
]


@pytest.mark.parametrize("args,status,needle", BAD_ADDS)
def test_bad_add_is_refused_and_changes_nothing(proj, args, status, needle):
    assert msb("add", "web", "-i", "python", cwd=proj).returncode == 0
    before = snapshot(proj)
    r = msb("add", *args, cwd=proj)
    assert r.returncode == status, (r.stdout, r.stderr)
    assert r.stderr.startswith("msb add: ")
    if needle:
        assert needle in r.stderr
    assert snapshot(proj) == before


def test_bad_sandboxfile_is_reported_with_line_and_column(proj):
    bad = "sandboxes:\n  web:\n    image: python\n    memory: lots\n"
    (proj / "Sandboxfile").write_text(bad)
    before = snapshot(proj)
    for args in (["list"], ["add", "x", "-i", "y"], ["rm", "web"]):
        r = msb(*args, cwd=proj)
        assert r.returncode == USAGE, r.stderr
        assert "Sandboxfile:4:13:" in r.stderr
        assert "memory: 1024" in r.stderr
    assert snapshot(proj) == before


def test_missing_project_and_unknown_names(tmp_path):
    r = msb("list", cwd=tmp_path)
    assert r.returncode == NOT_FOUND
    assert "msb init" in r.stderr
    r = msb("add", "x", "-i", "python", cwd=tmp_path)
    assert r.returncode == NOT_FOUND
    assert not (tmp_path / "Sandboxfile").exists()
    msb("init", cwd=tmp_path)
    before = snapshot(tmp_path)
    r = msb("rm", "ghost", cwd=tmp_path)
    assert r.returncode == NOT_FOUND and "ghost" in r.stderr
    assert snapshot(tmp_path) == before
    r = msb("list", "-f", tmp_path / "nope" / "dir" / "Sandboxfile")
    assert r.returncode == NOT_FOUND


@pytest.mark.parametrize("cmd", ["init", "add", "remove", "rm", "list"])
def test_every_command_has_help(cmd):
    r = msb(cmd, "--help")
    assert r.returncode == 0
    assert r.stdout.startswith("Usage: msb ")
    r = msb(cmd, "--no-such-option")
    assert r.returncode == USAGE
    assert "--help" in r.stderr


def test_top_level_help_lists_the_project_commands():
    r = msb("--help")
    for cmd in ("init", "add", "remove", "list"):
        assert f"\n  {cmd} " in r.stdout
