"""Logging filters. Attached in settings.LOGGING."""

import logging
import re

_TOKEN = re.compile(r"(token=)[^&\s\"']+")


class RedactTokens(logging.Filter):
    """Hide `token=...` in a record's message.

    The GPTalk protocol puts the one-use stream token in the stream URL, and
    httpx logs request URLs at INFO: whatever level the httpx logger is set to,
    no token reaches a log.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "token=" in message:
            record.msg = _TOKEN.sub(r"\1[redacted]", message)
            record.args = ()
        return True
