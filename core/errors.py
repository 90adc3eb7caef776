"""Typed errors of the order engine.

Every error carries a stable machine-readable ``type`` (the last segment of
the RFC 9457 problem type the API answers with), a human ``detail`` and the
structured facts a client needs to react (``extra``). The API layer maps
them one-to-one; embedders catch them by class.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any


class OrdnungError(Exception):
    """Base of every error the engine raises on purpose."""

    type: str = "error"
    status: int = 400

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra: dict[str, Any] = extra

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "detail": self.detail, **self.extra}


class ConfigError(OrdnungError, ValueError):
    """A setting (an ``ORDNUNG_*`` variable or an ``EngineConfig`` value) that cannot work;
    names the setting, so that a person can fix it from one line."""

    type = "configuration"
    status = 500

    def __init__(self, setting: str, detail: str) -> None:
        super().__init__(f"{setting}: {detail}", setting=setting)
        self.setting = setting


class InvalidInput(OrdnungError, ValueError):
    """Input that can never be valid: names the field and why."""

    type = "validation"
    status = 422

    def __init__(self, detail: str, *, field: str | None = None, **extra: Any) -> None:
        super().__init__(detail, field=field, **extra)
        self.field = field


class CurrencyNotSold(InvalidInput):
    """A cart or order in a currency its channel does not sell in."""

    type = "currency-not-sold"


class ValidationFailed(OrdnungError):
    """A cart or order broke one or more rules (regional, restriction, plugin)."""

    type = "validation"
    status = 422

    def __init__(self, violations: Sequence[Mapping[str, Any]]) -> None:
        text = "; ".join(str(v.get("message", v)) for v in violations)
        super().__init__(text or "validation failed", violations=list(violations))
        self.violations = list(violations)


class CurrencyMismatch(OrdnungError, TypeError):
    type = "currency-mismatch"
    status = 422

    def __init__(self, left: str, right: str) -> None:
        super().__init__(f"cannot combine {left} with {right}", currencies=[left, right])


class NotFound(OrdnungError):
    type = "not-found"
    status = 404

    def __init__(self, kind: str, key: str) -> None:
        super().__init__(f"{kind} {key!r} not found", resource=kind, key=key)


class Forbidden(OrdnungError):
    type = "forbidden"
    status = 403


class InvalidCredentials(OrdnungError):
    """Sign-in, refresh or a one-time account token failed. Says nothing about which part
    was wrong (unknown e-mail, wrong password, expired or reused token)."""

    type = "invalid-credentials"
    status = 401


class EmailNotVerified(OrdnungError):
    """The operation needs the customer's e-mail address to be verified first."""

    type = "email-not-verified"
    status = 403


class RateLimited(OrdnungError):
    """Too many attempts; ``retry_after`` is the number of seconds until the next may pass."""

    type = "rate-limited"
    status = 429

    def __init__(self, detail: str, *, retry_after: int, **extra: Any) -> None:
        super().__init__(detail, retry_after=retry_after, **extra)
        self.retry_after = retry_after


class DatabaseUnavailable(OrdnungError):
    """The database did not answer in time (unreachable, frozen, restarting, out of
    connections). Nothing was committed by the statement that failed; the request may be
    retried after ``retry_after`` seconds."""

    type = "database-unavailable"
    status = 503

    def __init__(self, detail: str = "the database is not available; try again shortly",
                 *, retry_after: int = 2, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.retry_after = retry_after


class Conflict(OrdnungError):
    """The request collides with the current state (duplicate key, concurrent write)."""

    type = "conflict"
    status = 409


class IllegalTransition(OrdnungError):
    """An operation the current state does not allow; names what is allowed."""

    type = "illegal-transition"
    status = 409

    def __init__(
        self, machine: str, entity_id: str, current: str, attempted: str, allowed: Iterable[str]
    ) -> None:
        allowed_list = sorted(allowed)
        super().__init__(
            f"{machine} {entity_id} is {current!r}: cannot {attempted!r} "
            f"(allowed: {', '.join(allowed_list) or 'nothing'})",
            machine=machine,
            entity_id=entity_id,
            current_state=current,
            attempted=attempted,
            allowed=allowed_list,
        )
        self.machine = machine
        self.current = current
        self.attempted = attempted
        self.allowed = allowed_list


class TransitionVetoed(OrdnungError):
    """A plugin's guard refused a transition; its reason reaches the caller."""

    type = "guard-veto"
    status = 409

    def __init__(self, machine: str, event: str, plugin: str, reason: str) -> None:
        super().__init__(
            f"{plugin} vetoed {machine} {event!r}: {reason}",
            machine=machine,
            attempted=event,
            plugin=plugin,
            reason=reason,
        )
        self.plugin = plugin
        self.reason = reason


class OutOfStock(OrdnungError):
    """Not enough available stock; lists each short SKU with what is available."""

    type = "out-of-stock"
    status = 409

    def __init__(self, shortages: Sequence[Mapping[str, Any]]) -> None:
        skus = ", ".join(f"{s['sku']} (wanted {s['requested']}, available {s['available']})"
                         for s in shortages)
        super().__init__(f"out of stock: {skus}", shortages=list(shortages))
        self.shortages = list(shortages)


class PaymentDeclined(OrdnungError):
    type = "payment-declined"
    status = 402

    def __init__(self, gateway: str, reason: str, **extra: Any) -> None:
        super().__init__(f"payment declined by {gateway}: {reason}", gateway=gateway,
                         reason=reason, **extra)
        self.gateway = gateway
        self.reason = reason


class NotForSale(OrdnungError):
    """A cart or order asked to buy a variant that is given only (e.g. a free gift)."""

    type = "not-for-sale"
    status = 422

    def __init__(self, sku: str) -> None:
        super().__init__(f"{sku} is not sold on its own: it is only given (e.g. as a free "
                         "gift when an order qualifies)", sku=sku, field="lines")
        self.sku = sku


class InvariantViolation(OrdnungError):
    """The core refused a change that would break one of its invariants.

    Raised whatever plugins answered: e.g. capturing more than authorized, or
    shipping an order whose payment is not secured.
    """

    type = "invariant-violation"
    status = 409


class TaxUnavailable(OrdnungError):
    """No tax plugin could compute tax: the engine fails closed, never zero tax."""

    type = "tax-unavailable"
    status = 422


class IdempotencyMismatch(OrdnungError):
    """The same idempotency key was used with a different request."""

    type = "idempotency-mismatch"
    status = 422


class IdempotencyInterrupted(OrdnungError):
    """An earlier request with this idempotency key changed something and was cut off
    before it answered; the operation cannot tell its outcome, so it is not run again."""

    type = "idempotency-interrupted"
    status = 409


class PluginError(OrdnungError):
    """A plugin is misconfigured or broke its hook contract."""

    type = "plugin-error"
    status = 500

    def __init__(self, plugin: str, detail: str, **extra: Any) -> None:
        super().__init__(f"plugin {plugin!r}: {detail}", plugin=plugin, **extra)
        self.plugin = plugin


class LifecycleDefinitionError(OrdnungError):
    """The merged state graph (core plus plugin states) is inconsistent."""

    type = "lifecycle-definition"
    status = 500
