"""Upstreams that write answers: GPTalk and any OpenAI-compatible server (issue 8).

base.py is the interface and its errors, gptalk.py and openai.py the two kinds,
registry.py which providers are enabled, their models, and `answer_stream` (the
answer with fallback) that chat.generation calls.
"""
