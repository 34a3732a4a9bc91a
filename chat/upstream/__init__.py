"""Clients of the services that write answers (the upstreams), with no Django models.

http.py is what every client shares: the settings, one connection pool per event
loop, transport failures as typed errors. gptalk.py is the GPTalk client (an
httpx port of gpt4free's GPTalk provider; wire protocol in docs/gptalk-protocol.md)
with its stream parser gptalk_stream.py; openai.py the OpenAI-compatible client.
errors.py holds the typed errors all of them raise. chat/providers/ builds on these.
"""
