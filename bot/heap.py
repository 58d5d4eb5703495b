"""The garbage collector of a long-running server: what start-up built is never collected again.

Start-up leaves ~150,000 container objects that live as long as the process (flows, the trained
classifiers, their vocabularies, compiled templates, library modules). CPython's oldest
generation is collected whenever enough objects have survived younger collections, and a full
collection walks every one of them: measured under the learned NLU at 64 concurrent customers,
pauses of up to ~290 ms (load-inflated) that stop the event loop and every conversation with it
(issue 20: p99). :func:`settle` collects once, then moves everything that survived into the
permanent generation (``gc.freeze()``), which later collections skip; objects made while serving
are collected as before.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)


def settle() -> int:
    """Collect start-up garbage, then freeze what is left (call once the server is built).

    Returns:
        How many objects are now frozen.
    """
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.debug("heap settled: %d start-up objects frozen out of collections", frozen)
    return frozen
