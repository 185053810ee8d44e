"""msb pull against real registries on 127.0.0.1 (see registry.py), with the project's own
busybox test image: plain pull, no-op re-pull, token auth, redirects, resume, zstd,
multi-arch index, Docker v2 manifest, digest mismatch, killed pulls, concurrency, mirrors."""

import json
import os
import signal
import subprocess
import time

import pytest

import registry as R

BUILD = os.environ.get("MSB_BUILD_DIR", os.path.join(R.ROOT, "build", "release"))
MSB = os.path.join(BUILD, "bin", "msb")
SCALE = float(os.environ.get("MSB_TEST_TIMEOUT_SCALE", "1"))
REPO = "microsandbox/busybox"

pytestmark = pytest.mark.skipif(not os.access("/usr/bin/docker-registry", os.X_OK),
                                reason="docker-registry is not installed (scripts/install-deps)")


def msb(home, *args, env=None, timeout=120, check=None):
    e = dict(os.environ, MICROSANDBOX_HOME=str(home), HOME=str(home))
    e.pop("DOCKER_CONFIG", None)
    e.update(env or {})
    r = subprocess.run([MSB, *args], env=e, capture_output=True, text=True,
                       timeout=timeout * SCALE)
    if check is not None:
        assert r.returncode == check, f"msb {' '.join(args)}: {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


@pytest.fixture(scope="module")
def layout():
    return R.test_image_layout("busybox")


@pytest.fixture(scope="module")
def reg(layout):
    r = R.Registry()
    r.skopeo_push(layout, REPO, "latest")
    r.skopeo_push(layout, REPO, "v2s2", "--format", "v2s2")
    R.push_zstd(r, layout, REPO, "zstd")
    r.amd64 = R.push_multiarch(r, layout, "microsandbox/multi")
    r.multilayer = R.push_multilayer(r, layout, REPO, "layers")
    yield r
    r.stop()


@pytest.fixture
def front(reg):
    f = R.AuthFront(reg)
    yield f
    f.stop()


def inspect(home, ref):
    return json.loads(msb(home, "image", "inspect", ref, check=0).stdout)


def layer_digest(reg, tag="latest"):
    body, _ = reg.get(f"/v2/{REPO}/manifests/{tag}",
                      accept="application/vnd.oci.image.manifest.v1+json")
    return json.loads(body)["layers"][0]["digest"]


def blobs(home):
    d = os.path.join(home, "images", "blobs", "sha256")
    return set(os.listdir(d)) if os.path.isdir(d) else set()


def test_pull_then_pull_again_is_a_no_op(tmp_path, reg):
    ref = f"{reg.addr}/{REPO}"
    r = msb(tmp_path, "pull", ref, check=0)
    assert r.stdout.split()[2] == "pulled"
    # Not a terminal: plain progress lines per blob.
    assert r.stderr.count(": downloading ") == 2 and r.stderr.count(": done") == 2, r.stderr
    img = inspect(tmp_path, ref)
    assert img["reference"] == f"{ref}:latest"
    assert img["config"]["cmd"] == ["/bin/sh"]
    assert img["config"]["os"] == "linux"
    assert any(e.startswith("PATH=") for e in img["config"]["env"])
    assert len(img["layers"]) == 1
    assert os.path.getsize(img["rootfs_path"]) > 1_000_000
    before = {b: os.stat(os.path.join(tmp_path, "images/blobs/sha256", b)).st_mtime_ns
              for b in blobs(tmp_path)}
    rootfs_mtime = os.stat(img["rootfs_path"]).st_mtime_ns
    r = msb(tmp_path, "pull", ref, check=0)
    assert r.stdout.split()[2:] == ["up", "to", "date"]
    after = {b: os.stat(os.path.join(tmp_path, "images/blobs/sha256", b)).st_mtime_ns
             for b in blobs(tmp_path)}
    assert before == after
    assert os.stat(img["rootfs_path"]).st_mtime_ns == rootfs_mtime
    ls = msb(tmp_path, "image", "ls", "-q", check=0).stdout.split()
    assert ls == [f"{ref}:latest"]


def test_second_pull_fetches_no_blobs(tmp_path, front):
    ref = f"{front.addr}/{REPO}"
    msb(tmp_path, "pull", ref, check=0)
    n = len(front.blob_requests())
    assert n == 2  # config + one layer
    msb(tmp_path, "pull", ref, check=0)
    assert len(front.blob_requests()) == n


def test_token_auth_and_redirect_without_leaking_authorization(tmp_path, front):
    msb(tmp_path, "pull", f"{front.addr}/{REPO}", check=0)
    api = [r for r in front.requests if r[0] == "api"]
    assert any(p.startswith("/token?") and "scope=repository%3Amicrosandbox%2Fbusybox%3Apull"
               in p for _, _, p, _ in api)
    assert any(h.get("Authorization", "").startswith("Bearer ") for _, _, _, h in api)
    got = front.blob_requests()
    assert got, "blobs were not fetched through the redirect"
    for _, _, path, headers in got:
        assert "Authorization" not in headers, f"Authorization leaked to 127.0.0.2: {path}"


def test_credentials_from_msb_login_and_docker_config(tmp_path, reg):
    f = R.AuthFront(reg, user="alice", password="s3cret")
    try:
        ref = f"{f.addr}/{REPO}"
        r = msb(tmp_path, "pull", ref)
        assert r.returncode == 2, r.stderr
        assert "msb login" in r.stderr
        r = msb(tmp_path, "login", f.addr, "-u", "alice", "-p", "wrong")
        assert r.returncode == 2 and "nothing was stored" in r.stderr, r.stderr
        auth = os.path.join(tmp_path, "auth.json")
        assert not os.path.exists(auth)
        # Unverified wrong credentials are stored, and the pull says they were refused.
        msb(tmp_path, "login", f.addr, "-u", "alice", "-p", "wrong", "--no-verify", check=0)
        r = msb(tmp_path, "pull", ref)
        assert r.returncode == 2 and "refused" in r.stderr
        msb(tmp_path, "login", f.addr, "-u", "alice", "-p", "s3cret", check=0)
        assert os.stat(auth).st_mode & 0o777 == 0o600
        msb(tmp_path, "pull", ref, check=0)
        msb(tmp_path, "logout", f.addr, check=0)
        assert f.addr not in json.load(open(auth))["auths"]
        assert msb(tmp_path, "logout", f.addr).returncode == 3
        # Docker's own config file works too.
        dc = tmp_path / "dockercfg"
        dc.mkdir()
        import base64
        (dc / "config.json").write_text(json.dumps({"auths": {f"http://{f.addr}": {
            "auth": base64.b64encode(b"alice:s3cret").decode()}}}))
        msb(tmp_path, "image", "rm", ref, check=0)
        msb(tmp_path, "pull", ref, env={"DOCKER_CONFIG": str(dc)}, check=0)
    finally:
        f.stop()


def test_basic_auth(tmp_path, reg):
    f = R.AuthFront(reg, user="bob", password="pw", basic=True)
    try:
        ref = f"{f.addr}/{REPO}"
        r = msb(tmp_path, "pull", ref)
        assert r.returncode == 2 and f"msb login {f.addr}" in r.stderr, r.stderr
        e = dict(os.environ, MICROSANDBOX_HOME=str(tmp_path), HOME=str(tmp_path))
        subprocess.run([MSB, "login", f.addr, "-u", "bob", "--password-stdin"], input="pw\n",
                       text=True, env=e, check=True, capture_output=True)
        msb(tmp_path, "pull", ref, check=0)
        assert f.blob_requests()
        for _, _, path, headers in f.blob_requests():
            assert "Authorization" not in headers, path
    finally:
        f.stop()


def test_digest_mismatch_is_refused_and_nothing_is_stored(tmp_path, front, reg):
    bad = layer_digest(reg)
    front.corrupt.add(bad)
    r = msb(tmp_path, "pull", f"{front.addr}/{REPO}")
    assert r.returncode == 8, r.stderr
    assert "failed verification" in r.stderr
    assert bad[7:] not in blobs(tmp_path)
    assert msb(tmp_path, "image", "ls", "-q", check=0).stdout.strip() == ""
    assert os.listdir(os.path.join(tmp_path, "images", "rootfs")) == []
    tmp = os.listdir(os.path.join(tmp_path, "images", "tmp"))
    assert not any(t.startswith(bad[7:]) for t in tmp), tmp


@pytest.mark.parametrize("delta", [+1000, -1000])
def test_layer_size_must_match_the_manifest(tmp_path, reg, delta):
    body, _ = reg.get(f"/v2/{REPO}/manifests/latest",
                      accept="application/vnd.oci.image.manifest.v1+json")
    man = json.loads(body)
    man["layers"][0]["size"] += delta
    tag = f"size{'plus' if delta > 0 else 'minus'}"
    reg.push_manifest(REPO, tag, man, R.OCI_MANIFEST)
    r = msb(tmp_path, "pull", f"{reg.addr}/{REPO}:{tag}")
    assert r.returncode == 8, r.stderr
    assert ("only" if delta > 0 else "larger") in r.stderr
    d = man["layers"][0]["digest"][7:]
    assert d not in blobs(tmp_path)
    assert not any(t.startswith(d) for t in os.listdir(os.path.join(tmp_path, "images", "tmp")))
    assert msb(tmp_path, "image", "ls", "-q", check=0).stdout.strip() == ""


def test_a_layer_declared_empty_that_is_not(tmp_path, reg):
    body, _ = reg.get(f"/v2/{REPO}/manifests/latest",
                      accept="application/vnd.oci.image.manifest.v1+json")
    man = json.loads(body)
    man["layers"][0]["size"] = 0
    reg.push_manifest(REPO, "sizezero", man, R.OCI_MANIFEST)
    r = msb(tmp_path, "pull", f"{reg.addr}/{REPO}:sizezero", timeout=60)
    assert r.returncode == 8, r.stderr


def test_interrupted_download_is_resumed_with_range(tmp_path, front, reg):
    d = layer_digest(reg)
    front.cut_after[d] = 300_000
    msb(tmp_path, "pull", f"{front.addr}/{REPO}", check=0)
    reqs = [h for _, _, p, h in front.blob_requests() if d in p]
    assert len(reqs) == 2, reqs
    assert "Range" not in reqs[0]
    assert reqs[1].get("Range") == "bytes=300000-"
    assert d[7:] in blobs(tmp_path)


def test_server_errors_are_retried_with_backoff(tmp_path, front, reg):
    d = layer_digest(reg)
    front.fail_first[d] = 3
    t = time.monotonic()
    msb(tmp_path, "pull", f"{front.addr}/{REPO}", check=0)
    took = time.monotonic() - t
    assert len([p for _, _, p, _ in front.blob_requests() if d in p]) == 4
    assert took >= 0.25 + 0.5 + 1.0 - 0.1  # three waits, doubling from 250 ms
    front.fail_first[d] = 10  # more than the retry budget (5 attempts)
    r = msb(tmp_path / "other", "pull", f"{front.addr}/{REPO}")
    assert r.returncode == 6 and "gave up after 5 attempts" in r.stderr, r.stderr


def test_killed_pull_leaves_no_complete_image_and_resumes(tmp_path, front, reg):
    d = layer_digest(reg)
    front.throttle[d] = 0.5
    ref = f"{front.addr}/{REPO}"
    e = dict(os.environ, MICROSANDBOX_HOME=str(tmp_path), HOME=str(tmp_path))
    p = subprocess.Popen([MSB, "pull", ref], env=e, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    partial = os.path.join(tmp_path, "images", "tmp", d[7:] + ".partial")
    deadline = time.time() + 30 * SCALE
    while time.time() < deadline:
        if os.path.exists(partial) and os.path.getsize(partial) >= 65536:
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    have = os.path.getsize(partial)
    assert have > 0
    assert msb(tmp_path, "image", "ls", "-q", check=0).stdout.strip() == ""
    assert msb(tmp_path, "image", "inspect", ref).returncode == 3
    del front.throttle[d]
    msb(tmp_path, "pull", ref, check=0)
    last = [h for _, _, p, h in front.blob_requests() if d in p][-1]
    assert last.get("Range") == f"bytes={have}-"
    assert inspect(tmp_path, ref)["layers"][0]["digest"] == d


def test_concurrent_pulls_of_one_image(tmp_path, front, reg):
    front.throttle[layer_digest(reg)] = 0.05
    ref = f"{front.addr}/{REPO}"
    e = dict(os.environ, MICROSANDBOX_HOME=str(tmp_path), HOME=str(tmp_path))
    ps = [subprocess.Popen([MSB, "pull", ref], env=e, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=120 * SCALE) for p in ps]
    assert [p.returncode for p in ps] == [0, 0, 0], outs
    assert msb(tmp_path, "image", "ls", "-q", check=0).stdout.split() == [f"{ref}:latest"]
    img = inspect(tmp_path, ref)
    assert os.path.exists(img["rootfs_path"])


def test_layers_are_fetched_concurrently_and_kept_in_manifest_order(tmp_path, front, reg):
    man = reg.multilayer
    for l in man["layers"][1:]:
        front.throttle[l["digest"]] = 0.02
    ref = f"{front.addr}/{REPO}:layers"
    msb(tmp_path, "pull", ref, check=0)
    img = inspect(tmp_path, ref)
    assert [l["digest"] for l in img["layers"]] == [l["digest"] for l in man["layers"]]
    spans = [(s, e) for d, s, e in front.served if d in front.throttle]
    assert len(spans) == 3
    # At least two throttled layers were on the wire at the same time.
    assert any(a[0] < b[1] and b[0] < a[1] for i, a in enumerate(spans) for b in spans[i + 1:]), spans
    assert os.path.getsize(img["rootfs_path"]) > 6_000_000
    if img["rootfs_format"] == "ext4" and os.access("/sbin/debugfs", os.X_OK):
        cat = lambda p: subprocess.run(["/sbin/debugfs", "-R", f"cat {p}", img["rootfs_path"]],
                                       capture_output=True).stdout
        assert cat("/etc/layer") == b"two\n"  # the upper layer wins
        assert cat("/etc/gone") == b""  # whited out
        assert cat("/bin/busybox")[:4] == b"\x7fELF"  # the base layer is there


def test_zstd_layers(tmp_path, reg):
    ref = f"{reg.addr}/{REPO}:zstd"
    msb(tmp_path, "pull", ref, check=0)
    img = inspect(tmp_path, ref)
    assert img["layers"][0]["media_type"] == "application/vnd.oci.image.layer.v1.tar+zstd"
    assert os.path.getsize(img["rootfs_path"]) > 1_000_000


def test_docker_v2_manifest(tmp_path, reg):
    ref = f"{reg.addr}/{REPO}:v2s2"
    msb(tmp_path, "pull", ref, check=0)
    img = inspect(tmp_path, ref)
    assert img["media_type"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert img["layers"][0]["media_type"] == \
        "application/vnd.docker.image.rootfs.diff.tar.gzip"


def test_multi_arch_index_picks_linux_amd64_not_the_attestation(tmp_path, reg):
    ref = f"{reg.addr}/microsandbox/multi"
    r = msb(tmp_path, "pull", ref, check=0)
    img = inspect(tmp_path, ref)
    assert img["manifest_digest"] == reg.amd64
    assert img["index_digest"] is not None
    assert img["config"]["architecture"] == "amd64"
    assert "index" in r.stderr


def test_pull_by_digest(tmp_path, reg):
    ref = f"{reg.addr}/{REPO}@{reg.amd64}"
    msb(tmp_path, "pull", ref, check=0)
    assert inspect(tmp_path, ref)["manifest_digest"] == reg.amd64
    wrong = f"{reg.addr}/{REPO}@sha256:" + "0" * 64
    assert msb(tmp_path, "pull", wrong).returncode == 3


def test_docker_io_mirror(tmp_path, reg):
    (tmp_path / "config.json").write_text(json.dumps({
        "registry-mirrors": [f"http://127.0.0.1:{R.free_port()}", f"http://{reg.addr}"]}))
    r = msb(tmp_path, "pull", REPO, check=0)
    assert r.stdout.split()[0] == "docker.io/microsandbox/busybox:latest"
    assert inspect(tmp_path, REPO)["manifest_digest"] == reg.amd64


def test_loopback_registry_over_tls_with_a_self_signed_certificate(tmp_path, layout):
    r2 = R.Registry(tls=True)
    try:
        r2.skopeo_push(layout, REPO, "latest")
        ref = f"{r2.addr}/{REPO}"
        msb(tmp_path, "pull", ref, check=0)  # HTTPS first, certificate not checked
        assert inspect(tmp_path, ref)["config"]["cmd"] == ["/bin/sh"]
    finally:
        r2.stop()


def test_offline_use_of_a_stored_image(tmp_path, layout):
    r2 = R.Registry()
    try:
        r2.skopeo_push(layout, REPO, "latest")
        ref = f"{r2.addr}/{REPO}"
        msb(tmp_path, "pull", ref, check=0)
    finally:
        r2.stop()
    img = inspect(tmp_path, ref)
    assert os.path.exists(img["rootfs_path"])
    r = msb(tmp_path, "pull", ref)
    assert r.returncode == 6, r.stderr  # the registry is gone: a network error ...
    assert msb(tmp_path, "image", "ls", "-q", check=0).stdout.split() == [f"{ref}:latest"]


def test_bad_references_and_missing_images(tmp_path, reg):
    r = msb(tmp_path, "pull", "Bad/Name")
    assert r.returncode == 2 and "lower-case" in r.stderr
    r = msb(tmp_path, "pull", f"{reg.addr}/microsandbox/nothing")
    assert r.returncode == 3 and "not found" in r.stderr
    r = msb(tmp_path, "image", "inspect", "python")
    assert r.returncode == 3 and "msb pull python" in r.stderr


def test_rm_and_prune(tmp_path, reg):
    ref = f"{reg.addr}/{REPO}"
    msb(tmp_path, "pull", ref, check=0)
    msb(tmp_path, "pull", f"{ref}:zstd", check=0)
    n = len(blobs(tmp_path))
    msb(tmp_path, "image", "rm", f"{ref}:zstd", check=0)
    assert len(blobs(tmp_path)) < n
    img = inspect(tmp_path, ref)
    for l in img["layers"]:
        assert os.path.exists(l["path"])
    open(os.path.join(tmp_path, "images", "tmp", "junk.partial"), "w").write("x")
    os.makedirs(os.path.join(tmp_path, "images", "tmp", "archive.x", "blobs"))
    open(os.path.join(tmp_path, "images", "rootfs", "x.img.tmp-abc"), "w").write("x")
    msb(tmp_path, "image", "prune", check=0)
    assert os.listdir(os.path.join(tmp_path, "images", "tmp")) == []
    assert os.listdir(os.path.join(tmp_path, "images", "rootfs")) == \
        [os.path.basename(img["rootfs_path"])]
    msb(tmp_path, "image", "rm", ref, check=0)
    assert blobs(tmp_path) == set()
    assert os.listdir(os.path.join(tmp_path, "images", "rootfs")) == []
