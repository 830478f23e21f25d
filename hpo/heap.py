"""Keeping Python's cyclic garbage collector off a large study's trials while a command works.

A 10,000-trial study read into `FrozenTrial`s is about a million small objects (dicts, lists,
floats). Building them triggers the collector's full collections over and over, and every full
collection after that walks all of them again, though trials hold no reference cycles and are
freed by reference counting alone. In a fresh `hpo report` process of such a study, these
collections took 1.7 of 7.6 CPU-seconds (docs/performance.md). Both helpers restore the
collector's previous state on the way out, errors included.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic collection inside: for building many objects that hold no cycles."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@contextmanager
def kept_out_of_collections() -> Iterator[None]:
    """Every object alive on entry is skipped by the collections inside (`gc.freeze`).

    Reference counting still frees them. On exit every frozen object goes back to the
    collector's oldest generation, with whatever code inside froze too (`hpo.train` freezes what
    lives before a process's first trial, as in a report that retrains): later collections walk
    those again, which costs time, never memory or correctness. Where something had frozen
    objects before entry, this does nothing, so as not to unfreeze what it froze.
    """
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
