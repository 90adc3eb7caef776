"""The four state machines (order, payment, shipment, return) and their checks."""

from ordnung.core.lifecycle.machine import Machine, StateExtension, StateSpec, Transition
from ordnung.core.lifecycle.questions import Lifecycle
from ordnung.core.lifecycle.tables import CORE_MACHINES, build_machines

__all__ = [
    "CORE_MACHINES",
    "Lifecycle",
    "Machine",
    "StateExtension",
    "StateSpec",
    "Transition",
    "build_machines",
]
