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
        # settle() returns what it froze; the count can only have fallen since, by frozen objects
        # that another thread of this test process (one an earlier test left) freed meanwhile
        # (25 of 446,226 in one CI run)
        assert frozen >= 100 and frozen - 1000 <= gc.get_freeze_count() <= frozen
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


ARENAS = r"""
import ctypes, os, sys, tempfile, threading
from bot.heap import one_arena
if sys.argv[1] == "one":
    print("set", one_arena())
together = threading.Barrier(4)
def work():       # 4 threads alive at once, each allocating from malloc (larger than pymalloc's)
    keep = [b"x" * 2000 for _ in range(2000)]
    together.wait()
    del keep
threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
libc = ctypes.CDLL("libc.so.6")
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
path = tempfile.mktemp()
fp = libc.fopen(path.encode(), b"w")
libc.malloc_info(0, fp)
libc.fclose(fp)
print("arenas", open(path).read().count("<heap nr="))
os.unlink(path)
"""


def _arenas(mode: str, env: dict[str, str]) -> list[str]:
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**{k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}, **env}
    p = subprocess.run([sys.executable, "-c", ARENAS, mode], capture_output=True, text=True, cwd=root, env=env,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout.split()


def test_one_arena_makes_every_thread_allocate_from_the_main_arena() -> None:
    # glibc's default: each of the 4 threads gets an arena of its own
    assert int(_arenas("default", {})[-1]) == 5
    assert _arenas("one", {}) == ["set", "True", "arenas", "1"]
    # an explicit MALLOC_ARENA_MAX is the operator's: left as it is
    assert _arenas("one", {"MALLOC_ARENA_MAX": "4"})[:2] == ["set", "False"]
