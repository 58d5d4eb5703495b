"""The Slack desk under a storm of handoffs, against a Slack that enforces its limits.

Time-scaled from the issue's target (1 post/s/channel, 100 handoffs: every card within 2 min,
< 5 % of calls answered 429, a customer message in its thread within 5 s): here Slack allows
10 posts/s in the one channel, so the 100 cards need 10 s at best.
"""

from __future__ import annotations

from pathlib import Path

from e2e.slack_storm import run_storm


async def test_storm_of_handoffs_is_paced_and_threads_stay_live(tmp_path: Path) -> None:
    result = await run_storm(tmp_path, handoffs=100, channels=1, rate=10, probe_every=1.0, sync_interval=0.5,
                             timeout=30)
    print("\n".join(result.lines()))
    assert result.cards == 100
    assert result.last_card_s < 15, result.lines()
    assert result.rate_limited_pct < 5, result.lines()
    # the customer of an already-posted card was heard in its thread all through the storm
    assert len(result.probe_latencies) >= 8, result.lines()
    # within 0.5 s (the 5 s, time-scaled), plus Slack's shortest Retry-After (1 s) when one of
    # the few 429s the pacing allows fell on a thread message (seen with another test file running
    # beside this one); a thread message starved behind the storm's cards would wait ~10 s
    bound = 0.5 + (1.0 if result.rate_limited else 0.0)
    assert max(result.probe_latencies) < bound, result.lines()
