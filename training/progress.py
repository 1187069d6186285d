"""Driving the progress generators of long work (training, evaluation, decoding, code fitting).

Long jobs are generators that yield small progress dataclasses and *return* their result (the
``StopIteration`` value). These two functions are the one way to consume them:

- ``drain(gen, on_event)``: run ``gen`` to its end, showing every event to ``on_event``, and
  return its value (front ends, tests, a job that needs another job's result but not its
  progress);
- ``relay(gen, convert, then)``: inside another generator, ``yield from relay(...)`` passes
  ``gen``'s events on (converted to the outer job's progress type, and each followed by the
  events of ``then(event)``, e.g. a check after each epoch) and returns ``gen``'s value.

The engine never drives a generator to its value, so this lives in ``training``, the lowest
layer that does.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable
from typing import Any, TypeVar

E = TypeVar("E")
F = TypeVar("F")
R = TypeVar("R")


def drain(gen: Generator[E, Any, R], on_event: Callable[[E], None] | None = None) -> R:
    """Run a progress generator to its end and return its value; ``on_event`` (optional) sees
    every progress event on the way."""
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_event is not None:
            on_event(event)


def relay(
    gen: Generator[E, Any, R],
    convert: Callable[[E], F] | None = None,
    then: Callable[[E], Iterable[F]] | None = None,
) -> Generator[F, None, R]:
    """Yield ``convert(event)`` (default: the event itself) for every event of ``gen``, then the
    events of ``then(event)`` if given (``gen`` waits meanwhile); return ``gen``'s value."""
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        yield convert(event) if convert is not None else event
        if then is not None:
            yield from then(event)
