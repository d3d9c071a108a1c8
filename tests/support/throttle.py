"""An in-memory twin of the throttle's failure store: the arithmetic, without a server."""

from __future__ import annotations


class MemoryFailureStore:
    """Timestamps per key, as `portal.auth.throttle.FailureStore` keeps them."""

    def __init__(self) -> None:
        self.rows: dict[str, list[float]] = {}

    def add(self, key: str, at: float) -> None:
        self.rows.setdefault(key, []).append(at)

    def add_shared(self, key: str, at: float) -> None:
        self.add(key, at)

    def recent(self, key: str, since: float) -> list[float]:
        return [t for t in self.rows.get(key, []) if t >= since]

    def remove(self, key: str, at: float) -> None:
        self.rows[key].remove(at)

    def clear(self, key: str) -> None:
        self.rows.pop(key, None)
