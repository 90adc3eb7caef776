"""Conformance suites: the contract every plugin of a kind must meet.

Subclass the suite for your plugin's kind in a test module, name the class
``Test...`` and set what the suite needs::

    from ordnung.testing import PaymentGatewayConformance

    class TestAcmePay(PaymentGatewayConformance):
        plugin = AcmePay                 # the class (or an instance)
        name = "acme_pay"                # its entry-point name
        settings = {"api_key": "test"}   # its settings
        approve_token = "tok_ok"

Each test starts a real Engine on a fresh database (a temporary SQLite file, or
``--ordnung-database-url``), seeds the kit catalogue (``KIT-SHIRT``, ``KIT-MUG``,
``KIT-POSTER``, ``KIT-HEAVY``, ``KIT-GIFT``) and adds the kit's helper plugins
for the roles your plugin does not play. The built-in plugins pass the same
suites (``tests/test_conformance.py`` in ordnung).
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Awaitable, Callable, Sequence
from datetime import date
from fractions import Fraction
from typing import Any, ClassVar

import msgspec
import pytest

from ordnung.core import Address, Product
from ordnung.core.contexts import PricingContext
from ordnung.core.domain.orders import Order
from ordnung.core.domain.payments import GatewayResult, OperationLookup, PaymentRequest
from ordnung.core.domain.pricing import Discount, GiftLine, Note, TaxAnswer
from ordnung.core.errors import IllegalTransition, PaymentDeclined, TaxUnavailable
from ordnung.testing.shop import (
    HELPERS,
    KIT_ADDRESS,
    KIT_GIFT_PLUGIN,
    KIT_PRODUCTS,
    KIT_STOCK,
    Shop,
    open_shop,
    run,
    today,
)

Scenario = Callable[[Shop], Awaitable[None]]


class Conformance:
    """What every suite shares: the plugin under test and a shop to try it in."""

    #: the plugin class (with its ``Settings``) or a plugin object
    plugin: ClassVar[Any] = None
    #: its name: the entry-point name in group ``ordnung``
    name: ClassVar[str] = ""
    settings: ClassVar[dict[str, Any]] = {}
    #: check that the entry point ``name`` of group ``ordnung`` loads ``plugin``
    check_entry_point: ClassVar[bool] = True
    #: further plugins the shop needs, as ``Engine(plugins=...)`` takes them
    extra_plugins: ClassVar[Sequence[Any]] = ()
    products: ClassVar[Sequence[Product]] = KIT_PRODUCTS
    stock: ClassVar[dict[str, int]] = dict(KIT_STOCK)
    #: an address the plugin serves, and the currency of the carts
    address: ClassVar[Address] = KIT_ADDRESS
    currency: ClassVar[str] = "EUR"
    #: which kit helpers (payment, carrier, tax) the suite adds: the roles not played
    role: ClassVar[str] = ""

    def plugin_spec(self) -> Any:
        if self.plugin is None or not self.name:
            raise TypeError(f"{type(self).__name__} must set `plugin` and `name`")
        if isinstance(self.plugin, type):
            return (self.plugin, self.name, dict(self.settings))
        return (self.plugin, self.name)

    def helpers(self) -> tuple[str, ...]:
        return tuple(h for h in HELPERS if h != self.role)

    def in_shop(self, database_url: str, scenario: Scenario, **shop: Any) -> None:
        async def main() -> None:
            async with open_shop([self.plugin_spec(), *self.extra_plugins],
                                 database_url=database_url, helpers=self.helpers(),
                                 products=self.products, stock=self.stock,
                                 address=self.address, currency=self.currency,
                                 **shop) as s:
                await scenario(s)

        run(main())

    def test_entry_point_loads_the_plugin(self) -> None:
        if not self.check_entry_point:
            pytest.skip("check_entry_point = False")
        found = {ep.name: ep for ep in importlib.metadata.entry_points(group="ordnung")}
        assert self.name in found, (
            f"no entry point {self.name!r} in group 'ordnung' (installed: {sorted(found)}); "
            "declare it under [project.entry-points.ordnung] and install the package")
        expected = self.plugin if isinstance(self.plugin, type) else type(self.plugin)
        assert found[self.name].load() is expected

    def test_settings_are_a_msgspec_struct_with_defaults_or_given(self) -> None:
        settings_type = getattr(self.plugin, "Settings", None)
        if settings_type is None:
            assert not self.settings, "settings given but the plugin has no Settings Struct"
            return
        assert issubclass(settings_type, msgspec.Struct), "Settings must be a msgspec.Struct"
        msgspec.convert(dict(self.settings), settings_type, strict=False)


def _ids(lines: Sequence[Any]) -> set[str]:
    return {line.id for line in lines}


def _rate(rate: str, what: str) -> Fraction:
    try:
        value = Fraction(rate)
    except (ValueError, ZeroDivisionError):
        raise AssertionError(f"{what}: rate {rate!r} is not a decimal number") from None
    assert 0 <= value <= 1, f"{what}: rate {rate!r} is outside 0..1"
    return value


# --------------------------------------------------------------------------- payments


class PaymentGatewayConformance(Conformance):
    """A payment gateway: methods, authorize/capture/refund/void, amounts, idempotency.

    Set ``approve_token`` (and ``method``) to a token the gateway accepts and, if it
    has one, ``decline_token``. ``authorizes`` says what an accepted authorization
    answers: ``"approved"`` (a card), ``"pending"`` (money collected outside any
    gateway, which staff mark paid later: ``confirmed_by_capture``) or
    ``"awaits_confirmation"`` (the gateway confirms later by webhook; until then the
    payment cannot be captured).
    """

    role = "payment"
    approve_token: ClassVar[str] = ""
    decline_token: ClassVar[str | None] = None
    method: ClassVar[str] = ""
    authorizes: ClassVar[str] = "approved"
    lines: ClassVar[Sequence[tuple[str, int]]] = (("KIT-SHIRT", 2), ("KIT-MUG", 1))

    async def _place(self, shop: Shop, token: str | None = None) -> Order:
        return await shop.place(*self.lines, gateway=self.name, method=self.method,
                                token=self.approve_token if token is None else token)

    def test_offers_payment_methods(self, ordnung_database_url: str) -> None:
        async def scenario(shop: Shop) -> None:
            order = await shop.place(*self.lines, pay=False)
            mine = [m for m in await shop.engine.payments.methods(order.id)
                    if m.gateway == self.name]
            assert mine, f"{self.name} offers no payment method"
            for m in mine:
                assert m.method and m.name, f"a method needs an id and a name: {m}"
            if self.method:
                assert self.method in {m.method for m in mine}

        self.in_shop(ordnung_database_url, scenario)

    def test_authorization_holds_the_order_total(self, ordnung_database_url: str) -> None:
        async def scenario(shop: Shop) -> None:
            order = await self._place(shop)
            payment = order.payments[-1]
            assert payment.gateway == self.name and payment.amount == order.totals.total
            if self.authorizes == "approved":
                assert payment.status == "authorized", payment.failure_reason
                assert payment.authorized == order.totals.total
                assert order.status == "processing"
            else:
                expected = ("awaiting_payment" if self.authorizes == "pending"
                            else "awaiting_confirmation")
                assert payment.status == expected, (
                    f"authorizes={self.authorizes!r} expects {expected}, got {payment.status} "
                    "(does the pending answer set confirmed_by_capture as it should?)",
                    payment.failure_reason)
                assert payment.authorized == 0
                assert order.totals.paid == 0
            assert payment.reference, "the gateway's reference must be kept"

        self.in_shop(ordnung_database_url, scenario)

    def test_capture_and_refund_move_exactly_the_amounts(self,
                                                         ordnung_database_url: str) -> None:
        async def scenario(shop: Shop) -> None:
            engine = shop.engine
            order = await self._place(shop)
            total = order.totals.total
            if self.authorizes == "awaits_confirmation":
                # nothing to capture before the gateway confirms, and it is not asked
                with pytest.raises(IllegalTransition):
                    await engine.payments.capture(order.id)
                assert (await engine.orders.get(order.id)).totals.paid == 0
                return
            if self.authorizes == "approved":
                first = total // 3
                order = await engine.payments.capture(order.id, amount=first)
                assert order.payments[-1].captured == first
                assert order.payments[-1].status == "partially_captured"
            order = await engine.payments.capture(order.id)
            payment = order.payments[-1]
            assert payment.captured == total and payment.status == "captured"
            assert order.totals.paid == total
            order = await engine.payments.refund(order.id, amount=100, reason="conformance")
            assert order.payments[-1].refunded == 100
            assert order.payments[-1].status == "partially_refunded"
            order = await engine.payments.refund(order.id)
            payment = order.payments[-1]
            assert payment.refunded == total and payment.status == "refunded"
            assert order.totals.refunded == total

        self.in_shop(ordnung_database_url, scenario)

    def test_cancelling_voids_the_authorization(self, ordnung_database_url: str) -> None:
        async def scenario(shop: Shop) -> None:
            before = await shop.available(*(sku for sku, _ in self.lines))
            order = await self._place(shop)
            order = await shop.engine.orders.cancel(order.id, reason="conformance")
            assert order.status == "cancelled"
            assert order.payments[-1].status == "voided", order.payments[-1]
            assert await shop.available(*(sku for sku, _ in self.lines)) == before

        self.in_shop(ordnung_database_url, scenario)

    def test_a_decline_holds_nothing(self, ordnung_database_url: str) -> None:
        if self.decline_token is None:
            pytest.skip("the gateway has no decline_token")
        token = self.decline_token

        async def scenario(shop: Shop) -> None:
            before = await shop.available(*(sku for sku, _ in self.lines))
            with pytest.raises(PaymentDeclined) as declined:
                await self._place(shop, token=token)
            order = await shop.engine.orders.get(declined.value.extra["order_id"])
            assert order.status == "cancelled"
            assert order.payments[-1].status == "failed"
            assert order.payments[-1].failure_reason
            assert await shop.available(*(sku for sku, _ in self.lines)) == before

        self.in_shop(ordnung_database_url, scenario)

    def test_every_operation_is_idempotent_on_its_key(self, ordnung_database_url: str) -> None:
        async def scenario(shop: Shop) -> None:
            order = await self._place(shop)
            payment = order.payments[-1]
            host = shop.engine.host
            for hook, amount in (("ordnung_authorize", payment.amount),
                                 ("ordnung_capture", payment.amount // 2),
                                 ("ordnung_refund", 100), ("ordnung_void", payment.amount)):
                request = PaymentRequest(
                    payment_id=payment.id, order_id=order.id, order_number=order.number,
                    amount=amount, currency=order.currency, method=self.method,
                    token=self.approve_token, reference=payment.reference,
                    idempotency_key=f"{payment.id}:{hook}:conformance",
                    customer_email=order.email)
                first = await host.call(hook, to=self.name, request=request)
                again = await host.call(hook, to=self.name, request=request)
                assert isinstance(first, GatewayResult), f"{hook} must answer a GatewayResult"
                assert first.outcome in ("approved", "pending", "declined")
                assert again == first, f"{hook} answered differently for the same key"
                if first.amount is not None:
                    assert 0 <= first.amount <= amount, f"{hook} moved more than asked"
                if first.outcome == "declined":
                    assert first.reason, f"{hook} declined without a reason"

        self.in_shop(ordnung_database_url, scenario)


    def test_looks_operations_up_by_their_key(self, ordnung_database_url: str) -> None:
        """``ordnung_lookup_operation`` (optional): an operation the gateway carried out is
        found with the answer it got, without being carried out again; a key it never
        received is not found."""
        if not hasattr(self.plugin, "ordnung_lookup_operation"):  # a class or an object
            pytest.skip("the gateway does not implement ordnung_lookup_operation")

        async def scenario(shop: Shop) -> None:
            order = await self._place(shop)
            payment = order.payments[-1]
            host = shop.engine.host

            def request(key: str) -> PaymentRequest:
                return PaymentRequest(
                    payment_id=payment.id, order_id=order.id, order_number=order.number,
                    amount=payment.amount, currency=order.currency, method=self.method,
                    token=self.approve_token, reference=payment.reference,
                    idempotency_key=key, customer_email=order.email)

            # the placement's own authorization, by the key the core sent it with
            placed = await host.call("ordnung_lookup_operation", to=self.name,
                                     operation="authorize",
                                     request=request(f"{payment.id}:authorize:1"))
            if placed is None:
                pytest.skip("the gateway answers no lookups (None)")
            assert isinstance(placed, OperationLookup), \
                "ordnung_lookup_operation must answer an OperationLookup"
            assert placed.found and placed.result is not None, \
                "the placement's authorization was not found by its key"
            expected = {"approved": "approved", "pending": "pending",
                        "awaits_confirmation": "pending"}[self.authorizes]
            assert placed.result.outcome == expected, placed.result
            # a key never sent: not found, and looking it up carries nothing out
            unknown = request(f"{payment.id}:authorize:conformance-never-sent")
            missing = await host.call("ordnung_lookup_operation", to=self.name,
                                      operation="authorize", request=unknown)
            assert isinstance(missing, OperationLookup) and not missing.found, missing
            again = await host.call("ordnung_lookup_operation", to=self.name,
                                    operation="authorize", request=unknown)
            assert again == missing, "a lookup changed what the gateway knows"

        self.in_shop(ordnung_database_url, scenario)


# --------------------------------------------------------------------------- carriers


class CarrierConformance(Conformance):
    """A carrier: well-formed, deterministic quotes and an order shipped with one.

    ``address`` must be served; set ``unserved_address`` to one it does not serve.
    ``lines`` is the cart quoted.
    """

    role = "carrier"
    lines: ClassVar[Sequence[tuple[str, int]]] = (("KIT-SHIRT", 1), ("KIT-MUG", 2))
    unserved_address: ClassVar[Address | None] = None

    async def _quotes(self, shop: Shop, address: Address | None = None) -> list[Any]:
        cart = await shop.cart(*self.lines, address=address)
        return [(m, q) for m, q in await shop.engine.carts.quotes(cart.id)
                if m.startswith(f"{self.name}:")]

    def test_quotes_are_well_formed(self, ordnung_database_url: str) -> None:
        async def scenario(shop: Shop) -> None:
            quotes = await self._quotes(shop)
            assert quotes, f"{self.name} gave no quote for {self.address}"
            services = [q.service for _, q in quotes]
            assert len(set(services)) == len(services), f"services repeat: {services}"
            for method, quote in quotes:
                assert quote.service and ":" not in quote.service, method
                assert quote.name, f"{method} needs a name customers can read"
                assert isinstance(quote.price, int) and quote.price >= 0, method
                if quote.expected_delivery is not None:
                    assert isinstance(quote.expected_delivery, date)
                    assert quote.expected_delivery >= today(), f"{method} delivers in the past"

        self.in_shop(ordnung_database_url, scenario)

    def test_quotes_are_deterministic(self, ordnung_database_url: str) -> None:
        async def scenario(shop: Shop) -> None:
            assert await self._quotes(shop) == await self._quotes(shop)

        self.in_shop(ordnung_database_url, scenario)

    def test_an_order_ships_with_the_chosen_service(self, ordnung_database_url: str) -> None:
        async def scenario(shop: Shop) -> None:
            for method, quote in await self._quotes(shop):
                order = await shop.place(*self.lines, shipping_method=method)
                assert order.shipping is not None and order.shipping.method == method
                assert order.shipping.price == quote.price
                assert order.shipping.expected_delivery == quote.expected_delivery
                assert order.totals.shipping == quote.price
                order = await shop.pay_and_ship(order, tracking_number="KIT-TRACK-1")
                assert order.status == "fulfilled"
                for shipment in order.shipments:
                    assert shipment.status == "shipped" and shipment.tracking_number

        self.in_shop(ordnung_database_url, scenario)

    def test_an_unserved_address_gets_no_quote(self, ordnung_database_url: str) -> None:
        if self.unserved_address is None:
            pytest.skip("no unserved_address given")
        unserved = self.unserved_address

        async def scenario(shop: Shop) -> None:
            assert await self._quotes(shop, unserved) == []

        self.in_shop(ordnung_database_url, scenario)


# --------------------------------------------------------------------------- tax


class TaxConformance(Conformance):
    """A tax plugin: a rate for every line (or no answer at all), exact, deterministic.

    ``address`` must be served; set ``unserved_address`` to one it has no rates for
    (the engine then refuses to place rather than charge no tax). The kit's
    ``KitGift`` adds a gift line (``KIT-GIFT``, given only) to every cart: keep
    ``KIT_GIFT_PLUGIN`` in ``extra_plugins`` if you set them.
    """

    role = "tax"
    lines: ClassVar[Sequence[tuple[str, int]]] = (
        ("KIT-SHIRT", 2), ("KIT-MUG", 1), ("KIT-POSTER", 1))
    extra_plugins: ClassVar[Sequence[Any]] = (KIT_GIFT_PLUGIN,)
    unserved_address: ClassVar[Address | None] = None

    async def _answer(self, shop: Shop, address: Address | None = None
                      ) -> tuple[PricingContext, TaxAnswer | None]:
        ctx = await shop.context(*self.lines, address=address)
        answer = await shop.engine.host.call("ordnung_tax", to=self.name, ctx=ctx)
        return ctx, answer

    def test_answers_a_rate_for_every_line(self, ordnung_database_url: str) -> None:
        async def scenario(shop: Shop) -> None:
            ctx, answer = await self._answer(shop)
            assert isinstance(answer, TaxAnswer), f"{self.name} did not answer for {ctx}"
            given = [lt.line_id for lt in answer.lines]
            assert sorted(given) == sorted(_ids(ctx.lines)), (
                f"rates for {given}, lines are {sorted(_ids(ctx.lines))}")
            for lt in answer.lines:
                _rate(lt.rate, f"line {lt.line_id}")
            _rate(answer.shipping_rate, "shipping")

        self.in_shop(ordnung_database_url, scenario)

    def test_answers_are_deterministic(self, ordnung_database_url: str) -> None:
        async def scenario(shop: Shop) -> None:
            ctx, first = await self._answer(shop)
            again = await shop.engine.host.call("ordnung_tax", to=self.name, ctx=ctx)
            assert again == first

        self.in_shop(ordnung_database_url, scenario)

    def test_a_placed_order_adds_up(self, ordnung_database_url: str) -> None:
        async def scenario(shop: Shop) -> None:
            order = await shop.place(*self.lines)
            t = order.totals
            shipping_tax = order.shipping.tax if order.shipping else 0
            assert t.tax == sum(line.tax for line in order.lines) + shipping_tax
            assert all(line.tax >= 0 for line in order.lines)
            assert all(line.tax_rate for line in order.lines)
            expected = t.subtotal + t.discounts + t.shipping + (
                0 if order.prices_include_tax else t.tax)
            assert t.total == expected, t

        self.in_shop(ordnung_database_url, scenario)

    def test_an_unserved_address_is_refused_not_untaxed(self,
                                                         ordnung_database_url: str) -> None:
        if self.unserved_address is None:
            pytest.skip("no unserved_address given")
        unserved = self.unserved_address

        async def scenario(shop: Shop) -> None:
            _, answer = await self._answer(shop, unserved)
            assert answer is None, "answer None for a destination without rates"
            with pytest.raises(TaxUnavailable):
                await shop.place(*self.lines, address=unserved)

        self.in_shop(ordnung_database_url, scenario)


# --------------------------------------------------------------------------- loyalty


class LoyaltyConformance(Conformance):
    """A promotion or loyalty plugin (``ordnung_adjustments``): well-formed,
    deterministic answers; totals never below zero; what placement holds it gives back.

    ``carts`` are the carts tried (each a list of (sku, quantity)); ``codes`` are
    applied to each. Include carts where your plugin acts.
    """

    role = "loyalty"
    carts: ClassVar[Sequence[Sequence[tuple[str, int]]]] = (
        (("KIT-SHIRT", 1),),
        (("KIT-SHIRT", 4), ("KIT-MUG", 2)),
        (("KIT-POSTER", 5), ("KIT-HEAVY", 1)),
    )
    codes: ClassVar[Sequence[str]] = ()

    def test_answers_are_well_formed_and_deterministic(self,
                                                       ordnung_database_url: str) -> None:
        async def scenario(shop: Shop) -> None:
            for lines in self.carts:
                ctx = await shop.context(*lines, codes=self.codes)
                # as the pipeline calls the hook: the customer's lines, no gifts, no discounts
                ctx = msgspec.structs.replace(ctx, lines=[
                    msgspec.structs.replace(ln, discount=0, tax=0, tax_rate="0")
                    for ln in ctx.lines if not ln.gift])
                host = shop.engine.host
                first = await host.call("ordnung_adjustments", to=self.name, ctx=ctx)
                again = await host.call("ordnung_adjustments", to=self.name, ctx=ctx)
                assert first == again, f"different answers for the same cart {lines}"
                for answer in first or []:
                    if isinstance(answer, Discount):
                        assert answer.amount >= 0, f"a Discount reduces: {answer}"
                        assert answer.reason, f"say why: {answer}"
                        assert answer.line_id is None or answer.line_id in _ids(ctx.lines)
                    elif isinstance(answer, GiftLine):
                        assert answer.quantity > 0 and answer.sku and answer.reason, answer
                    else:
                        assert isinstance(answer, Note), f"unexpected answer {answer!r}"
                        assert answer.message

        self.in_shop(ordnung_database_url, scenario)

    def test_pricing_is_deterministic_and_never_negative(self,
                                                         ordnung_database_url: str) -> None:
        async def scenario(shop: Shop) -> None:
            for lines in self.carts:
                first = await shop.cart(*lines, codes=self.codes)
                second = await shop.cart(*lines, codes=self.codes)
                assert first.priced is not None and second.priced is not None
                assert first.priced.totals == second.priced.totals
                assert first.priced.adjustments == second.priced.adjustments
                mine = [s for s in first.priced.explanation if s.source == self.name]
                assert mine == [s for s in second.priced.explanation if s.source == self.name]
                totals = first.priced.totals
                assert totals.discounts <= 0 and totals.total >= 0, totals
                assert totals.subtotal + totals.discounts >= 0, totals
                for line in first.priced.lines:
                    assert line.line_total + line.discount >= 0, line
                    if line.gift:
                        assert line.unit_price == 0 and line.line_total == 0, line
                for adj in first.priced.adjustments:
                    assert adj.amount <= 0 and adj.reason, adj

        self.in_shop(ordnung_database_url, scenario)

    def test_placement_keeps_the_priced_adjustments(self, ordnung_database_url: str) -> None:
        async def scenario(shop: Shop) -> None:
            for lines in self.carts:
                cart = await shop.cart(*lines, codes=self.codes)
                order = await shop.place(*lines, codes=self.codes)
                assert cart.priced is not None
                priced = [(a.kind, a.amount, a.reason, a.code)
                          for a in cart.priced.adjustments if a.source == self.name]
                placed = [(a.kind, a.amount, a.reason, a.code)
                          for a in order.adjustments if a.source == self.name]
                assert placed == priced
                assert order.totals.total >= 0
                for line in order.lines:
                    assert sum(a.quantity for a in line.allocations) == line.quantity, (
                        f"line {line.id} ({line.sku}) is not fully reserved")
                # each cart on its own: give back what the order holds (stock, claims)
                await shop.engine.orders.cancel(order.id, reason="conformance")

        self.in_shop(ordnung_database_url, scenario)

    def test_cancelling_gives_back_what_placement_took(self, ordnung_database_url: str) -> None:
        async def scenario(shop: Shop) -> None:
            skus = sorted({p.variants[0].sku for p in self.products if p.variants})
            for lines in self.carts:
                before = await shop.available(*skus)
                order = await shop.place(*lines, codes=self.codes)
                await shop.engine.orders.cancel(order.id, reason="conformance")
                assert await shop.available(*skus) == before
                again = await shop.place(*lines, codes=self.codes)
                assert [(a.kind, a.amount) for a in again.adjustments] == [
                    (a.kind, a.amount) for a in order.adjustments], (
                    "after a cancellation the same cart must get the same adjustments")
                await shop.engine.orders.cancel(again.id, reason="conformance")

        self.in_shop(ordnung_database_url, scenario)
