"""Generated answers: chat completions from OpenAI-compatible LLMs (`chat`), the grounded
prompt they are asked (`prompt`), and a local llama.cpp server to ask offline (`serve`)."""

from pgask.llm.chat import ChatClient, ChatResult, LLMError, LLMOptions, LLMSpec
from pgask.llm.prompt import (
    DEFAULT_TEMPLATE,
    DONT_KNOW,
    GroundedPrompt,
    Passage,
    PromptTemplate,
    build_prompt,
)

__all__ = ["DEFAULT_TEMPLATE", "DONT_KNOW", "ChatClient", "ChatResult", "GroundedPrompt",
           "LLMError", "LLMOptions", "LLMSpec", "Passage", "PromptTemplate", "build_prompt"]
