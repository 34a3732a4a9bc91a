"""Delivering answers' events to the sockets that follow them.

- `hub.py`: the Hub, one per process: the sockets of this process, the frames
  they get (through chat.follow's rules), one delivery task per loop tick;
  mirrors of answers run by other processes; the watchdog that heals.
- `link.py`: the process's link to the channel layer (Redis): its channel,
  group memberships, batches to other processes, a listener that survives an
  outage.
"""

from chat.delivery.hub import Hub, encode

__all__ = ["Hub", "encode"]
