"""Structured logs: one JSON object per line on stderr (or plain text).

    MESHGATE_LOG_FORMAT=json|text   (default json when stderr is not a terminal)
    MESHGATE_LOG_LEVEL=INFO         (any logging level name)

Nothing on the per-token path logs. Records carry the logger name, which is
the stage or part (``meshgate.pipeline``, ``meshgate.registry``...).
"""

from __future__ import annotations

import logging
import os
import sys
import time

import orjson

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure() -> None:
    fmt = os.environ.get("MESHGATE_LOG_FORMAT") or ("text" if sys.stderr.isatty() else "json")
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(os.environ.get("MESHGATE_LOG_LEVEL", "INFO").upper())
