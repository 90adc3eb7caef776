"""The GraphQL schema reference in Markdown (``docs/graphql.md``), generated from the schema.

Written from the same schema object as the SDL (``schema.graphql``), so the reference
cannot drift from the code: ``ordnung graphql-schema --markdown > docs/graphql.md``
regenerates it, and a test fails when the committed file differs. Every root field
(queries, mutations, subscriptions) with its arguments and description, then every
named type: objects, inputs, enums and scalars.
"""

from __future__ import annotations

from graphql import (
    GraphQLArgument,
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLUnionType,
    print_ast,
)
from graphql.utilities import ast_from_value

HEADER = """# GraphQL schema reference

Generated from the code by `ordnung graphql-schema --markdown > docs/graphql.md`; do not
edit by hand (a test fails when this file and the schema differ). The SDL is
`schema.graphql`; the README's GraphQL section describes the endpoint, auth, errors and
limits. One schema serves every caller at `/graphql`: what a field answers depends on the
key, cart token or customer session sent with it, as for the REST route it mirrors.
"""


def one_line(text: str | None) -> str:
    """A description for a table cell: one line, pipes escaped."""
    return " ".join((text or "").split()).replace("|", "\\|")


def default_of(argument: GraphQLArgument | GraphQLInputField) -> str:
    if argument.default_value is None or argument.default_value is NotImplemented:
        return ""
    node = ast_from_value(argument.default_value, argument.type)
    return f" = {print_ast(node)}" if node is not None else ""


def arguments(field: GraphQLField) -> str:
    """``(name: Type = default, ...)``, or nothing for a field without arguments."""
    listed = ", ".join(f"{arg_name}: {arg.type}{default_of(arg)}"
                       for arg_name, arg in field.args.items())
    return f"({listed})" if listed else ""


def signature(name: str, field: GraphQLField) -> str:
    return f"{name}{arguments(field)}: {field.type}"


def root_section(title: str, root: GraphQLObjectType | None) -> list[str]:
    if root is None:
        return []
    lines = [f"## {title}", ""]
    for name in sorted(root.fields):
        field = root.fields[name]
        lines += [f"### `{name}`", "", "```graphql", signature(name, field), "```", ""]
        if field.description:
            lines += [field.description.strip(), ""]
        if field.deprecation_reason:
            lines += [f"Deprecated: {field.deprecation_reason}", ""]
    return lines


def type_section(named: GraphQLNamedType) -> list[str]:
    lines = [f"### `{named.name}`", ""]
    kind = {GraphQLObjectType: "object", GraphQLInputObjectType: "input",
            GraphQLEnumType: "enum", GraphQLScalarType: "scalar",
            GraphQLUnionType: "union"}.get(type(named), "type")
    lines += [f"*{kind}*" + (f" — {one_line(named.description)}" if named.description else ""),
              ""]
    if isinstance(named, GraphQLObjectType):
        lines += ["| field | type | description |", "| --- | --- | --- |"]
        lines += [f"| `{name}{arguments(field)}` | `{field.type}` | "
                  f"{one_line(field.description)} |" for name, field in named.fields.items()]
        lines.append("")
    elif isinstance(named, GraphQLInputObjectType):
        lines += ["| field | type | description |", "| --- | --- | --- |"]
        lines += [f"| `{name}` | `{field.type}{default_of(field)}` | "
                  f"{one_line(field.description)} |" for name, field in named.fields.items()]
        lines.append("")
    elif isinstance(named, GraphQLEnumType):
        lines += [f"- `{name}`" + (f": {one_line(value.description)}" if value.description
                                   else "") for name, value in named.values.items()]
        lines.append("")
    elif isinstance(named, GraphQLUnionType):
        lines += ["One of: " + ", ".join(f"`{member.name}`" for member in named.types), ""]
    return lines


def markdown_reference(schema: GraphQLSchema) -> str:
    """The whole reference, ending in one newline."""
    lines = [HEADER]
    lines += root_section("Queries", schema.query_type)
    lines += root_section("Mutations", schema.mutation_type)
    lines += root_section("Subscriptions", schema.subscription_type)
    roots = {t.name for t in (schema.query_type, schema.mutation_type,
                              schema.subscription_type) if t is not None}
    types = [named for name, named in sorted(schema.type_map.items())
             if not name.startswith("__") and name not in roots
             and not (isinstance(named, GraphQLScalarType) and named.name in
                      {"String", "Int", "Float", "Boolean", "ID"})]
    lines += ["## Types", ""]
    for named in types:
        lines += type_section(named)
    return "\n".join(lines).rstrip("\n") + "\n"
