"""Resource limits on a real VM (issue 5 item 5): one sandbox, `msb exe --cpus 2 --memory
128` of the busybox test image running `sleep`, restored from the base snapshot of its
shape; the tests talk to its agent with msb-agent beside msb's own connection, in file
order:

- the guest sees 2 vCPUs (nproc, /proc/cpuinfo) and about 256 MiB (/proc/meminfo);
- a process that wants more memory than the guest has is killed inside by the OOM killer:
  the command ends with signal 9 (status 137), the kernel log names it, and the agent and
  the VM stay up: the next command works;
- a fork bomb (bounded by the agent's per-command timeout) does not take the agent down:
  the timeout kills the whole tree, the next command works, no bomb process is left, and
  on the host msb-vmm stays within the guest's memory plus its own small overhead;
- `msb exe` of a memory hog: status 137 and a line saying the OOM killer ended it (the hog
  runs in a 16 MiB cgroup of its own there, so that it is killed soon: on PVM each page
  fault is emulated, ~10 ms, and filling the guest takes minutes).

Run alone (two restores, plus one cold boot the first time the 2-vCPU/256 MiB base
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


def need_oom_tests():
    """The guest reclaimed for >10 min before an OOM kill on PVM (docs/agent-protocol.md):
    these tests document the goal and run only when asked."""
    if os.environ.get("MSB_TEST_OOM") != "1":
        pytest.skip("LOUD SKIP: memory exhaustion takes >7 min to resolve on PVM (known "
                    "problem, docs/sandbox.md); MSB_TEST_OOM=1 runs it")


def test_memory_hog_is_killed_inside_and_the_agent_stays_up(box):
    need_oom_tests()
    # The agent's timeout bounds a guest that reclaims instead of killing (as it did for
    # >10 min before msb-init's memory guard): the hog is then killed, the guest recovers
    # for the next tests, and this one fails saying so.
    r = box.agent("exec", "--no-stdin", "--timeout", "420", "--", "awk", HOG, timeout=900)
    assert "timed out" not in r.stderr, "no OOM kill within 420 s: " + r.stderr
    assert r.returncode == 128 + 9, (r.returncode, r.stderr)
    r = box.sh("dmesg | grep -i -E 'out of memory|oom-kill'")
    assert "Killed process" in r.stdout and "(awk)" in r.stdout, r.stdout + r.stderr
    alive(box)


def test_fork_bomb_is_bounded_and_the_agent_stays_up(box):
    vmm = box.vmm_pid()
    assert vmm, "no msb-vmm found for the sandbox"
    t0 = time.monotonic()
    r = box.sh("b() { b | b & }; b; sleep 1000", agent_timeout=20, timeout=900)
    took = time.monotonic() - t0
    assert r.returncode == 128 + 9 and "timed out after 20 s and was killed" in r.stderr, \
        (r.returncode, r.stderr)
    alive(box)
    r = box.sh("ps -o pid,comm | grep -c -w sh || true")
    # the bomb's shells are gone: only this command's own sh is left
    assert r.stdout.strip() in ("0", "1"), r.stdout
    with open(f"/proc/{vmm}/status") as f:
        rss_kib = next(int(ln.split()[1]) for ln in f if ln.startswith("VmRSS:"))
    assert rss_kib < (MEMORY_MIB + 64) * 1024, rss_kib
    print(f"fork bomb: ended by the timeout after {took:.1f} s; msb-vmm RSS "
          f"{rss_kib // 1024} MiB")


def test_msb_exe_says_when_the_oom_killer_ended_the_command(home):
    """Through msb exe itself (a second restore): status 137 and one line that says why
    and what to do."""
    need_oom_tests()
    need_vm()
    tmp = short_dir()
    env = dict(os.environ, MICROSANDBOX_HOME=str(home), TMPDIR=str(tmp),
               MSB_BOOT_TIMEOUT=str(int(BOOT_TIMEOUT)))
    cg = "/sys/fs/cgroup/hog"
    script = (f'mkdir {cg} && echo 16M > {cg}/memory.max && echo $$ > {cg}/cgroup.procs && '
              f"exec awk '{HOG}'")
    r = subprocess.run([str(MSB), "exe", "--memory", "256", "-e", "sh",
                        "microsandbox/busybox-cfg", "--", "-c", script], env=env,
                       capture_output=True, text=True, stdin=subprocess.DEVNULL,
                       timeout=BOOT_TIMEOUT + scaled(900))
    assert r.returncode == 128 + 9, r.stderr[-3000:]
    assert ("killed by the guest's out-of-memory killer: the sandbox has 256 MiB; "
            "give it more with --memory MIB") in r.stderr
    assert os.listdir(tmp) == []
    os.rmdir(tmp)
