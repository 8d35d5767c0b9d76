"""Shared connection slots: taken up to the size, given back, resized, stop-aware."""

from __future__ import annotations

import threading

from email_service.sync.slots import ConnectionSlots


def test_slots_are_taken_up_to_the_size_and_a_stop_ends_the_wait() -> None:
    slots, stop = ConnectionSlots(2), threading.Event()
    assert slots.take(stop) and slots.take(stop)
    stop.set()
    assert slots.take(stop) is False  # full: returns once stopped, having taken nothing
    assert slots.taken == 2


def test_a_slot_given_back_or_a_larger_size_lets_a_waiter_in() -> None:
    slots, stop = ConnectionSlots(1), threading.Event()
    assert slots.take(stop)
    taken = threading.Event()
    waiter = threading.Thread(target=lambda: slots.take(stop) and taken.set())
    waiter.start()
    assert not taken.wait(0.1)
    slots.resize(2)
    assert taken.wait(5)
    waiter.join(5)
    slots.give_back()
    assert slots.taken == 1


def test_a_shrunk_pool_admits_again_once_below_its_size() -> None:
    slots, stop = ConnectionSlots(2), threading.Event()
    slots.take(stop)
    slots.take(stop)
    slots.resize(1)
    slots.give_back()
    stop.set()
    assert slots.take(stop) is False  # 1 taken of 1
    slots.give_back()
    assert slots.take(threading.Event()) is True
