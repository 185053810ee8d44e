"""Resource limits on a real VM (issue 5 item 5): one sandbox, `msb exe --cpus 2 --memory
128` of the busybox test image running `sleep`, restored from the base snapshot of its
shape; the tests talk to its agent with msb-agent beside msb's own connection, in file
order:

- the guest sees 2 vCPUs (nproc, /proc/cpuinfo) and about 128 MiB (/proc/meminfo);
- a command that wants more memory than the guest has is killed inside by msb-init's memory
  guard (src/init/oom.c) before the guest kernel reclaims for minutes: the command ends with
  signal 9 (status 137), the kernel log names it, and the agent and the VM stay up: the next
  command works;
- a fork bomb (bounded by the agent's per-command timeout) does not take the agent down:
  the timeout kills the whole tree, the next command works, no bomb process is left, and
  on the host msb-vmm stays within the guest's memory plus its own small overhead;
- `msb exe` of a memory hog: status 137 and a line saying the out-of-memory killer ended it.

The hogs are two awk processes of one command, one per vCPU: on PVM every page the guest
kernel hands out costs ~4 ms (measured: 40 MiB into a tmpfs in 37 s), so one process needs
~110 s to fill the 128 MiB guest and two need about half.

Run alone (two restores, plus one cold boot the first time the 2-vCPU/128 MiB base
snapshot is built): flock /tmp/msb-vm.lock pytest tests/integration/test_sandbox_limits.py"""

import os
import subprocess
import time

import pytest

from conftest import BIN, scaled
from test_sandbox_exe import BOOT_TIMEOUT, home, need_vm, short_dir
from test_sandbox_tty import find_vsock

assert home  # the module fixture with the test images, used below

MSB = BIN / "msb"
MEMORY_MIB = 128
# awk keeps small strings until memory runs out: it grows step by step, so the allocator
# never refuses one big request (which would be a plain error instead of an OOM kill)
HOG = 'BEGIN { for (i = 0; ; i++) a[i] = sprintf("%0200d", i) }'


class Sandbox:
    def __init__(self, proc, vsock):
        self.proc = proc
        self.vsock = vsock

    def agent(self, *args, timeout=600):
        return subprocess.run([str(BIN / "msb-agent"), "--vsock", self.vsock, *args],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              errors="replace", timeout=scaled(timeout))

    def sh(self, script, timeout=600, agent_timeout=None):
        extra = ["--timeout", str(agent_timeout)] if agent_timeout else []
        return self.agent("exec", "--no-stdin", *extra, "--", "/bin/sh", "-c", script,
                          timeout=timeout)

    def vmm_pid(self):
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    args = f.read().split(b"\0")
            except OSError:
                continue
            if b"--vsock" in args and args[args.index(b"--vsock") + 1] == self.vsock.encode():
                return int(pid)
        return None


@pytest.fixture(scope="module")
def box(home):
    need_vm()
    tmp = short_dir()
    env = dict(os.environ, MICROSANDBOX_HOME=str(home), TMPDIR=str(tmp),
               MSB_BOOT_TIMEOUT=str(int(BOOT_TIMEOUT)))
    p = subprocess.Popen([str(MSB), "exe", "--cpus", "2", "--memory", str(MEMORY_MIB), "-e",
                          "sleep", "microsandbox/busybox-cfg", "--", "100000"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env)
    try:
        vsock = find_vsock(p, BOOT_TIMEOUT)
        s = Sandbox(p, vsock)
        r = s.agent("wait-ready", "--timeout", str(int(BOOT_TIMEOUT)), timeout=BOOT_TIMEOUT + 60)
        assert r.returncode == 0, r.stderr
        yield s
    finally:
        p.terminate()
        try:
            p.wait(scaled(120))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def alive(box):
    r = box.sh("echo alive", timeout=300)
    assert (r.returncode, r.stdout) == (0, "alive\n"), r.stderr
    assert box.proc.poll() is None, "msb exe ended"


def test_guest_sees_cpus_and_memory(box):
    r = box.sh("nproc; grep -c ^processor /proc/cpuinfo; grep MemTotal /proc/meminfo")
    assert r.returncode == 0, r.stderr
    nproc, cpuinfo, mem = r.stdout.splitlines()
    assert (nproc, cpuinfo) == ("2", "2")
    kib = int(mem.split()[1])
    # the kernel keeps its own image and reserved pages out of MemTotal
    assert MEMORY_MIB * 1024 * 0.75 < kib <= MEMORY_MIB * 1024, mem


# Both awks in the command's session: the guard kills the command as a whole.
HOGS = f"awk '{HOG}' & exec awk '{HOG}'"


def test_memory_hog_is_killed_inside_and_the_agent_stays_up(box):
    # The agent's timeout bounds a guest that reclaims instead of killing (as it did for
    # >10 min before msb-init's memory guard): the hog is then killed, the guest recovers
    # for the next tests, and this one fails saying so.
    t0 = time.monotonic()
    r = box.sh(HOGS, agent_timeout=300, timeout=900)
    took = time.monotonic() - t0
    assert "timed out" not in r.stderr, "no OOM kill within 300 s: " + r.stderr
    assert r.returncode == 128 + 9, (r.returncode, r.stderr)
    # What msb exe reads to explain a status 137: the guard's count and its last victim.
    r = box.sh("cat /dev/msb-oom")
    assert r.stdout.startswith("oom_kill 1\nlast ") and " awk " in r.stdout, r.stdout
    # The kernel log line: not seen in dmesg in the one VM run so far (the report file
    # was written); shown here for the next run, not asserted.
    r = box.sh("dmesg | grep -i -E 'out of memory|oom-kill'; ls -l /proc/1/fd")
    print("guest kernel log and msb-init's descriptors:\n" + r.stdout + r.stderr)
    # The console log (msb's copy of the guest console) has msb-init's line.
    with open(os.path.join(os.path.dirname(box.vsock), "console.log"), errors="replace") as f:
        lines = [ln for ln in f.read().splitlines() if "msb-init" in ln]
    print("console:\n" + "\n".join(lines[-5:]))
    assert any("Out of memory: Killed process" in ln and "(awk)" in ln for ln in lines), lines
    alive(box)
    # How soon is a figure, not a check: ~100 s measured alone (2 vCPUs, 128 MiB: the guest
    # fills ~100 MiB at ~1 MiB/s on PVM), 148-168 s beside other VMs.  The bound the test
    # holds is the agent's 300 s timeout above: the guard, not the timeout, ended the hog.
    print(f"memory hog: killed {took:.1f} s after the command started")


def oom_kills(box):
    """How many commands msb-init's memory guard killed so far (its /dev/msb-oom)."""
    r = box.sh("cat /dev/msb-oom 2>/dev/null || true")
    words = r.stdout.split()
    return int(words[1]) if words[:1] == ["oom_kill"] else 0


def test_fork_bomb_is_bounded_and_the_agent_stays_up(box):
    vmm = box.vmm_pid()
    assert vmm, "no msb-vmm found for the sandbox"
    kills = oom_kills(box)
    t0 = time.monotonic()
    r = box.sh("b() { b | b & }; b; sleep 1000", agent_timeout=20, timeout=900)
    took = time.monotonic() - t0
    # Ended by its timeout, or earlier by the memory guard if its processes filled memory.
    by = "the timeout" if "timed out after 20 s and was killed" in r.stderr else \
        "the memory guard" if oom_kills(box) > kills else None
    assert r.returncode == 128 + 9 and by, (r.returncode, r.stderr)
    alive(box)
    r = box.sh("ps -o pid,comm | grep -c -w sh || true")
    # the bomb's shells are gone: only this command's own sh is left
    assert r.stdout.strip() in ("0", "1"), r.stdout
    with open(f"/proc/{vmm}/status") as f:
        rss_kib = next(int(ln.split()[1]) for ln in f if ln.startswith("VmRSS:"))
    assert rss_kib < (MEMORY_MIB + 64) * 1024, rss_kib
    print(f"fork bomb: ended by {by} after {took:.1f} s; msb-vmm RSS "
          f"{rss_kib // 1024} MiB")


def test_msb_exe_says_when_the_oom_killer_ended_the_command(home):
    """Through msb exe itself (a second restore, the box's shape): status 137 and one line
    that says why and what to do."""
    need_vm()
    tmp = short_dir()
    env = dict(os.environ, MICROSANDBOX_HOME=str(home), TMPDIR=str(tmp),
               MSB_BOOT_TIMEOUT=str(int(BOOT_TIMEOUT)))
    t0 = time.monotonic()
    r = subprocess.run([str(MSB), "exe", "--cpus", "2", "--memory", str(MEMORY_MIB), "-e", "sh",
                        "microsandbox/busybox-cfg", "--", "-c", HOGS], env=env,
                       capture_output=True, text=True, stdin=subprocess.DEVNULL,
                       timeout=BOOT_TIMEOUT + scaled(900))
    took = time.monotonic() - t0
    assert r.returncode == 128 + 9, r.stderr[-3000:]
    assert (f"killed by the guest's out-of-memory killer: the sandbox has {MEMORY_MIB} MiB; "
            "give it more with --memory MIB") in r.stderr
    assert os.listdir(tmp) == []
    os.rmdir(tmp)
    print(f"msb exe of a memory hog: status 137 after {took:.1f} s")
