"""Loopback OpenAI-compatible servers that read requests the way vLLM, SGLang, TGI and OpenAI do.

Each one says what it is the way its real server does and validates a chat request against what the
real server's request model accepts (read from their source: see each module), down to which unknown
fields are dropped silently and which are refused. A scripted model answers: free text without a
constraint, a constrained answer when the server applies one. Tests use them to check that safevid
expresses constraints in each server's own dialect and notices when one is ignored.
"""

from safevid.testing.servers.base import FREE_ANSWER, DialectServer
from safevid.testing.servers.openai import OpenAIServer
from safevid.testing.servers.sglang import SGLangServer
from safevid.testing.servers.tgi import TGIServer
from safevid.testing.servers.vllm import VLLMServer

__all__ = ["FREE_ANSWER", "DialectServer", "OpenAIServer", "SGLangServer", "TGIServer", "VLLMServer"]
