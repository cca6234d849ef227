"""Models behind one interface: OpenAI, Anthropic and OpenAI-compatible servers.

::

    from polos.llm import LLMRequest, Message, create_provider

    provider = create_provider("anthropic")          # or "openai", "ollama", "groq"...
    response = await provider.generate(
        LLMRequest(model="claude-sonnet-4-5", messages=[Message(role="user", content="hi")])
    )
    async for event in provider.stream(request):     # text_delta ... done
        ...

Every provider takes and returns the provider-neutral types of this package, retries
rate limits and server errors itself (honouring ``retry-after``), and raises the
``polos.errors.LLM*Error`` classes. ``ScriptedProvider`` answers from a script, for tests.
The client libraries (``openai``, ``anthropic``) are imported only when a provider that
needs them is created.
"""

from ._providers import PROVIDER_NAMES, create_provider
from ._scripted import ScriptedProvider, ScriptedReply
from ._types import (
    LLMProvider,
    LLMRequest,
    LLMResponse,
    Message,
    Role,
    StreamEvent,
    ToolCall,
    ToolSpec,
    Usage,
)

__all__ = [
    "PROVIDER_NAMES",
    "LLMProvider",
    "LLMRequest",
    "LLMResponse",
    "Message",
    "Role",
    "ScriptedProvider",
    "ScriptedReply",
    "StreamEvent",
    "ToolCall",
    "ToolSpec",
    "Usage",
    "create_provider",
]
