"""The hook specs own their conventions: one call follows them and checks every answer."""

from __future__ import annotations

import inspect
import re
from typing import Any

import msgspec
import pytest

from ordnung.core import hookimpl, hookspecs
from ordnung.core.dispatch import APPLIES, Dispatcher
from ordnung.core.domain.pricing import LineTax, ShippingQuote, TaxAnswer
from ordnung.core.errors import PluginError
from ordnung.core.hook_contracts import after_commit_hooks, answer_check, contracts, type_name
from ordnung.core.plugin_host import PluginHost
from tests.support import builtin_plugins, order_request, seed_shop


def spec_functions() -> dict[str, Any]:
    return {name: fn for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
            if name.startswith("ordnung_")}


def test_every_spec_declares_a_contract_that_pluggy_agrees_with() -> None:
    declared = contracts()
    assert set(declared) == set(spec_functions())
    host = PluginHost()
    for name, c in declared.items():
        assert c.convention in hookspecs.CONVENTIONS and c.phase in hookspecs.PHASES
        assert c.summary, f"{name} has no docstring"
        firstresult = getattr(host.pm.hook, name).spec.opts["firstresult"]
        assert firstresult == (c.convention != "collect"), name


def test_answer_types_come_from_the_return_annotations() -> None:
    c = contracts()
    assert c["ordnung_tax"].answer is TaxAnswer
    assert type_name(c["ordnung_adjustments"].answer) == "Sequence[Discount | GiftLine | Note]"
    assert type_name(c["ordnung_plugin_started"].answer) == "None"
    assert c["ordnung_authorize"].convention == "directed"


class Quotes:
    def __init__(self, answer: Any) -> None:
        self.answer = answer

    @hookimpl
    def ordnung_shipping_quotes(self, ctx: Any) -> Any:
        return self.answer


class Tax:
    def __init__(self, answer: Any) -> None:
        self.answer = answer

    @hookimpl
    async def ordnung_tax(self, ctx: Any) -> Any:
        return self.answer


class Pay:
    def __init__(self, name: str) -> None:
        self.tag = name

    @hookimpl
    def ordnung_void(self, request: Any) -> Any:
        from ordnung.core.domain.payments import GatewayResult
        return GatewayResult(outcome="approved", reference=self.tag)


async def test_a_wrong_typed_answer_is_a_plugin_error_naming_plugin_and_hook() -> None:
    host = PluginHost()
    host.register(Quotes(["parcel"]), name="broken_carrier")
    with pytest.raises(PluginError) as err:
        await host.call("ordnung_shipping_quotes", ctx=None)
    assert err.value.plugin == "broken_carrier"
    assert "ordnung_shipping_quotes" in err.value.detail
    assert err.value.extra["hook"] == "ordnung_shipping_quotes"

    host = PluginHost()
    host.register(Tax("19%"), name="broken_tax")
    with pytest.raises(PluginError, match="ordnung_tax must answer TaxAnswer") as err:
        await host.call("ordnung_tax", ctx=None)
    assert err.value.plugin == "broken_tax"


async def test_an_answer_in_another_shape_is_converted_and_a_right_one_kept() -> None:
    quotes = [ShippingQuote(service="std", name="Standard", price=495)]
    host = PluginHost()
    host.register(Quotes(quotes), name="carrier")
    host.register(Tax({"lines": [{"line_id": "L1", "rate": "0.19"}]}), name="tax")
    [(plugin, answer)] = await host.call("ordnung_shipping_quotes", ctx=None)
    assert plugin == "carrier" and answer is quotes  # no copy on the common path
    assert await host.call("ordnung_tax", ctx=None) == (
        "tax", TaxAnswer(lines=[LineTax(line_id="L1", rate="0.19")]))


def test_union_answers_accept_each_member_and_refuse_others() -> None:
    from ordnung.core.domain.pricing import Discount, Note
    check = answer_check(contracts()["ordnung_adjustments"].answer)
    answers = [Discount(amount=100, reason="x"), Note(message="hi")]
    assert check(answers) is answers
    with pytest.raises(msgspec.ValidationError, match=re.escape("Discount | GiftLine | Note")):
        check([ShippingQuote(service="s", name="n", price=1)])


async def test_first_result_stops_at_the_first_answer() -> None:
    host = PluginHost()
    first = TaxAnswer(lines=[])
    host.register(Tax(TaxAnswer(lines=[], note="never asked")), name="later")
    host.register(Tax(None), name="not_mine")
    host.register(Tax(first), name="first")  # registered last: called first
    assert await host.call("ordnung_tax", ctx=None) == ("first", first)


async def test_a_directed_hook_goes_to_the_named_plugin_only() -> None:
    host = PluginHost()
    host.register(Pay("a"), name="gateway_a")
    host.register(Pay("b"), name="gateway_b")
    assert (await host.call("ordnung_void", to="gateway_a", request=None)).reference == "a"
    assert (await host.call("ordnung_void", to="gateway_b", request=None)).reference == "b"
    assert await host.call("ordnung_void", to="nobody", request=None) is None
    with pytest.raises(TypeError, match="directed"):
        await host.call("ordnung_void", request=None)


def test_the_plan_is_computed_once_per_hook_until_plugins_change() -> None:
    host = PluginHost()
    plan = host.plan("ordnung_tax")
    assert host.plan("ordnung_tax") is plan and not plan.impls
    host.register(Tax(None), name="tax")
    assert host.plan("ordnung_tax") is not plan
    assert host.implementers("ordnung_tax") == ["tax"]


def test_the_after_commit_set_is_what_the_specs_declare() -> None:
    declared = [c.name for c in contracts().values() if c.phase == "after-commit"]
    assert tuple(declared) == after_commit_hooks()
    assert set(declared) == {"ordnung_after_transition", "ordnung_on_event",
                             "ordnung_availability_changed"}
    dispatcher = Dispatcher(PluginHost(), None, None, None, None)  # type: ignore[arg-type]
    assert list(dispatcher.arguments) == declared == list(APPLIES)


async def test_an_engine_refuses_a_wrong_answer_at_placement(make_engine: Any) -> None:
    engine = await make_engine(plugins=[*builtin_plugins(), (Quotes([{"service": "x"}]), "bad")])
    await seed_shop(engine)
    with pytest.raises(PluginError) as err:
        await engine.orders.place(order_request(("SHIRT-M", 1)))
    assert err.value.plugin == "bad" and "ordnung_shipping_quotes" in err.value.detail
