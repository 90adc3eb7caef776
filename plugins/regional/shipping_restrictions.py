"""Shipping restrictions: which products may not go to which countries (or regions).

Each rule selects lines by any of ``skus``, ``tax_classes`` and
``attributes`` (the variant's catalogue attributes, all given pairs must
match); a rule with no selector applies to every line. It then either
``deny``-s some destinations or ``allow``-s only some. A destination is an
ISO country code (``"US"``) or a country and region (``"US-CA"``); a region
entry matches only that region, a country entry the whole country.

At placement (``ordnung_validate_order``) every line that breaks a rule gives
one ``Violation`` naming the line, its SKU and the rule
(``code="shipping-restricted:<rule id>"``); the engine refuses the order with
``ValidationFailed`` listing them all, before anything is reserved.

The destination is the shipping address. A cart without one ships nothing
(e.g. collected in store) and is not checked. Gift lines are checked like any
line.
"""

from __future__ import annotations

import msgspec

from ordnung.plugin import (
    OrderLine,
    PricingContext,
    Violation,
    WithContext,
    hookimpl,
    require_iso,
)


class Rule(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    id: str
    reason: str
    skus: list[str] = msgspec.field(default_factory=list)
    tax_classes: list[str] = msgspec.field(default_factory=list)
    attributes: dict[str, str] = msgspec.field(default_factory=dict)
    #: destinations the selected lines may not ship to
    deny: list[str] = msgspec.field(default_factory=list)
    #: if given, the only destinations the selected lines may ship to
    allow: list[str] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("a rule needs an id")
        if bool(self.deny) == bool(self.allow):
            raise ValueError(f"rule {self.id!r}: give either deny or allow destinations")
        require_iso(f"rule {self.id!r}: destinations", [*self.deny, *self.allow], places=True)

    def selects(self, line: OrderLine, attributes: dict[str, str]) -> bool:
        if self.skus and line.sku not in self.skus:
            return False
        if self.tax_classes and line.tax_class not in self.tax_classes:
            return False
        return all(attributes.get(k) == v for k, v in self.attributes.items())

    def forbids(self, country: str, region: str) -> bool:
        places = {country, f"{country}-{region}"} if region else {country}
        if self.deny:
            return bool(places & set(self.deny))
        return not places & set(self.allow)


class ShippingRestrictions(WithContext["ShippingRestrictions.Settings"]):
    """Refuses orders whose lines may not ship to the destination (by SKU, class, attribute)."""

    class Settings(msgspec.Struct, forbid_unknown_fields=True):
        rules: list[Rule] = msgspec.field(default_factory=list)

        def __post_init__(self) -> None:
            ids = [rule.id for rule in self.rules]
            if len(ids) != len(set(ids)):
                raise ValueError("rule ids must be unique")

    def __init__(self, settings: ShippingRestrictions.Settings) -> None:
        self.settings = settings

    async def _attributes(self, skus: list[str]) -> dict[str, dict[str, str]]:
        if self.context is None or not any(rule.attributes for rule in self.settings.rules):
            return {}
        engine = self.context.engine
        return {sku: dict((await engine.variant(sku)).attributes) for sku in skus}

    @hookimpl
    async def ordnung_validate_order(self, ctx: PricingContext) -> list[Violation] | None:
        address = ctx.shipping_address
        if address is None or not self.settings.rules:
            return None
        attributes = await self._attributes(sorted({line.sku for line in ctx.lines}))
        region = address.region.strip().upper()
        where = f"{address.country}-{region}" if region else address.country
        violations = []
        for line in ctx.lines:
            for rule in self.settings.rules:
                if rule.selects(line, attributes.get(line.sku, {})) \
                        and rule.forbids(address.country, region):
                    violations.append(Violation(
                        code=f"shipping-restricted:{rule.id}",
                        message=f"line {line.id} ({line.sku}) may not ship to {where}: "
                                f"{rule.reason} (rule {rule.id})",
                        line_id=line.id, sku=line.sku))
        return violations
