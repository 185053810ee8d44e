"""PythonSandbox: image microsandbox/python, code run by a Python REPL."""

from .base_sandbox import BaseSandbox


class PythonSandbox(BaseSandbox):
    _language = "python"

    async def get_default_image(self) -> str:
        return "microsandbox/python"
