"""`msb snapshot prune` without a VM: base and user snapshot directories made by
hand in a private MICROSANDBOX_HOME / MSB_BASE_SNAPSHOTS, then pruned through
the CLI. What it says, what it removes and what it keeps. Also `msb snapshot
create` of a sandbox that is still starting (a stand-in msb-vmm process)."""

import os
import struct
import subprocess
import sys

from conftest import BIN

MSB = BIN / "msb"


def state_bytes(cpus, mib):
    """The first bytes of an msb-vmm state file: header, then the vm section."""
    header = b"MSBSNAP\0" + struct.pack("<IIQII", 1, 0, 0, 0, 0)
    vm = struct.pack("<IIIIIQ", 1, 0, 52, cpus, 1, mib << 20)
    return header + vm + bytes(40)


def make_base(root, name, cpus=1, mib=256, memory=True):
    d = root / name
    d.mkdir()
    (d / "state").write_bytes(state_bytes(cpus, mib))
    if memory:
        with open(d / "memory", "wb") as f:
            f.write(b"\x07" * 65536)
            f.truncate(1 << 20)
    if ".tmp-" not in name:
        (root / (name + ".lock")).write_bytes(b"")
    return d


def dead_pid():
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def run(tmp_path, *args):
    env = dict(os.environ, MICROSANDBOX_HOME=str(tmp_path / "home"),
               MSB_BASE_SNAPSHOTS=str(tmp_path / "base"))
    env.pop("MSB_LOG", None)
    return subprocess.run([str(MSB), "snapshot", "prune", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_prune_removes_stale_bases_and_says_how_much(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    make_base(base, "00000000000000aa")  # not the current parts' key
    make_base(base, "00000000000000bb", memory=False)  # incomplete
    make_base(base, "00000000000000cc.tmp-%d" % dead_pid())
    (base / "00000000000000dd.lock").write_bytes(b"")  # a lock whose base is gone

    dry = run(tmp_path, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would remove base snapshot 00000000000000aa (not built from the current" in dry.stdout
    assert "would remove 3 snapshots" in dry.stdout
    assert (base / "00000000000000aa").is_dir()

    r = run(tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert any(ln.startswith("removed base snapshot 00000000000000aa") and ln.endswith("MiB")
               for ln in lines), r.stdout
    assert any("00000000000000bb (incomplete" in ln for ln in lines), r.stdout
    assert any("interrupted build" in ln for ln in lines), r.stdout
    # the total counts the data of the sparse memory files (64 KiB each)
    assert lines[-1].startswith("removed 3 snapshots, 0.1 MiB freed; kept 0 base snapshots"), \
        r.stdout
    assert sorted(p.name for p in base.iterdir()) == []

    again = run(tmp_path)
    assert again.returncode == 0 and "removed 0 snapshots" in again.stdout


def test_prune_user_snapshots_only_with_user(tmp_path):
    user = tmp_path / "home" / "snapshots" / "user"
    user.mkdir(parents=True)
    (tmp_path / "base").mkdir()
    for name, meta in (("broken", "msb-snapshot 7\n"),
                       ("old", "msb-snapshot 1\nimage=busybox\nrootfs=%s\ncpus=1\n"
                               "memory_mib=256\n" % (tmp_path / "gone.erofs"))):
        (user / name).mkdir()
        (user / name / "state").write_bytes(b"s")
        (user / name / "memory").write_bytes(b"m")
        (user / name / "meta").write_text(meta)

    r = run(tmp_path)
    assert r.returncode == 0 and "removed 0 snapshots" in r.stdout
    assert (user / "broken").is_dir() and (user / "old").is_dir()

    r = run(tmp_path, "--user")
    assert r.returncode == 0, r.stderr
    assert "removed user snapshot broken (unreadable" in r.stdout
    assert "removed user snapshot old (the root filesystem of busybox it ran on is gone)" \
        in r.stdout
    assert "and 0 user snapshots" in r.stdout
    assert not any(user.iterdir())


def test_prune_usage(tmp_path):
    r = run(tmp_path, "NAME")
    assert r.returncode == 2 and "takes no NAME" in r.stderr
    r = run(tmp_path, "--bogus")
    assert r.returncode == 2
    r = run(tmp_path, "--help")
    assert r.returncode == 0 and "--user" in r.stdout and "--dry-run" in r.stdout


def test_create_while_the_sandbox_starts(tmp_path):
    """msb-vmm runs, but msb has not written the run directory's sandbox.meta yet."""
    run = tmp_path / "run"
    run.mkdir()
    vmm = subprocess.Popen(["msb-vmm", "-c", "import time; time.sleep(60)", "--control",
                            str(run / "control")], executable=sys.executable)
    try:
        env = dict(os.environ, MICROSANDBOX_HOME=str(tmp_path / "home"))
        r = subprocess.run([str(MSB), "snapshot", "create", "s", "--pid", str(vmm.pid)],
                           env=env, capture_output=True, text=True, timeout=60)
    finally:
        vmm.kill()
        vmm.wait()
    assert r.returncode == 4, r.stderr
    assert "is still starting; try again once it runs" in r.stderr
    assert not (tmp_path / "home" / "snapshots" / "user" / "s").exists()
