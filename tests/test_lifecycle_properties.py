"""The lifecycle machines: graph properties, transition errors, and plugin extensions."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ordnung.core import Engine, hookimpl
from ordnung.core.errors import IllegalTransition, InvalidInput, LifecycleDefinitionError
from ordnung.core.lifecycle import (
    CORE_MACHINES,
    Machine,
    StateExtension,
    StateSpec,
    Transition,
    build_machines,
)
from tests.support import builtin_plugins, order_request, seed_shop, ship_all

MACHINE_NAMES = sorted(CORE_MACHINES)


def reachable(machine: Machine, start: str) -> set[str]:
    """Breadth-first search over the edge table (independent of the machine's own check)."""
    seen = {start}
    queue = deque([start])
    while queue:
        state = queue.popleft()
        for (source, _event), target in machine.edges.items():
            if source == state and target not in seen:
                seen.add(target)
                queue.append(target)
    return seen


def outgoing(machine: Machine, state: str) -> set[str]:
    return {event for (source, event) in machine.edges if source == state}


def all_events(machine: Machine) -> list[str]:
    return sorted({event for (_source, event) in machine.edges})


# -- the core graphs ------------------------------------------------------------------------


@pytest.mark.parametrize("name", MACHINE_NAMES)
def test_every_state_is_reachable_from_the_initial_state(name: str) -> None:
    machine = CORE_MACHINES[name]
    assert machine.initial in machine.states
    assert reachable(machine, machine.initial) == set(machine.states)


@pytest.mark.parametrize("name", MACHINE_NAMES)
def test_terminal_states_have_no_way_out(name: str) -> None:
    machine = CORE_MACHINES[name]
    terminals = [s for s, spec in machine.states.items() if spec.terminal]
    assert terminals, f"{name} has no terminal state"
    for state in terminals:
        assert machine.is_terminal(state)
        assert outgoing(machine, state) == set()
        assert machine.events_from(state) == []
        for event in all_events(machine):
            with pytest.raises(IllegalTransition):
                machine.next_state("x", state, event)


@pytest.mark.parametrize("name", MACHINE_NAMES)
def test_every_state_can_end(name: str) -> None:
    machine = CORE_MACHINES[name]
    terminals = {s for s, spec in machine.states.items() if spec.terminal}
    for state in machine.states:
        assert reachable(machine, state) & terminals, f"{name}: {state} can never end"


@pytest.mark.parametrize("name", MACHINE_NAMES)
def test_edges_name_known_states_and_capabilities_have_their_transitions(name: str) -> None:
    machine = CORE_MACHINES[name]
    for (source, event), target in machine.edges.items():
        assert source in machine.states and target in machine.states, (source, event, target)
        assert machine.target(source, event) == target
    for state, spec in machine.states.items():
        for capability in spec.allows:
            for event in machine.requires.get(capability, ()):
                assert (state, event) in machine.edges, (state, capability, event)
            assert machine.allows(state, capability)
            assert state in machine.states_allowing(capability)


def test_the_order_machine_matches_the_documented_happy_path() -> None:
    order = CORE_MACHINES["order"]
    state = order.initial
    for event in ("place", "payment_secured", "ship_partial", "ship_all", "deliver",
                  "complete", "return_partial", "return_all"):
        state = order.next_state("ord_1", state, event)
    assert state == "returned"
    assert order.is_terminal(state)


#: payment events that settle a payment: the gateway confirmed it (``authorize``), or no
#: gateway ever will and staff capture what they received (``await_payment``)
CONFIRMING = {"authorize", "await_payment"}
CAPTURING = {"capture_partial", "capture_all"}


@given(st.lists(st.sampled_from(all_events(CORE_MACHINES["payment"])), max_size=30))
def test_no_payment_is_captured_before_it_is_confirmed(events: list[str]) -> None:
    """Whatever happens to a payment, money is captured only once it is confirmed: an
    asynchronous card payment awaiting the gateway's confirmation cannot be captured."""
    payment = CORE_MACHINES["payment"]
    state, confirmed = payment.initial, False
    for event in events:
        target = payment.target(state, event)
        if target is None:
            continue
        if event in CAPTURING:
            assert confirmed, f"captured from {state!r} before the payment was confirmed"
        confirmed = confirmed or event in CONFIRMING
        state = target


@pytest.mark.parametrize("state", ["pending", "awaiting_confirmation"])
def test_an_unconfirmed_payment_state_cannot_capture(state: str) -> None:
    payment = CORE_MACHINES["payment"]
    assert not payment.allows(state, "capture")
    assert not outgoing(payment, state) & CAPTURING
    assert payment.allows(state, "authorize") and payment.allows(state, "void")
    with pytest.raises(IllegalTransition) as err:
        payment.require("pay_1", state, "capture")
    assert err.value.current == state


@st.composite
def machine_walks(draw: st.DrawFn) -> tuple[str, list[str]]:
    name = draw(st.sampled_from(MACHINE_NAMES))
    events = [*all_events(CORE_MACHINES[name]), "bogus", "PLACE", ""]
    return name, draw(st.lists(st.sampled_from(events), max_size=40))


@given(machine_walks())
def test_random_event_sequences(walk: tuple[str, list[str]]) -> None:
    name, events = walk
    machine = CORE_MACHINES[name]
    state = machine.initial
    for event in events:
        expected = {e for (s, e) in machine.edges if s == state}
        try:
            nxt = machine.next_state("ent_1", state, event)
        except IllegalTransition as err:
            assert event not in expected
            assert err.machine == name
            assert err.current == state
            assert err.attempted == event
            assert err.allowed == machine.events_from(state)
            assert set(err.allowed) == expected
            assert err.extra["current_state"] == state
            assert err.extra["attempted"] == event
            assert err.extra["allowed"] == sorted(expected)
            assert err.extra["entity_id"] == "ent_1"
            assert repr(state) in err.detail and repr(event) in err.detail
            assert err.status == 409
            continue
        assert event in expected
        assert nxt == machine.edges[(state, event)]
        assert nxt in machine.states
        state = nxt


@given(st.sampled_from(MACHINE_NAMES), st.data())
def test_require_names_the_state_and_its_events(name: str, data: st.DataObject) -> None:
    machine = CORE_MACHINES[name]
    state = data.draw(st.sampled_from(sorted(machine.states)))
    capabilities = sorted({c for spec in machine.states.values() for c in spec.allows})
    capability = data.draw(st.sampled_from([*capabilities, "teleport"]))
    if capability in machine.states[state].allows:
        machine.require("e1", state, capability)
        return
    with pytest.raises(IllegalTransition) as err:
        machine.require("e1", state, capability)
    assert err.value.current == state
    assert err.value.attempted == capability
    assert err.value.allowed == machine.events_from(state)


# -- extensions -----------------------------------------------------------------------------

AGE_CHECK = StateExtension(
    machine="order",
    states=(StateSpec("awaiting_age_check", frozenset({"cancel"}),
                      description="paid; waiting for proof of age"),),
    transitions=(
        Transition("placed", "payment_secured", "awaiting_age_check"),
        Transition("awaiting_age_check", "age_verified", "processing"),
        Transition("awaiting_age_check", "cancel", "cancelled"),
    ),
)


def test_age_check_extension_validates_and_inserts_the_state() -> None:
    machines = build_machines([AGE_CHECK])
    order = machines["order"]
    assert "awaiting_age_check" in order.states
    assert order.target("placed", "payment_secured") == "awaiting_age_check"
    assert order.next_state("o", "awaiting_age_check", "age_verified") == "processing"
    assert order.events_from("awaiting_age_check") == ["age_verified", "cancel"]
    assert order.allows("awaiting_age_check", "cancel")
    assert not order.allows("awaiting_age_check", "fulfil")
    assert reachable(order, "draft") == set(order.states)
    # the other machines are untouched, and the core machine itself is not modified
    for name in ("payment", "shipment", "return"):
        assert machines[name] is CORE_MACHINES[name]
    assert "awaiting_age_check" not in CORE_MACHINES["order"].states
    assert CORE_MACHINES["order"].target("placed", "payment_secured") == "processing"


def test_no_extensions_give_the_core_machines() -> None:
    assert build_machines([]) == CORE_MACHINES


def test_an_extension_may_grant_a_core_state_a_capability() -> None:
    ext = StateExtension(machine="order", states=(
        StateSpec("on_hold", frozenset({"authorize", "cancel", "capture"})),))
    order = build_machines([ext])["order"]
    assert order.allows("on_hold", "capture")


def rejected(extensions: Sequence[StateExtension]) -> LifecycleDefinitionError:
    with pytest.raises(LifecycleDefinitionError) as err:
        build_machines(extensions)
    return err.value


def test_unreachable_state_is_rejected() -> None:
    err = rejected([StateExtension(
        machine="order",
        states=(StateSpec("limbo", frozenset({"cancel"})),),
        transitions=(Transition("limbo", "cancel", "cancelled"),))])
    assert "'limbo' is unreachable" in err.detail
    assert err.extra["machine"] == "order"
    assert any("limbo" in p and "unreachable" in p for p in err.extra["problems"])


def test_redirect_that_strands_core_states_is_rejected() -> None:
    """Redirecting payment_secured into a dead end leaves processing and beyond unreachable."""
    err = rejected([StateExtension(
        machine="order",
        states=(StateSpec("awaiting_age_check", frozenset({"cancel"})),),
        transitions=(Transition("placed", "payment_secured", "awaiting_age_check"),
                     Transition("awaiting_age_check", "cancel", "cancelled")))])
    assert "'processing' is unreachable" in err.detail
    assert "'fulfilled' is unreachable" in err.detail


def test_terminal_state_with_a_way_out_is_rejected() -> None:
    err = rejected([StateExtension(
        machine="order", transitions=(Transition("cancelled", "reopen", "placed"),))])
    assert "terminal state 'cancelled' has outgoing transitions ['reopen']" in err.detail


def test_new_terminal_state_with_a_way_out_is_rejected() -> None:
    err = rejected([StateExtension(
        machine="return",
        states=(StateSpec("destroyed", terminal=True),),
        transitions=(Transition("received", "destroy", "destroyed"),
                     Transition("destroyed", "refund", "refunded")))])
    assert "terminal state 'destroyed'" in err.detail
    assert err.extra["machine"] == "return"


@pytest.mark.parametrize("present", [(), ("ship_partial",), ("ship_all",)])
def test_fulfil_without_ship_transitions_is_rejected(present: tuple[str, ...]) -> None:
    err = rejected([StateExtension(
        machine="order",
        states=(StateSpec("quick_ship", frozenset({"fulfil"})),),
        transitions=(Transition("processing", "express", "quick_ship"),
                     Transition("quick_ship", "cancel", "cancelled"),
                     *(Transition("quick_ship", ev, "fulfilled") for ev in present)))])
    for event in ("ship_partial", "ship_all"):
        message = f"state 'quick_ship' allows 'fulfil' but has no '{event}' transition"
        assert (message in err.detail) == (event not in present), err.detail


def test_fulfil_with_ship_transitions_is_accepted() -> None:
    order = build_machines([StateExtension(
        machine="order",
        states=(StateSpec("quick_ship", frozenset({"fulfil"})),),
        transitions=(Transition("processing", "express", "quick_ship"),
                     Transition("quick_ship", "ship_partial", "partially_fulfilled"),
                     Transition("quick_ship", "ship_all", "fulfilled")))])["order"]
    assert order.states_allowing("fulfil") == ["partially_fulfilled", "processing", "quick_ship"]


def test_transition_to_an_unknown_state_is_rejected() -> None:
    err = rejected([StateExtension(
        machine="order", transitions=(Transition("placed", "age_check", "nowhere"),))])
    assert "names unknown state 'nowhere'" in err.detail
    assert "placed --age_check--> nowhere" in err.detail


def test_transition_from_an_unknown_state_is_rejected() -> None:
    err = rejected([StateExtension(
        machine="shipment", transitions=(Transition("lost", "found", "shipped"),))])
    assert "names unknown state 'lost'" in err.detail


def test_state_that_can_never_end_is_rejected() -> None:
    err = rejected([StateExtension(
        machine="order",
        states=(StateSpec("black_hole"),),
        transitions=(Transition("placed", "fall", "black_hole"),))])
    assert "'black_hole' can never reach a terminal state" in err.detail


def test_unknown_machine_is_rejected() -> None:
    err = rejected([StateExtension(machine="invoice")])
    assert "unknown machine 'invoice'" in err.detail
    for known in MACHINE_NAMES:
        assert known in err.detail


def test_later_extension_is_validated_together_with_earlier_ones() -> None:
    """A valid extension does not excuse a broken one for the same machine."""
    broken = StateExtension(machine="order",
                            transitions=(Transition("awaiting_age_check", "skip", "nowhere"),))
    err = rejected([AGE_CHECK, broken])
    assert "nowhere" in err.detail


# -- the Engine with a lifecycle plugin -------------------------------------------------------


class AgeCheckPlugin:
    """Paid orders wait for an age check before they may be fulfilled."""

    @hookimpl
    def ordnung_lifecycle_extensions(self) -> list[StateExtension]:
        return [AGE_CHECK]


class BrokenLifecyclePlugin:
    @hookimpl
    def ordnung_lifecycle_extensions(self) -> list[StateExtension]:
        return [StateExtension(machine="order",
                               transitions=(Transition("placed", "age_check", "nowhere"),))]


async def age_check_engine(make_engine: Any) -> Engine:
    engine: Engine = await make_engine(
        plugins=[*builtin_plugins(), (AgeCheckPlugin(), "age_check")])
    await seed_shop(engine)
    return engine


async def test_engine_stops_a_paid_order_for_the_age_check(make_engine: Any) -> None:
    engine = await age_check_engine(make_engine)
    assert "awaiting_age_check" in {s["name"] for s in engine.lifecycle()["order"]["states"]}

    order = await engine.orders.place(order_request(("SHIRT-M", 2)))
    assert order.payments[0].status == "authorized"
    assert order.status == "awaiting_age_check"
    assert (await engine.orders.get(order.id)).status == "awaiting_age_check"
    assert await engine.fulfilment.queue() == []

    with pytest.raises(IllegalTransition) as err:
        await engine.fulfilment.create_shipment(order.id)
    assert err.value.current == "awaiting_age_check"
    assert err.value.attempted == "fulfil"
    assert err.value.allowed == ["age_verified", "cancel"]
    with pytest.raises(InvalidInput, match="core event"):
        await engine.orders.transition(order.id, "ship_all")
    unchanged = await engine.orders.get(order.id)
    assert unchanged.status == "awaiting_age_check" and unchanged.shipments == []

    order = await engine.orders.transition(order.id, "age_verified", data={"checked_by": "staff"})
    assert order.status == "processing"
    assert [o.id for o in await engine.fulfilment.queue()] == [order.id]
    order = await engine.payments.capture(order.id)
    order = await ship_all(engine, order)
    assert order.status == "fulfilled"
    assert all(line.shipped == line.quantity for line in order.lines)
    kinds = [e.kind for e in await engine.orders.timeline(order.id)]
    assert "order.awaiting_age_check" in kinds
    assert kinds.index("order.awaiting_age_check") < kinds.index("order.processing")
    assert await engine.inventory.ledger_discrepancies() == []


async def test_engine_can_cancel_during_the_age_check(make_engine: Any) -> None:
    engine = await age_check_engine(make_engine)
    before = {lvl.sku: lvl.reserved for lvl in await engine.inventory.levels(["POSTER"])}
    order = await engine.orders.place(order_request(("POSTER", 3)))
    assert order.status == "awaiting_age_check"
    order = await engine.orders.cancel(order.id, reason="under age")
    assert order.status == "cancelled"
    assert order.payments[0].status == "voided"
    after = {lvl.sku: lvl.reserved for lvl in await engine.inventory.levels(["POSTER"])}
    assert after == before
    with pytest.raises(IllegalTransition):
        await engine.orders.transition(order.id, "age_verified")


async def test_engine_refuses_to_start_with_an_inconsistent_lifecycle(make_engine: Any) -> None:
    with pytest.raises(LifecycleDefinitionError) as err:
        await make_engine(plugins=[*builtin_plugins(), (BrokenLifecyclePlugin(), "broken")])
    assert "nowhere" in err.value.detail
