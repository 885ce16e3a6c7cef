"""LangChain and LangGraph integration: the graph as a chat model (`chat_model`, and `chat_openai` for an
OpenAI-compatible rSIM server) and as an agent's tool (`tool`)."""
