"""Staff see the plugin reactions that failed after their change committed, and retry one.

Found: a failed reaction (a CRM sync, a confirmation e-mail) was recorded and retried
with backoff in the background, but nothing in the admin API showed it or its error,
and nothing could retry it at once after the cause was fixed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ordnung.core import hookimpl
from ordnung.core.domain.events import Event
from tests.api_support import Api, api_client, bearer, expect, expect_problem, held, order_body
from tests.support import builtin_plugins


class FlakyCrm:
    """Pushes every placed order to a CRM that is down until ``up`` is set."""

    def __init__(self) -> None:
        self.up = False
        self.pushed: list[str] = []

    @hookimpl
    def ordnung_on_event(self, event: Event) -> None:
        if event.kind != "order.placed":
            return
        if not self.up:
            raise ConnectionError("crm.example unreachable")
        assert event.order_id is not None
        self.pushed.append(event.order_id)


@pytest.fixture
async def crm_api(database_url: str) -> AsyncIterator[tuple[Api, FlakyCrm]]:
    crm = FlakyCrm()
    async with held(api_client(database_url, plugins=[*builtin_plugins(), (crm, "crm")])) as api:
        yield api, crm


async def test_failed_reactions_are_listed_and_retried_on_request(
        crm_api: tuple[Api, FlakyCrm]) -> None:
    api, crm = crm_api
    order = await api.place_order(api.admin, order_body(("MUG", 1)))  # the order stands

    page = expect(await api.client.get("/admin/reactions", headers=api.admin), 200)
    [failure] = page["items"]
    assert (failure["plugin"], failure["hook"]) == ("crm", "ordnung_on_event")
    assert failure["event_kind"] == "order.placed" and failure["order_id"] == order["id"]
    assert "crm.example unreachable" in failure["last_error"]
    assert failure["attempts"] == 1 and failure["resolved_at"] is None
    assert page["next"] is None

    # still down: the retry fails again, says so, and counts the attempt
    again = expect(await api.client.post(f"/admin/reactions/{failure['id']}/retry",
                                         headers=api.admin), 200)
    assert again["attempts"] == 2 and again["resolved_at"] is None
    assert crm.pushed == []

    crm.up = True
    done = expect(await api.client.post(f"/admin/reactions/{failure['id']}/retry",
                                        headers=api.admin), 200)
    assert done["resolved_at"] is not None
    assert crm.pushed == [order["id"]]
    assert expect(await api.client.get("/admin/reactions", headers=api.admin),
                  200)["items"] == []
    resolved = expect(await api.client.get("/admin/reactions", params={"status": "resolved"},
                                           headers=api.admin), 200)
    assert [r["id"] for r in resolved["items"]] == [failure["id"]]
    # a retry of a resolved reaction runs nothing twice
    expect(await api.client.post(f"/admin/reactions/{failure['id']}/retry",
                                 headers=api.admin), 200)
    assert crm.pushed == [order["id"]]


async def test_reactions_need_the_plugins_scope_and_a_real_cursor(
        crm_api: tuple[Api, FlakyCrm]) -> None:
    api, _ = crm_api
    orders_only = await api.issue_key("admin", scopes=["orders"])
    expect_problem(await api.client.get("/admin/reactions",
                                        headers=bearer(orders_only["secret"])),
                   403, "forbidden")
    expect_problem(await api.client.get("/admin/reactions", params={"after": "nonsense"},
                                        headers=api.admin), 422, "validation")
    expect_problem(await api.client.post("/admin/reactions/rf_nope/retry", headers=api.admin),
                   404, "not-found")


