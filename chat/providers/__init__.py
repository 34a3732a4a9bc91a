"""Upstreams that write answers: GPTalk and any OpenAI-compatible server.

base.py is the interface, gptalk.py and openai.py the two kinds (thin adapters
around the clients of chat/upstream/), registry.py which providers are enabled,
their models, and `answer_stream` (the answer with fallback) that
chat.generation calls.
"""
