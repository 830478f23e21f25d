from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from hpo.heap import collector_paused, kept_out_of_collections


@pytest.fixture(autouse=True)
def collector_as_found() -> Iterator[None]:
    # Tests that trained in this process earlier froze objects (hpo.train): start from none.
    gc.unfreeze()
    was_enabled = gc.isenabled()
    yield
    gc.unfreeze()
    if was_enabled:
        gc.enable()
    else:
        gc.disable()


def test_the_collector_is_off_inside_and_on_again_after() -> None:
    gc.enable()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    with collector_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_an_error_inside_still_turns_the_collector_back_on() -> None:
    gc.enable()
    with pytest.raises(KeyError), collector_paused():
        raise KeyError("x")
    assert gc.isenabled()


def test_objects_alive_on_entry_are_skipped_inside_and_collectable_after() -> None:
    class Node:
        me: Node

    # A reference cycle that becomes garbage only inside: a full collection there skips it.
    node = Node()
    node.me = node
    ref = weakref.ref(node)
    with kept_out_of_collections():
        assert gc.get_freeze_count() > 0
        del node
        gc.collect()
        assert ref() is not None
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert ref() is None


def test_objects_frozen_by_someone_else_stay_frozen() -> None:
    gc.freeze()
    before = gc.get_freeze_count()
    with kept_out_of_collections():
        pass
    assert gc.get_freeze_count() == before > 0


def test_an_error_inside_still_unfreezes() -> None:
    with pytest.raises(KeyError), kept_out_of_collections():
        raise KeyError("x")
    assert gc.get_freeze_count() == 0
