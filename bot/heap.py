"""The garbage collector of a long-running server: what start-up built is never collected again.

Start-up leaves ~150,000 container objects that live as long as the process (flows, the trained
classifiers, their vocabularies, compiled templates, library modules). CPython's oldest
generation is collected whenever enough objects have survived younger collections, and a full
collection walks every one of them: measured under the learned NLU at 64 concurrent customers,
pauses of up to ~290 ms (load-inflated) that stop the event loop and every conversation with it
(issue 20: p99). :func:`settle` collects once, then moves everything that survived into the
permanent generation (``gc.freeze()``), which later collections skip; objects made while serving
are collected as before.

It also makes the youngest generation's threshold :data:`YOUNG_THRESHOLD` allocations instead of
CPython's 700: a message in flight allocates many containers that die when it is answered, and
with 64 customers in flight the default collected the young generation every few messages,
walking objects that would have died moments later anyway (measured, bench/hotpath.py, 64
customers: collections cost ~0.03 ms CPU per message with 700, ~0.015 with 20,000). Each
young collection walks more at once (a few ms at most at this threshold), far below the
full-heap pauses the freeze removes.

Last, it hands the C heap's free pages back to the system (:func:`trim`): some of what start-up
parsed and dropped was freed to glibc's malloc, which keeps freed pages in the process unless
asked (~1 MB at a demo start; a few milliseconds).

Before any of that, ``omnibot run`` makes every thread allocate from one malloc arena
(:func:`one_arena`, as ``MALLOC_ARENA_MAX=1`` does). glibc gives each new thread an arena of its
own (up to 8 per core), and memory freed in one arena is only reused there:
the language detector's models, loaded by its own worker threads while the server starts, left
10-30 MB of freed pages scattered over several arenas, so an idle server measured 209-237 MB
from one start to the next; with one arena, 209 MB every time, at the same CPU per message
(issue 20; bench/startup.py, bench/hotpath.py, README "Start-up").
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
from functools import lru_cache
from typing import Any, Mapping

log = logging.getLogger(__name__)

#: ``mallopt`` parameter number of glibc's arena limit (malloc.h: M_ARENA_MAX).
M_ARENA_MAX = -8

#: Allocations (net, of container objects) between two collections of the youngest generation.
YOUNG_THRESHOLD = 10_000


def settle() -> int:
    """Collect start-up garbage, then freeze what is left, and collect the young generation less
    often (call once the server is built).

    Returns:
        How many objects are now frozen.
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
    frozen = gc.get_freeze_count()
    trim()
    log.debug("heap settled: %d start-up objects frozen out of collections", frozen)
    return frozen


def one_arena(environ: Mapping[str, str] = os.environ) -> bool:
    """Make the threads started from now on share the main malloc arena (glibc only). Call it
    before any thread starts: glibc reads the limit when a second arena would be made. An
    explicit ``MALLOC_ARENA_MAX`` in the environment is left as it is (glibc applied it already).

    Returns:
        Whether the limit was set here.
    """
    libc = _libc()
    if libc is None or "MALLOC_ARENA_MAX" in environ:
        return False
    return bool(libc.mallopt(M_ARENA_MAX, 1))


@lru_cache(maxsize=1)
def _libc() -> Any:
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except OSError:      # not glibc (musl, macOS): nothing to trim
        return None


def trim() -> bool:
    """Give the free pages of the C heap (every malloc arena) back to the system now
    (``malloc_trim(0)``; glibc only, else a no-op). It takes a few milliseconds and changes no
    object: the pages were free already, and are mapped again if malloc needs them.

    Returns:
        Whether glibc was asked.
    """
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
