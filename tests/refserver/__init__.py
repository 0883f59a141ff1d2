"""The reference server for vidline's tests: a local vLLM / DashScope stand-in that looks at frames.

    from tests.refserver import RefServer
    with RefServer() as server:
        client = openai.OpenAI(base_url=server.openai_base_url, api_key="sk-test")

See docs/parsing.md ("Reference server") for what it accepts and how it knows time.
"""

from tests.refserver.answers import STYLES
from tests.refserver.server import RecordedRequest, RefServer

__all__ = ["STYLES", "RecordedRequest", "RefServer"]
