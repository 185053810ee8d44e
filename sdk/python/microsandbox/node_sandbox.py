"""NodeSandbox: image microsandbox/node, code run by a Node.js REPL."""

from .base_sandbox import BaseSandbox


class NodeSandbox(BaseSandbox):
    _language = "nodejs"

    async def get_default_image(self) -> str:
        return "microsandbox/node"
