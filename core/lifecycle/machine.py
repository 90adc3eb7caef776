"""A declarative state machine: states with capabilities, and event-driven transitions.

Why capabilities: the engine never asks "is the order in state X?". It asks
"does the current state allow fulfilment?". A plugin that inserts a state
(say ``awaiting_age_check`` between ``placed`` and ``processing``) declares
what that state allows, and every operation keeps working without a single
hard-coded state name being touched.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping

import msgspec

from ordnung.core.errors import IllegalTransition, LifecycleDefinitionError


class StateSpec(msgspec.Struct, frozen=True):
    """A state: what it allows, and whether nothing may follow it."""

    name: str
    allows: frozenset[str] = frozenset()
    terminal: bool = False
    description: str = ""


class Transition(msgspec.Struct, frozen=True):
    """``event`` moves the machine from ``source`` to ``target``."""

    source: str
    event: str
    target: str


class StateExtension(msgspec.Struct, frozen=True):
    """What a plugin adds to one machine.

    ``states`` are new states (or replace a core state's spec of the same name,
    e.g. to grant an extra capability). ``transitions`` are added; one whose
    ``(source, event)`` already exists redirects that edge to the new target,
    which is how a state is inserted between two existing ones.
    """

    machine: str
    states: tuple[StateSpec, ...] = ()
    transitions: tuple[Transition, ...] = ()


class Machine:
    """An immutable, validated transition table."""

    def __init__(
        self,
        name: str,
        initial: str,
        states: Iterable[StateSpec],
        transitions: Iterable[Transition],
        requires: Mapping[str, tuple[str, ...]] | None = None,
    ) -> None:
        self.name = name
        self.initial = initial
        self.states: dict[str, StateSpec] = {s.name: s for s in states}
        self.edges: dict[tuple[str, str], str] = {}
        for t in transitions:
            self.edges[(t.source, t.event)] = t.target
        #: capability -> events every state with that capability must handle
        self.requires: dict[str, tuple[str, ...]] = dict(requires or {})
        self._events_from: dict[str, list[str]] = {}
        for (source, event) in self.edges:
            self._events_from.setdefault(source, []).append(event)
        self._reachable_without: dict[str, frozenset[str]] = {}
        self.validate()

    # -- queries -----------------------------------------------------------------
    def allows(self, state: str, capability: str) -> bool:
        spec = self.states.get(state)
        return spec is not None and capability in spec.allows

    def events_from(self, state: str) -> list[str]:
        return sorted(self._events_from.get(state, []))

    def target(self, state: str, event: str) -> str | None:
        return self.edges.get((state, event))

    def is_terminal(self, state: str) -> bool:
        return self.states[state].terminal

    def is_initial(self, state: str) -> bool:
        return state == self.initial

    def went_through(self, state: str, event: str) -> bool:
        """Whether every way from the initial state to ``state`` fires ``event``.

        So "is this shipment delivered?" is ``went_through(status, "deliver")``, and it
        stays true for a state a plugin adds after ``delivered``: a question about the
        entity's history, answered from the graph instead of a list of state names.
        """
        if state not in self.states:
            return False
        if event not in self._reachable_without:
            self._reachable_without[event] = frozenset(
                self._reachable_from(self.initial, skipping=event))
        return state not in self._reachable_without[event]

    def states_allowing(self, capability: str) -> list[str]:
        return sorted(s.name for s in self.states.values() if capability in s.allows)

    # -- enforcement -------------------------------------------------------------
    def require(self, entity_id: str, state: str, capability: str) -> None:
        """Raise :class:`IllegalTransition` unless ``state`` allows ``capability``."""
        if not self.allows(state, capability):
            raise IllegalTransition(self.name, entity_id, state, capability,
                                    self.events_from(state))

    def next_state(self, entity_id: str, state: str, event: str) -> str:
        """The target of ``event`` from ``state``, or :class:`IllegalTransition`."""
        target = self.edges.get((state, event))
        if target is None:
            raise IllegalTransition(self.name, entity_id, state, event, self.events_from(state))
        return target

    # -- construction ------------------------------------------------------------
    def extended(self, extensions: Iterable[StateExtension]) -> Machine:
        states = dict(self.states)
        edges = dict(self.edges)
        for ext in extensions:
            for spec in ext.states:
                states[spec.name] = spec
            for t in ext.transitions:
                edges[(t.source, t.event)] = t.target
        return Machine(
            self.name,
            self.initial,
            states.values(),
            [Transition(s, e, t) for (s, e), t in edges.items()],
            self.requires,
        )

    def validate(self) -> None:
        """Check the graph: known states, reachability, terminal states, capabilities."""
        problems: list[str] = []
        if self.initial not in self.states:
            problems.append(f"initial state {self.initial!r} is not defined")
        for (source, event), target in self.edges.items():
            for end in (source, target):
                if end not in self.states:
                    problems.append(f"transition {source} --{event}--> {target} names "
                                    f"unknown state {end!r}")
        for name, spec in self.states.items():
            if spec.terminal and self._events_from.get(name):
                problems.append(f"terminal state {name!r} has outgoing transitions "
                                f"{self.events_from(name)}")
            for capability in spec.allows:
                for event in self.requires.get(capability, ()):
                    if (name, event) not in self.edges:
                        problems.append(f"state {name!r} allows {capability!r} but has no "
                                        f"{event!r} transition")
        if not problems:
            reachable = self._reachable_from(self.initial)
            for name in self.states:
                if name not in reachable:
                    problems.append(f"state {name!r} is unreachable from {self.initial!r}")
            terminals = {n for n, s in self.states.items() if s.terminal}
            if not terminals:
                problems.append("no terminal state")
            for name in self.states:
                if not (self._reachable_from(name) & terminals):
                    problems.append(f"state {name!r} can never reach a terminal state")
        if problems:
            raise LifecycleDefinitionError(
                f"{self.name} lifecycle is inconsistent: " + "; ".join(problems),
                machine=self.name,
                problems=problems,
            )

    def _reachable_from(self, start: str, skipping: str | None = None) -> set[str]:
        seen = {start}
        queue = deque([start])
        while queue:
            state = queue.popleft()
            for event in self._events_from.get(state, ()):
                if event == skipping:
                    continue
                nxt = self.edges[(state, event)]
                if nxt not in seen:
                    seen.add(nxt)
                    queue.append(nxt)
        return seen

    def describe(self) -> dict[str, object]:
        """A serialisable picture of the graph (for docs, the API, debugging)."""
        return {
            "name": self.name,
            "initial": self.initial,
            "states": [
                {"name": s.name, "allows": sorted(s.allows), "terminal": s.terminal}
                for s in sorted(self.states.values(), key=lambda s: s.name)
            ],
            "transitions": [
                {"source": s, "event": e, "target": t}
                for (s, e), t in sorted(self.edges.items())
            ],
        }
