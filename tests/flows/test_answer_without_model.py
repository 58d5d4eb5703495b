"""A turn that a button press or a slot validator decides does not run the intent model (issue 20).

The learned NLU on the shop flows (tests/fixtures/flows/shop): the complaint flow asks for a
category (a choice) and an order number (a regex). Pressing a category's button, typing a
choice's title, or typing only an order number decides the turn whatever the model would say,
so the model is not run: the replies and the state are the same as with the model run, and the
model scores these answers as no complaint (what the complaint signal would have recorded). An
answer inside other words ("the parcel arrived broken, this is a disgrace") may be a complaint:
the model still scores it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flows import FlowEngine, TurnInput, load_flows
from flows.nlu.encoder import shared_encoder
from flows.nlu.service import LearnedNLU

SHOP = Path(__file__).resolve().parents[1] / "fixtures" / "flows" / "shop"


@pytest.fixture(scope="module")
def engine() -> FlowEngine:
    nlu = LearnedNLU(encoder=shared_encoder(2), progress=lambda m: None)
    return FlowEngine(load_flows(SHOP, teams=["support", "complaints"]), matcher=nlu)


def model_runs(engine: FlowEngine) -> int:
    b = engine.matcher.batcher   # type: ignore[attr-defined]
    return b.items + b.hits


async def walk(engine: FlowEngine, turns: list[tuple[str, str | None]]) -> list[tuple[Any, int]]:
    """(result, model runs) per turn of one conversation that starts the complaint flow."""
    engine.matcher.batcher.clear()   # type: ignore[attr-defined]
    state = (await engine.handle(None, TurnInput("hi", payload="intent:complaint"))).state
    assert state["awaiting"] == "category"
    out = []
    for text, payload in turns:
        before = model_runs(engine)
        result = await engine.handle(state, TurnInput(text, payload=payload))
        state = result.state
        out.append((result, model_runs(engine) - before))
    return out


ANSWERS = [("Shipping", "shipping"), ("AB123456", None)]      # a button press, a bare order number
TYPED = [("Shipping", None), ("my order is ab-123456", None)]  # a title typed, filler + order number


@pytest.mark.parametrize("turns", [ANSWERS, TYPED], ids=["button", "typed"])
async def test_an_answer_that_decides_the_turn_runs_no_model_and_changes_nothing(
        engine: FlowEngine, turns, monkeypatch) -> None:
    fast = await walk(engine, turns)
    assert [runs for _, runs in fast] == [0, 0]
    assert fast[-1][0].state["slots"]["category"] == "shipping"
    assert fast[-1][0].state["awaiting"] == "description"
    monkeypatch.setattr(engine, "_answer_decides", lambda t: False)   # as before: the model runs
    slow = await walk(engine, turns)
    assert [runs for _, runs in slow] == [1, 1]
    for (a, _), (b, _) in zip(fast, slow):
        assert a.replies == b.replies and a.handoff == b.handoff
        sa, sb = dict(a.state), dict(b.state)
        assert sa.pop("signals")["complaint"] <= sb.pop("signals")["complaint"]
        assert sa == sb
        # what the skipped model would have said: no complaint, nothing the offer or card acts on
        assert b.complaint < engine.settings.complaints.threshold, b.complaint


async def test_an_answer_inside_a_complaint_still_runs_the_model(engine: FlowEngine) -> None:
    turns = [("the parcel arrived broken, this is a disgrace", None),
             ("AB123456 and I have waited three weeks, unacceptable", None)]
    out = await walk(engine, turns)
    assert [runs for _, runs in out] == [1, 1]
    assert out[0][0].state["slots"]["category"] == "product"       # the validator still took it
    assert out[1][0].state["slots"]["order_number"] == "AB123456"
    assert max(r.complaint for r, _ in out) >= engine.settings.complaints.threshold


async def test_free_text_answers_run_the_model(engine: FlowEngine) -> None:
    out = await walk(engine, ANSWERS + [("It never arrived and nobody answers my e-mails", None)])
    assert [runs for _, runs in out] == [0, 0, 1]
