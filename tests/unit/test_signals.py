"""SIGTERM during a run: raised as Terminated, but never inside a store call (signals.deferred)."""

from __future__ import annotations

import os
import signal

import pytest

from lexflow.signals import Terminated, deferred, sigterm_raises


def test_sigterm_raises_terminated_with_the_killed_exit_code() -> None:
    with pytest.raises(Terminated) as err, sigterm_raises():
        os.kill(os.getpid(), signal.SIGTERM)
    assert err.value.exit_code == 128 + signal.SIGTERM


def test_sigterm_inside_deferred_is_held_until_the_block_ends() -> None:
    reached_end_of_block = False
    with pytest.raises(Terminated), sigterm_raises(), deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        with deferred():  # nested: still held
            pass
        reached_end_of_block = True
    assert reached_end_of_block
