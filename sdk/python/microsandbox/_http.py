"""A small HTTP/1.1 client on asyncio streams (standard library only).

One connection per request (`Connection: close`): the server is normally on
loopback, and a streamed exec owns its connection anyway (closing it releases
the exec on the server).  Bodies: Content-Length, chunked or until close.
"""

import asyncio
import ssl
from typing import AsyncIterator, Dict, Optional, Tuple, Union
from urllib.parse import urlsplit

from .errors import ProtocolError, ServerUnreachable, Timeout

CONNECT_TIMEOUT = 10.0
_MAX_HEADER_LINE = 64 * 1024
# Bodies larger than this are sent with "Expect: 100-continue".
EXPECT_ABOVE = 1024 * 1024
# Longest NDJSON event accepted from a stream (events carry output chunks).
MAX_LINE = 16 * 1024 * 1024

Body = Union[bytes, "AsyncIterator[bytes]", None]


class Response:
    """A reply whose body has not been read yet.  Close it (or read it to the
    end) to release the connection."""

    def __init__(
        self,
        status: int,
        reason: str,
        headers: Dict[str, str],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        head_only: bool = False,
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self._reader = reader
        self._writer = writer
        self._done = head_only
        te = headers.get("transfer-encoding", "").lower()
        self._chunked = "chunked" in te
        cl = headers.get("content-length")
        self._remaining: Optional[int] = None
        if not self._chunked and cl is not None:
            try:
                self._remaining = int(cl)
            except ValueError as e:
                raise ProtocolError(f"bad Content-Length {cl!r}") from e
        self._chunk_left = 0

    async def iter_chunks(self, size: int = 65536) -> AsyncIterator[bytes]:
        """The body as it arrives."""
        r = self._reader
        while not self._done:
            if self._chunked:
                if self._chunk_left == 0:
                    line = await r.readline()
                    if not line:
                        raise ProtocolError("connection closed inside a chunked body")
                    try:
                        self._chunk_left = int(line.split(b";")[0].strip(), 16)
                    except ValueError as e:
                        raise ProtocolError(f"bad chunk size line {line[:40]!r}") from e
                    if self._chunk_left == 0:
                        while (await r.readline()).strip():  # trailers
                            pass
                        self._done = True
                        break
                data = await r.read(min(size, self._chunk_left))
                if not data:
                    raise ProtocolError("connection closed inside a chunk")
                self._chunk_left -= len(data)
                if self._chunk_left == 0:
                    await r.readexactly(2)
                yield data
            elif self._remaining is not None:
                if self._remaining == 0:
                    self._done = True
                    break
                data = await r.read(min(size, self._remaining))
                if not data:
                    raise ProtocolError("connection closed before the whole body arrived")
                self._remaining -= len(data)
                yield data
            else:
                data = await r.read(size)
                if not data:
                    self._done = True
                    break
                yield data
        self.close()

    async def iter_lines(self, limit: int = MAX_LINE) -> AsyncIterator[bytes]:
        """The body split at newlines (without them), as the lines complete;
        a line longer than `limit` is a ProtocolError."""
        buf = bytearray()
        async for chunk in self.iter_chunks():
            # only the new bytes can hold a newline (no quadratic rescans)
            i = chunk.find(b"\n")
            buf += chunk
            if i < 0:
                if len(buf) > limit:
                    self.close()
                    raise ProtocolError(f"a stream event is over {limit} bytes")
                continue
            *lines, rest = bytes(buf).split(b"\n")
            buf = bytearray(rest)
            for line in lines:
                yield line.rstrip(b"\r")
            if len(buf) > limit:
                self.close()
                raise ProtocolError(f"a stream event is over {limit} bytes")
        if buf:
            yield bytes(buf)

    async def read(self) -> bytes:
        parts = [c async for c in self.iter_chunks()]
        return b"".join(parts)

    def close(self) -> None:
        self._done = True
        if not self._writer.is_closing():
            self._writer.close()


def split_url(url: str) -> Tuple[str, str, int, str]:
    u = urlsplit(url)
    if u.scheme not in ("http", "https"):
        raise ValueError(f"server URL must be http:// or https://, not {url!r}")
    port = u.port or (443 if u.scheme == "https" else 80)
    return u.scheme, u.hostname or "127.0.0.1", port, u.path.rstrip("/")


async def _read_head(
    reader: asyncio.StreamReader,
) -> Tuple[int, str, Dict[str, str]]:
    line = await reader.readline()
    if not line:
        raise ProtocolError("the server closed the connection without a reply")
    parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise ProtocolError(f"not an HTTP reply: {line[:60]!r}")
    try:
        status = int(parts[1])
    except ValueError as e:
        raise ProtocolError(f"bad status line {line[:60]!r}") from e
    reason = parts[2] if len(parts) > 2 else ""
    headers: Dict[str, str] = {}
    while True:
        h = await reader.readline()
        if len(h) > _MAX_HEADER_LINE:
            raise ProtocolError("reply header line too long")
        h = h.rstrip(b"\r\n")
        if not h:
            break
        k, _, v = h.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, reason, headers


async def request(
    method: str,
    url: str,
    *,
    body: Body = None,
    length: Optional[int] = None,
    headers: Optional[Dict[str, str]] = None,
    timeout: Optional[float] = None,
    expect_continue: bool = False,
) -> Response:
    """Send one request and return the reply once its head has arrived.

    `body` is bytes or an async iterator of bytes (then `length` gives its
    Content-Length, or it is sent chunked).  `timeout` bounds the wait for the
    reply's head (not the body: streams may last).  With `expect_continue` the
    body is sent only after "100 Continue" (or after one second without any
    reply), so a request refused up front does not upload its body first.
    """
    scheme, host, port, base = split_url(url)
    u = urlsplit(url)
    target = (u.path or "/") + (f"?{u.query}" if u.query else "")
    where = f"{scheme}://{host}:{port}"
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                host,
                port,
                ssl=ssl.create_default_context() if scheme == "https" else None,
                limit=_MAX_HEADER_LINE,
            ),
            CONNECT_TIMEOUT,
        )
    except asyncio.TimeoutError as e:
        raise ServerUnreachable(
            f"cannot reach the microsandbox server at {where}: connect timed out after "
            f"{CONNECT_TIMEOUT:.0f} s; is `msb server start` running there?"
        ) from e
    except OSError as e:
        raise ServerUnreachable(
            f"cannot reach the microsandbox server at {where}: "
            f"{'connection refused' if isinstance(e, ConnectionRefusedError) else (e.strerror or e)}"
            f"; start it with `msb server start` (or `msb server start "
            f"--dev` without API keys) or point MSB_SERVER_URL at it"
        ) from e

    hdrs = {"Host": f"{host}:{port}", "Connection": "close", "User-Agent": "microsandbox-python"}
    hdrs.update(headers or {})
    if isinstance(body, (bytes, bytearray)):
        hdrs["Content-Length"] = str(len(body))
    elif body is not None:
        if length is not None:
            hdrs["Content-Length"] = str(length)
        else:
            hdrs["Transfer-Encoding"] = "chunked"
    elif method in ("POST", "PUT"):
        hdrs["Content-Length"] = "0"
    if isinstance(body, (bytes, bytearray)) and len(body) > EXPECT_ABOVE:
        # as curl does: a large body waits for the server's go-ahead, so a
        # refusal (413 over its limit) arrives before the upload, instead of
        # a reset connection that loses the reply
        expect_continue = True
    if expect_continue and body is not None:
        hdrs["Expect"] = "100-continue"
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout

    def left() -> Optional[float]:
        return None if deadline is None else max(0.0, deadline - loop.time())

    async def send_body() -> None:
        try:
            await _send_body()
        except (ConnectionError, OSError):
            # The server may have answered (413: too large; 4xx: refused) and
            # closed before taking the whole body: its reply is the error to
            # report, if it is there.  Otherwise the connection failed.
            pass

    async def _send_body() -> None:
        if isinstance(body, (bytes, bytearray)):
            writer.write(bytes(body))
        elif body is not None:
            chunked = "Transfer-Encoding" in hdrs
            async for piece in body:
                if not piece:
                    continue
                if chunked:
                    writer.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
                else:
                    writer.write(piece)
                await writer.drain()
            if chunked:
                writer.write(b"0\r\n\r\n")
        await writer.drain()

    try:
        writer.write(head.encode("latin-1") + b"\r\n")
        await writer.drain()
        early = None
        if expect_continue and body is not None:
            try:
                early = await asyncio.wait_for(_read_head(reader), 1.0)
            except asyncio.TimeoutError:
                early = None
            if early is not None and early[0] == 100:
                early = None
                await send_body()
            elif early is None:
                await send_body()
        else:
            await send_body()
        if early is not None:
            status, reason, rh = early
        else:
            while True:
                status, reason, rh = await asyncio.wait_for(_read_head(reader), left())
                if status != 100:
                    break
    except asyncio.TimeoutError as e:
        writer.close()
        raise Timeout(f"no reply from {where} within {timeout} s") from e
    except (ConnectionError, OSError) as e:
        writer.close()
        raise ServerUnreachable(f"the connection to {where} failed: {e}") from e
    except BaseException:
        writer.close()
        raise
    return Response(status, reason, rh, reader, writer, head_only=(method == "HEAD"))
