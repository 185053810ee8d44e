"""Real registries on 127.0.0.1 for the image tests.

- Registry: Debian's `docker-registry` (the CNCF distribution server) on a free port with a
  temporary storage directory, no auth.  Images go in with `skopeo copy` or with push_*()
  here (the distribution API, by hand, for shapes skopeo does not make: a multi-arch index
  with an attestation manifest).
- AuthFront: a stdlib HTTP server in front of a Registry that behaves as Docker Hub does:
  401 + `WWW-Authenticate: Bearer realm=...` on /v2/, a token endpoint (optionally
  demanding Basic credentials), and blob GETs redirected (307) to another host name
  (127.0.0.2) that serves the bytes.  It records every request (with its headers) and can
  inject faults per blob: cut the connection after N bytes, or corrupt a byte.
"""

import atexit
import base64
import hashlib
import http.server
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _wait_http(url, timeout=30):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            import ssl
            ctx = ssl._create_unverified_context() if url.startswith("https") else None
            with urllib.request.urlopen(url, timeout=2, context=ctx) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError as e:
            last = e
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up: {last}")


def test_image_layout(name="busybox"):
    """Build (or reuse from the cache) one of the project's test images; its layout dir."""
    out = subprocess.run([os.path.join(ROOT, "scripts", "test-images"), name], check=True,
                         capture_output=True, text=True).stdout.split()
    return out[1]


class Registry:
    def __init__(self, tls=False):
        """tls: serve HTTPS with a fresh self-signed certificate (as a registry on a LAN
        often does); clients must be told it is insecure (loopback always is)."""
        self.dir = tempfile.mkdtemp(prefix="msb-registry-")
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.tls = tls
        tls_cfg = ""
        if tls:
            crt, key = os.path.join(self.dir, "crt.pem"), os.path.join(self.dir, "key.pem")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                            "-days", "1", "-subj", "/CN=msb-test", "-keyout", key, "-out", crt],
                           check=True, capture_output=True)
            tls_cfg = f"  tls:\n    certificate: {crt}\n    key: {key}\n"
        cfg = os.path.join(self.dir, "config.yml")
        with open(cfg, "w") as f:
            f.write(f"""version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {self.dir}/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{self.port}
{tls_cfg}""")
        self.log = open(os.path.join(self.dir, "registry.log"), "w")
        self.proc = subprocess.Popen(["docker-registry", "serve", cfg], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        atexit.register(self.stop)  # never outlive the test process
        self.url = f"{'https' if tls else 'http'}://{self.addr}"
        _wait_http(f"{self.url}/v2/")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.log.closed:
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- pushing ---------------------------------------------------------------------------
    def skopeo_push(self, layout, repo, tag, *extra):
        subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", *extra,
                        f"oci:{layout}:latest", f"docker://{self.addr}/{repo}:{tag}"],
                       check=True, capture_output=True)

    def _open(self, req):
        if not self.tls:
            return urllib.request.urlopen(req)
        import ssl
        return urllib.request.urlopen(req, context=ssl._create_unverified_context())

    def push_blob(self, repo, data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        req = urllib.request.Request(f"{self.url}/v2/{repo}/blobs/uploads/",
                                     method="POST", data=b"")
        with self._open(req) as r:
            loc = r.headers["Location"]
        if loc.startswith("/"):
            loc = f"{self.url}{loc}"
        sep = "&" if "?" in loc else "?"
        req = urllib.request.Request(f"{loc}{sep}digest={digest}", method="PUT", data=data,
                                     headers={"Content-Type": "application/octet-stream"})
        self._open(req).close()
        return digest

    def push_manifest(self, repo, ref, body, media_type):
        data = json.dumps(body).encode() if not isinstance(body, bytes) else body
        req = urllib.request.Request(f"{self.url}/v2/{repo}/manifests/{ref}",
                                     method="PUT", data=data,
                                     headers={"Content-Type": media_type})
        self._open(req).close()
        return "sha256:" + hashlib.sha256(data).hexdigest(), len(data)

    def get(self, path, accept=None):
        req = urllib.request.Request(f"{self.url}{path}")
        if accept:
            req.add_header("Accept", accept)
        with self._open(req) as r:
            return r.read(), dict(r.headers)


OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"


def push_multiarch(reg, layout, repo, tag="latest"):
    """An index as buildx makes it: an attestation manifest listed FIRST and claiming
    linux/amd64 (with the vnd.docker.reference.type annotation), an arm64 image, then the
    real amd64 image.  Returns the amd64 manifest digest."""
    with open(os.path.join(layout, "index.json")) as f:
        desc = json.load(f)["manifests"][0]
    blob = lambda d: open(os.path.join(layout, "blobs", "sha256", d[7:]), "rb").read()
    man_bytes = blob(desc["digest"])
    man = json.loads(man_bytes)
    for d in [man["config"]] + man["layers"]:
        reg.push_blob(repo, blob(d["digest"]))
    amd64, amd64_size = reg.push_manifest(repo, desc["digest"], man_bytes, OCI_MANIFEST)
    # arm64: same layers, a config that says arm64 (never run; must not be chosen).
    cfg = json.loads(blob(man["config"]["digest"]))
    cfg["architecture"] = "arm64"
    cfg_b = json.dumps(cfg).encode()
    cfg_d = reg.push_blob(repo, cfg_b)
    arm = dict(man, config={"mediaType": OCI_CONFIG, "digest": cfg_d, "size": len(cfg_b)})
    arm_d, arm_size = reg.push_manifest(repo, "arm64", arm, OCI_MANIFEST)
    # The attestation: an in-toto layer, which is not a filesystem layer at all.
    att_layer = json.dumps({"_type": "https://in-toto.io/Statement/v0.1"}).encode()
    att_ld = reg.push_blob(repo, att_layer)
    empty = b"{}"
    empty_d = reg.push_blob(repo, empty)
    att = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": {"mediaType": OCI_CONFIG, "digest": empty_d, "size": 2},
           "layers": [{"mediaType": "application/vnd.in-toto+json", "digest": att_ld,
                       "size": len(att_layer)}]}
    att_d, att_size = reg.push_manifest(repo, "att", att, OCI_MANIFEST)
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": att_d, "size": att_size,
         "platform": {"os": "linux", "architecture": "amd64"},
         "annotations": {"vnd.docker.reference.type": "attestation-manifest",
                         "vnd.docker.reference.digest": amd64}},
        {"mediaType": OCI_MANIFEST, "digest": arm_d, "size": arm_size,
         "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        {"mediaType": OCI_MANIFEST, "digest": amd64, "size": amd64_size,
         "platform": {"os": "linux", "architecture": "amd64"}},
    ]}
    reg.push_manifest(repo, tag, index, OCI_INDEX)
    return amd64


def push_zstd(reg, layout, repo, tag="zstd"):
    """The layout's image with every layer recompressed with zstd (`zstd` CLI), pushed as
    an OCI manifest whose layers are application/vnd.oci.image.layer.v1.tar+zstd."""
    import gzip
    with open(os.path.join(layout, "index.json")) as f:
        desc = json.load(f)["manifests"][0]
    blob = lambda d: open(os.path.join(layout, "blobs", "sha256", d[7:]), "rb").read()
    man = json.loads(blob(desc["digest"]))
    reg.push_blob(repo, blob(man["config"]["digest"]))
    layers = []
    for l in man["layers"]:
        raw = gzip.decompress(blob(l["digest"]))
        z = subprocess.run(["zstd", "-q", "-c", "-19"], input=raw, check=True,
                           capture_output=True).stdout
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd",
                       "digest": reg.push_blob(repo, z), "size": len(z)})
    man["layers"] = layers
    return reg.push_manifest(repo, tag, man, OCI_MANIFEST)[0]


def _tar(entries):
    """An uncompressed tar of (name, bytes or None for a directory) entries."""
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in entries:
            ti = tarfile.TarInfo(name)
            if data is None:
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o755
            else:
                ti.size = len(data)
                ti.mode = 0o644
            t.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def push_multilayer(reg, layout, repo, tag="layers"):
    """The layout's image plus three more gzip layers on top (a file, its replacement, and a
    whiteout of another), so that order matters.  Returns the manifest (a dict)."""
    import gzip
    with open(os.path.join(layout, "index.json")) as f:
        desc = json.load(f)["manifests"][0]
    blob = lambda d: open(os.path.join(layout, "blobs", "sha256", d[7:]), "rb").read()
    man = json.loads(blob(desc["digest"]))
    cfg = json.loads(blob(man["config"]["digest"]))
    for l in man["layers"]:
        reg.push_blob(repo, blob(l["digest"]))
    big = os.urandom(2 << 20)  # incompressible: a few 64 KiB chunks to throttle
    extra = [
        [("etc", None), ("etc/layer", b"one\n"), ("etc/gone", b"x\n"), ("big1", big)],
        [("etc", None), ("etc/layer", b"two\n"), ("big2", big[::-1])],
        [("etc", None), ("etc/.wh.gone", b""), ("big3", big[1:] + big[:1])],
    ]
    for entries in extra:
        raw = _tar(entries)
        gz = gzip.compress(raw, mtime=0)
        cfg["rootfs"]["diff_ids"].append("sha256:" + hashlib.sha256(raw).hexdigest())
        man["layers"].append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                              "digest": reg.push_blob(repo, gz), "size": len(gz)})
    cfg_b = json.dumps(cfg).encode()
    man["config"] = {"mediaType": OCI_CONFIG, "digest": reg.push_blob(repo, cfg_b),
                     "size": len(cfg_b)}
    reg.push_manifest(repo, tag, man, OCI_MANIFEST)
    return man


class AuthFront:
    """Docker Hub's shape in front of a Registry: token auth and blob redirects."""

    def __init__(self, upstream, user=None, password=None, redirect=True, basic=False):
        self.upstream = upstream
        self.basic = basic  # plain Basic auth on /v2/ (needs user/password), no tokens
        self.user, self.password = user, password
        self.redirect = redirect
        self.tokens = set()
        self.requests = []  # (server, method, path, headers dict)
        self.cut_after = {}  # digest -> bytes to send before dropping the connection (once)
        self.corrupt = set()  # digests whose bytes get one byte flipped
        self.throttle = {}  # digest -> seconds to sleep per 64 KiB sent
        self.served = []  # (digest, start, end) of each blob response, monotonic seconds
        self.fail_first = {}  # digest -> how many GETs answer 503 before it is served
        self.lock = threading.Lock()
        self.api_port = free_port("127.0.0.1")
        self.blob_port = free_port("127.0.0.2")
        self.addr = f"127.0.0.1:{self.api_port}"
        front = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                with front.lock:
                    front.requests.append((self.server.name, "GET", self.path,
                                           dict(self.headers)))
                try:
                    if self.server.name == "blob":
                        front._serve_blob(self)
                    else:
                        front._serve_api(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.api = http.server.ThreadingHTTPServer(("127.0.0.1", self.api_port), Handler)
        self.api.name = "api"
        self.blob = http.server.ThreadingHTTPServer(("127.0.0.2", self.blob_port), Handler)
        self.blob.name = "blob"
        for s in (self.api, self.blob):
            s.daemon_threads = True
            threading.Thread(target=s.serve_forever, daemon=True).start()

    def stop(self):
        for s in (self.api, self.blob):
            s.shutdown()
            s.server_close()

    # -- helpers ---------------------------------------------------------------------------
    def _send(self, h, code, body=b"", headers=None):
        h.send_response(code)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _challenge(self, h, repo):
        realm = f"http://{self.addr}/token"
        self._send(h, 401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', {
            "Content-Type": "application/json",
            "WWW-Authenticate":
                f'Bearer realm="{realm}",service="msb-test",scope="repository:{repo}:pull"'})

    def _serve_api(self, h):
        path = h.path
        if path.startswith("/token"):
            if self.user is not None:
                want = "Basic " + base64.b64encode(
                    f"{self.user}:{self.password}".encode()).decode()
                if h.headers.get("Authorization") != want:
                    return self._send(h, 401, b'{"details":"bad credentials"}',
                                      {"WWW-Authenticate": 'Basic realm="token"'})
            tok = secrets.token_hex(16)
            with self.lock:
                self.tokens.add(tok)
            return self._send(h, 200, json.dumps({"token": tok, "expires_in": 300}).encode(),
                              {"Content-Type": "application/json"})
        if not path.startswith("/v2/"):
            return self._send(h, 404)
        parts = path[4:].split("/")
        repo = "/".join(parts[:-2]) if len(parts) >= 3 else ""
        auth = h.headers.get("Authorization", "")
        if self.basic:
            want = "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            if auth != want:
                return self._send(h, 401, b'{"errors":[{"code":"UNAUTHORIZED"}]}',
                                  {"WWW-Authenticate": 'Basic realm="msb-test"'})
        elif not (auth.startswith("Bearer ") and auth[7:] in self.tokens):
            return self._challenge(h, repo)
        if len(parts) >= 3 and parts[-2] == "blobs" and self.redirect:
            digest = parts[-1]
            loc = f"http://127.0.0.2:{self.blob_port}/storage/{repo}/{digest}?sig=x"
            return self._send(h, 307, b"", {"Location": loc})
        req = urllib.request.Request(f"http://{self.upstream.addr}{path}")
        for k in ("Accept", "Range"):
            if h.headers.get(k):
                req.add_header(k, h.headers[k])
        try:
            with urllib.request.urlopen(req) as r:
                body = r.read()
                hdr = {k: r.headers[k] for k in ("Content-Type", "Docker-Content-Digest",
                                                  "Content-Range") if r.headers.get(k)}
                return self._send(h, r.status, body, hdr)
        except urllib.error.HTTPError as e:
            return self._send(h, e.code, e.read(), {"Content-Type": "application/json"})

    def _serve_blob(self, h):
        path = h.path.split("?")[0]
        if not path.startswith("/storage/"):
            return self._send(h, 404)
        repo, digest = path[len("/storage/"):].rsplit("/", 1)
        with self.lock:
            n = self.fail_first.get(digest, 0)
            if n:
                self.fail_first[digest] = n - 1
        if n:
            return self._send(h, 503, b"try again", {"Retry-After": "0"})
        body, _ = self.upstream.get(f"/v2/{repo}/blobs/{digest}")
        if digest in self.corrupt:
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        start = 0
        rng = h.headers.get("Range")
        if rng and rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[6:-1])
        with self.lock:
            cut = self.cut_after.pop(digest, None)
        code = 206 if start else 200
        h.send_response(code)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(len(body) - start))
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        h.end_headers()
        if cut is not None:
            h.wfile.write(body[start:start + cut])
            h.wfile.flush()
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)
            return
        t0 = time.monotonic()
        delay = self.throttle.get(digest)
        if not delay:
            h.wfile.write(body[start:])
        else:
            for off in range(start, len(body), 65536):
                h.wfile.write(body[off:off + 65536])
                h.wfile.flush()
                time.sleep(delay)
        with self.lock:
            self.served.append((digest, t0, time.monotonic()))

    def blob_requests(self):
        with self.lock:
            return [r for r in self.requests if r[0] == "blob"]
