"""microsandbox: run untrusted code in microVM sandboxes through an msb server.

    from microsandbox import PythonSandbox

    async with PythonSandbox.create(name="demo") as sb:
        exec = await sb.run("x = 6 * 7")
        print(await (await sb.run("print(x)")).output())

The API is upstream microsandbox's Python SDK (PythonSandbox, NodeSandbox,
run, command.run, metrics) plus streamed processes (`command.stream`),
stdin, files (`sb.files`), per-run timeouts and typed errors
(`microsandbox.errors`).  Standard library only.
"""

from .base_sandbox import BaseSandbox
from .client import DEFAULT_SERVER_URL, Client
from .command import Command, Output, Process
from .errors import (
    AuthError,
    FileNotFound,
    GuestError,
    InvalidRequest,
    MethodNotFound,
    MicrosandboxError,
    NetworkError,
    NotFound,
    NotStarted,
    ProtocolError,
    SandboxNotFound,
    ServerError,
    ServerUnreachable,
    StateError,
    Timeout,
)
from .execution import CommandExecution, Execution
from .files import FileInfo, Files
from .metrics import Metrics
from .node_sandbox import NodeSandbox
from .python_sandbox import PythonSandbox

__version__ = "0.2.0"

__all__ = [
    "AuthError",
    "BaseSandbox",
    "Client",
    "Command",
    "CommandExecution",
    "DEFAULT_SERVER_URL",
    "Execution",
    "FileInfo",
    "FileNotFound",
    "Files",
    "GuestError",
    "InvalidRequest",
    "MethodNotFound",
    "Metrics",
    "MicrosandboxError",
    "NetworkError",
    "NodeSandbox",
    "NotFound",
    "NotStarted",
    "Output",
    "Process",
    "ProtocolError",
    "PythonSandbox",
    "SandboxNotFound",
    "ServerError",
    "ServerUnreachable",
    "StateError",
    "Timeout",
]
