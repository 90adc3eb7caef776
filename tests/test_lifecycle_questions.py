"""What services ask the lifecycle: answered from the graph, so added states fit in."""

from __future__ import annotations

from dataclasses import dataclass

from ordnung.core.lifecycle import CORE_MACHINES, Lifecycle, StateExtension, StateSpec, Transition
from ordnung.core.lifecycle.tables import build_machines


@dataclass
class Entity:
    status: str


def answers(lifecycle: Lifecycle, question: str, machine: str) -> list[str]:
    states = getattr(lifecycle, "returns" if machine == "return" else machine).states
    return sorted(s for s in states if getattr(lifecycle, question)(Entity(s)))


def test_the_core_machines_answer_as_the_state_names_did() -> None:
    lc = Lifecycle(CORE_MACHINES)
    assert answers(lc, "order_cancelled", "order") == ["cancelled"]
    assert answers(lc, "payment_unanswered", "payment") == ["pending"]
    assert answers(lc, "payment_declined", "payment") == ["failed"]
    assert answers(lc, "payment_voided", "payment") == ["voided"]
    refundable = set(CORE_MACHINES["payment"].states_allowing("refund"))
    closing = set(answers(lc, "refund_may_close", "payment")) & refundable
    assert closing == refundable - {"partially_captured"}
    assert answers(lc, "shipment_live", "shipment") == [
        "delivered", "packed", "pending", "picking", "shipped"]
    assert answers(lc, "shipment_left", "shipment") == ["delivered", "shipped"]
    assert answers(lc, "shipment_delivered", "shipment") == ["delivered"]
    assert answers(lc, "shipment_holds_units", "shipment") == ["packed", "pending", "picking"]
    assert answers(lc, "return_open", "return") == ["approved", "requested"]


def test_a_state_a_plugin_inserts_is_answered_without_naming_it() -> None:
    machines = build_machines([StateExtension(
        machine="shipment",
        states=(StateSpec("out_for_delivery", frozenset({"track", "deliver"})),
                StateSpec("at_customs", frozenset({"pack", "cancel"}))),
        transitions=(Transition("shipped", "hand_over", "out_for_delivery"),
                     Transition("out_for_delivery", "deliver", "delivered"),
                     Transition("picking", "pack", "at_customs"),
                     Transition("at_customs", "pack", "packed"),
                     Transition("at_customs", "cancel", "cancelled")))])
    lc = Lifecycle(machines)
    assert lc.shipment_left(Entity("out_for_delivery"))
    assert not lc.shipment_holds_units(Entity("out_for_delivery"))
    assert not lc.shipment_delivered(Entity("out_for_delivery"))
    assert lc.shipment_holds_units(Entity("at_customs"))
    assert not lc.shipment_live(Entity("cancelled"))
