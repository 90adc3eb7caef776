"""schemathesis checks for the GraphQL fuzzing (loaded through ``SCHEMATHESIS_HOOKS``).

schemathesis's own ``not_a_server_error`` for GraphQL counts every error that has a
``path`` and no Apollo-style ``code`` as a server failure, so an engine's 404 or 422
(an unknown order, a vetoed transition), which is the right answer to fuzzed input,
would fail the run. ordnung marks every error with its REST status in
``extensions.status`` (see ``api/graphql/schema.py``): these checks fail on what is
really a server failure instead — a 5xx HTTP status, an error whose status is 5xx or
whose type is ``internal``, and a Python traceback anywhere in the answer.
"""

from __future__ import annotations

import json
from typing import Any

import graphql
import schemathesis
from hypothesis import strategies as st


def json_node(value: Any) -> graphql.ValueNode:
    """A GraphQL literal for a JSON value (the ``JSON`` scalar has no built-in strategy)."""
    if isinstance(value, dict):
        return graphql.ObjectValueNode(fields=tuple(
            graphql.ObjectFieldNode(name=graphql.NameNode(value=key), value=json_node(item))
            for key, item in value.items()))
    if isinstance(value, list):
        return graphql.ListValueNode(values=tuple(json_node(item) for item in value))
    if isinstance(value, bool):
        return graphql.BooleanValueNode(value=value)
    if isinstance(value, int):
        return graphql.IntValueNode(value=str(value))
    if value is None:
        return graphql.NullValueNode()
    return graphql.StringValueNode(value=str(value))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**31, 2**31 - 1) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True), inner, max_size=3),
    max_leaves=8)
schemathesis.graphql.scalar("JSON", JSON_VALUES.map(json_node))

TRACEBACK_MARKERS = ("Traceback (most recent call last)", 'File "/')


def errors_of(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, dict) or not isinstance(body.get("errors"), list):
        return []
    return [error for error in body["errors"] if isinstance(error, dict)]


@schemathesis.check
def no_server_failure(ctx: Any, response: Any, case: Any) -> bool | None:
    """No 5xx answer, and no GraphQL error that would be a 5xx in REST."""
    if response.status_code >= 500:
        raise AssertionError(f"HTTP {response.status_code}: {response.text[:500]}")
    try:
        body = json.loads(response.content)
    except ValueError as exc:
        raise AssertionError(f"the answer is not JSON: {response.text[:500]}") from exc
    for error in errors_of(body):
        extensions = error.get("extensions") or {}
        status = extensions.get("status")
        kind = str(extensions.get("type", ""))
        if (isinstance(status, int) and status >= 500) or kind.endswith("/internal"):
            raise AssertionError(f"server failure: {json.dumps(error)[:500]}")
    return None


@schemathesis.check
def no_python_traceback(ctx: Any, response: Any, case: Any) -> bool | None:
    """No Python traceback or source path leaks into an answer."""
    text = response.text
    for marker in TRACEBACK_MARKERS:
        if marker in text:
            raise AssertionError(f"a Python traceback in the answer: {text[:500]}")
    return None
