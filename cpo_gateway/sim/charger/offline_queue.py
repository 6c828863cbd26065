"""The ordered queue of transaction messages a charge point keeps while it cannot deliver them.

OCPP 1.6 §4.7 / §4.8: StartTransaction, StopTransaction and MeterValues are delivered in the
order they happened, after the connection is back. A StartTransaction sent offline has no
transaction id yet, so later messages carry a local placeholder that is rewritten once the
central system has answered the start.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

TRANSACTION_ACTIONS = frozenset({"StartTransaction", "StopTransaction", "MeterValues"})


@dataclass
class QueuedMessage:
    action: str
    payload: dict[str, Any]
    # For a StartTransaction: the placeholder id given to the caller while offline.
    placeholder: int | None = None
    attempts: int = 0
    answer: dict[str, Any] | None = None


class OfflineQueue:
    def __init__(self) -> None:
        self._items: deque[QueuedMessage] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def append(self, message: QueuedMessage) -> None:
        self._items.append(message)

    def peek(self) -> QueuedMessage | None:
        return self._items[0] if self._items else None

    def pop(self) -> QueuedMessage:
        return self._items.popleft()

    def items(self) -> list[QueuedMessage]:
        return list(self._items)

    def actions(self) -> list[str]:
        return [item.action for item in self._items]

    def resolve(self, placeholder: int, transaction_id: int) -> int:
        """Give queued messages that refer to `placeholder` the real id; returns how many."""
        rewritten = 0
        for item in self._items:
            if item.action != "StartTransaction" and item.payload.get("transactionId") == (
                placeholder
            ):
                item.payload["transactionId"] = transaction_id
                rewritten += 1
        return rewritten
