"""hub.retry.Retries: one count of retries per request, whatever failed, and giving up when it is spent."""

from __future__ import annotations

import pytest

from hub.api import Retries


class GaveUp(Exception):
    pass


def test_waits_between_tries_and_gives_up_after_max_retries():
    waits: list[float] = []
    counted: list[int] = []
    retries = Retries(2, give_up=GaveUp, sleep=waits.append, on_retry=lambda: counted.append(1))

    retries.again("HTTP 503")
    retries.again("a timeout")
    with pytest.raises(GaveUp, match="a cut-off answer; прекращено после 3 попыток"):
        retries.again("a cut-off answer")

    assert len(waits) == 2 and all(wait > 0 for wait in waits)
    assert len(counted) == 2  # the try that was not made is not counted
    assert retries.attempt == 2


def test_a_caller_that_already_waited_is_not_made_to_wait_again():
    waits: list[float] = []
    retries = Retries(3, give_up=GaveUp, sleep=waits.append)

    retries.again("server time used up", wait=False)
    retries.again("HTTP 500")

    assert len(waits) == 1
    assert retries.attempt == 2


def test_each_request_starts_with_all_its_retries():
    first = Retries(1, give_up=GaveUp, sleep=None)
    first.again("HTTP 502")
    with pytest.raises(GaveUp):
        first.again("HTTP 502")

    Retries(1, give_up=GaveUp, sleep=None).again("HTTP 502")  # a new request: no error
