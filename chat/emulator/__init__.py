"""A protocol-faithful GPTalk API emulator (docs/gptalk-protocol.md).

Run it with `python manage.py gptalk_emulator`. It needs no database and imports
no Django models: app.py builds a Starlette app served by uvicorn; api.py holds the
three GPTalk endpoints, openai_api.py the OpenAI-compatible API on the same port,
control.py the /_emulator/ control API, stream.py the reply stream, replies.py
the default reply and state.py tokens, queue and counts.
"""
