"""bot/heap.py: start-up objects leave the garbage collector's work; later garbage is still collected."""

from __future__ import annotations

import gc
import weakref

from bot.heap import YOUNG_THRESHOLD, settle


class _Node:
    def __init__(self) -> None:
        self.me = self     # a reference cycle: only the collector frees it


def test_settle_freezes_what_start_up_built_and_later_cycles_are_still_collected() -> None:
    kept = [_Node() for _ in range(100)]    # what start-up built and keeps
    threshold = gc.get_threshold()
    try:
        frozen = settle()
        assert frozen >= 100 and gc.get_freeze_count() == frozen
        assert not any(gc.is_tracked(o) and o in gc.get_objects(generation=2) for o in kept[:3])
        late = _Node()                      # made while serving
        ref = weakref.ref(late)
        del late
        gc.collect()
        assert ref() is None
        # the young generation is collected less often, but still on its own (no gc.collect())
        assert gc.get_threshold() == (YOUNG_THRESHOLD, *threshold[1:]) and YOUNG_THRESHOLD > threshold[0]
        late = _Node()
        ref = weakref.ref(late)
        del late
        churn = [[] for _ in range(3 * YOUNG_THRESHOLD)]
        assert ref() is None
        del churn
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()
