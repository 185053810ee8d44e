"""The connection to one msb server: URL, API key, JSON-RPC and the raw routes.

`Client` is usable on its own (list sandboxes, health, any method by name);
every sandbox object holds one.
"""

import json
import os
import uuid
from pathlib import Path
from typing import Any, AsyncIterator, Dict, List, Optional
from urllib.parse import urlencode

from . import _http
from .errors import MicrosandboxError, ProtocolError, from_response

DEFAULT_SERVER_URL = "http://127.0.0.1:5555"


def load_dotenv(path: str = ".env") -> None:
    """Load KEY=VALUE lines from `path` into os.environ without overriding
    what is set (as python-dotenv does, which upstream's SDK used).  A missing
    file is not an error."""
    try:
        text = Path(path).read_text()
    except OSError:
        return
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[7:].lstrip()
        key, eq, value = line.partition("=")
        key = key.strip()
        if not eq or not key:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        os.environ.setdefault(key, value)


def resolve(server_url: Optional[str], api_key: Optional[str]) -> "tuple[str, Optional[str]]":
    if "MSB_API_KEY" not in os.environ:
        load_dotenv()
    url = server_url or os.environ.get("MSB_SERVER_URL") or DEFAULT_SERVER_URL
    key = api_key or os.environ.get("MSB_API_KEY") or None
    return url.rstrip("/"), key


class Client:
    """A server connection.  `server_url` defaults to $MSB_SERVER_URL, then
    http://127.0.0.1:5555; `api_key` to $MSB_API_KEY (a `.env` file in the
    working directory is read when MSB_API_KEY is not set)."""

    def __init__(self, server_url: Optional[str] = None, api_key: Optional[str] = None) -> None:
        self.server_url, self.api_key = resolve(server_url, api_key)
        _http.split_url(self.server_url)  # fail early on a bad URL

    def _headers(self, extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
        h: Dict[str, str] = {}
        if self.api_key:
            h["Authorization"] = f"Bearer {self.api_key}"
        h.update(extra or {})
        return h

    @staticmethod
    def envelope(method: str, params: Any) -> Dict[str, Any]:
        return {"jsonrpc": "2.0", "method": method, "params": params, "id": str(uuid.uuid4())}

    async def rpc(
        self,
        method: str,
        params: Any = None,
        *,
        timeout: Optional[float] = None,
        context: Optional[str] = None,
        files: bool = False,
    ) -> Any:
        """Call one JSON-RPC method and return its `result`; every failure
        raises the matching MicrosandboxError subclass with the server's
        message (`context` prefixes it)."""
        body = json.dumps(self.envelope(method, params)).encode()
        resp = await _http.request(
            "POST",
            self.server_url + "/api/v1/rpc",
            body=body,
            headers=self._headers({"Content-Type": "application/json"}),
            timeout=timeout,
        )
        data = await resp.read()
        if not 200 <= resp.status < 300:
            raise from_response(resp.status, data, context, files)
        try:
            doc = json.loads(data)
        except ValueError as e:
            raise ProtocolError(f"the server's reply is not JSON: {data[:200]!r}", context=context) from e
        if isinstance(doc, dict) and "error" in doc:
            raise from_response(resp.status, data, context, files)
        if not isinstance(doc, dict) or "result" not in doc:
            raise ProtocolError(f"the server's reply has no result: {data[:200]!r}", context=context)
        return doc["result"]

    async def open_stream(
        self, method: str, params: Any, *, context: Optional[str] = None
    ) -> _http.Response:
        """POST a streaming method; returns the response positioned at its
        NDJSON body (errors before the stream starts are raised)."""
        body = json.dumps(self.envelope(method, params)).encode()
        resp = await _http.request(
            "POST",
            self.server_url + "/api/v1/rpc",
            body=body,
            headers=self._headers(
                {"Content-Type": "application/json", "Accept": "application/x-ndjson"}
            ),
            timeout=None,  # the exec may take long to start in a slow guest
        )
        ctype = resp.headers.get("content-type", "")
        if resp.status != 200 or "ndjson" not in ctype:
            data = await resp.read()
            raise from_response(resp.status if resp.status != 200 else 500, data, context)
        return resp

    def file_url(self, sandbox: str, path: str, mode: Optional[int] = None) -> str:
        q = {"sandbox": sandbox, "path": path}
        if mode is not None:
            q["mode"] = format(mode, "o")
        return self.server_url + "/api/v1/sandbox/file?" + urlencode(q)

    async def put_file(
        self,
        sandbox: str,
        path: str,
        body: "bytes | AsyncIterator[bytes]",
        length: Optional[int],
        mode: Optional[int] = None,
        context: Optional[str] = None,
    ) -> Dict[str, Any]:
        resp = await _http.request(
            "PUT",
            self.file_url(sandbox, path, mode),
            body=body,
            length=length,
            headers=self._headers({"Content-Type": "application/octet-stream"}),
            timeout=None,
            expect_continue=True,
        )
        data = await resp.read()
        if not 200 <= resp.status < 300:
            raise from_response(resp.status, data, context, files=True)
        try:
            result = json.loads(data)["result"]
        except (ValueError, KeyError, TypeError) as e:
            raise ProtocolError(f"bad upload reply {data[:200]!r}", context=context) from e
        if not isinstance(result, dict):
            raise ProtocolError(f"bad upload reply {data[:200]!r}", context=context)
        return result

    async def get_file(self, sandbox: str, path: str, context: Optional[str] = None) -> _http.Response:
        resp = await _http.request(
            "GET", self.file_url(sandbox, path), headers=self._headers(), timeout=None
        )
        if resp.status != 200:
            data = await resp.read()
            raise from_response(resp.status, data, context, files=True)
        return resp

    async def health(self) -> bool:
        """True when GET /api/v1/health answers 200 (raises ServerUnreachable
        when nothing listens)."""
        resp = await _http.request("GET", self.server_url + "/api/v1/health", timeout=10)
        await resp.read()
        return resp.status == 200

    async def list(self) -> List[Dict[str, Any]]:
        """The server's sandboxes: [{name, status, image, pid}] (sandbox.list)."""
        res = await self.rpc("sandbox.list", {}, context="Failed to list sandboxes")
        if not isinstance(res, dict):
            raise ProtocolError(f"bad sandbox.list result {res!r}")
        return list(res.get("sandboxes", []))


__all__ = ["Client", "DEFAULT_SERVER_URL", "load_dotenv", "MicrosandboxError"]
