"""Server-side answers: one task per assistant message, owned by a process, not a socket.

A Generation (answer.py) reads the provider's deltas; the process's Hub
(chat.delivery) turns what arrived during one turn of the event loop into one
seq-numbered event for every socket that follows the answer, in this process
or another. The text is saved about once a second while it streams and once
at the end.

Each process has one GenerationManager (manager.py) per event loop, started
with the process: it runs the answers, saves them, sweeps the answers whose
process died, and ends its own answers (saved, marked, sockets told) when the
process is asked to stop.
"""

from chat.generation.answer import EarlyStream, Generation
from chat.generation.manager import GenerationManager, get_manager

__all__ = ["EarlyStream", "Generation", "GenerationManager", "get_manager"]
