"""Connections a tenant's visiting providers take turns on, in one worker (shell: threads).

Beyond its connection cap a tenant's providers visit (``budget``, rule 4): each round a
``FolderPoller`` takes a slot, connects, checks its folders, logs out and gives the slot
back. The supervisor resizes the slots when the tenant's plan changes; a smaller size
takes effect as slots are given back.
"""

from __future__ import annotations

import threading

#: Seconds a waiting poller sleeps between looks at a stop request.
WAIT_SLICE_S = 0.5


class ConnectionSlots:
    """A resizable count of connections, shared by threads."""

    def __init__(self, size: int) -> None:
        self._changed = threading.Condition()
        self._size = size
        self._taken = 0

    @property
    def size(self) -> int:
        return self._size

    @property
    def taken(self) -> int:
        with self._changed:
            return self._taken

    def resize(self, size: int) -> None:
        with self._changed:
            self._size = size
            self._changed.notify_all()

    def take(self, stop: threading.Event) -> bool:
        """Wait for a free slot and take it; False (nothing taken) once ``stop`` is set."""
        with self._changed:
            while self._taken >= self._size:
                if stop.is_set():
                    return False
                self._changed.wait(WAIT_SLICE_S)
            if stop.is_set():
                return False
            self._taken += 1
            return True

    def give_back(self) -> None:
        with self._changed:
            self._taken -= 1
            self._changed.notify()
