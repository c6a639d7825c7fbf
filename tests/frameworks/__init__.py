"""Tests of the adapters for openai-agents, LangChain, Strands, Google ADK and Pydantic AI (one tox env each)."""
