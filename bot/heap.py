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
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)

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
    log.debug("heap settled: %d start-up objects frozen out of collections", frozen)
    return frozen
