"""The attempt log: one JSON line per attempt (``mailcli run --log FILE``).

Each line traces an attempt by mailing id, message id and phone, with the
attempt number, outcome, HTTP status, latency and error. The file holds
phone numbers, so it is created owner-only (0600).
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import IO

from mailcli.config import FILE_MODE
from mailcli.delivery.gateway import Answer
from mailcli.delivery.store import Claimed
from mailcli.errors import operational


class AttemptLog:
    def __init__(self, path: Path):
        self.path = path
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
        except OSError as exc:
            raise operational(f"cannot open the attempt log {path}: {exc.strerror}") from None
        self._file: IO[str] = os.fdopen(fd, "a", encoding="utf-8", buffering=1 << 16)

    def due(self, count: int) -> None:
        pass

    def note(self, text: str) -> None:
        pass

    def attempt(self, message: Claimed, attempt: int, answer: Answer, at: datetime) -> None:
        record = {
            "at": at.isoformat(timespec="milliseconds"),
            "mailing_id": message.mailing_id,
            "message_id": message.id,
            "phone": message.phone,
            "attempt": attempt,
            "outcome": answer.outcome.value,
            "http_status": answer.status,
            "latency_ms": round(answer.latency * 1000, 1),
            "error": answer.error,
        }
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")

    def close(self) -> None:
        self._file.close()
