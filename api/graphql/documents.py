"""Each GraphQL document is parsed and validated once per text, not once per request.

A storefront sends the same few documents over and over. strawberry's ``ParserCache``
and ``ValidationCache`` key their caches by the parsed document, which graphql-core
hashes node by node on every request; here the key is the text the caller sent, a
single hash of one string. The parse options (the token limit) and the validation
rules (depth, aliases, introspection) are fixed per schema, so one cache per schema
needs nothing else in its key. A text that does not parse is not kept.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator

from graphql import DocumentNode, GraphQLError, parse
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document
from strawberry.types.execution import ParseOptions

#: documents kept per schema (the least recently used goes first)
MAX_DOCUMENTS = 128


class _Known:
    __slots__ = ("document", "errors")

    def __init__(self, document: DocumentNode) -> None:
        self.document = document
        #: None until validated
        self.errors: list[GraphQLError] | None = None


class DocumentCache:
    """Parsed documents and their validation errors by text, bounded (LRU)."""

    def __init__(self, maxsize: int = MAX_DOCUMENTS) -> None:
        self.maxsize = maxsize
        self._known: OrderedDict[str, _Known] = OrderedDict()

    def document(self, text: str, parse_options: ParseOptions) -> DocumentNode:
        known = self._known.get(text)
        if known is not None:
            self._known.move_to_end(text)
            return known.document
        document = parse(text, **parse_options)  # a syntax error propagates, unkept
        self._known[text] = _Known(document)
        if len(self._known) > self.maxsize:
            self._known.popitem(last=False)
        return document

    def errors(self, text: str, validate: Callable[[], list[GraphQLError]]) -> list[GraphQLError]:
        known = self._known.get(text)
        if known is None:  # evicted between parsing and validating: validate, keep nothing
            return validate()
        if known.errors is None:
            known.errors = validate()
        return known.errors


class KnownDocuments(SchemaExtension):
    """Looks the request's text up in its schema's ``DocumentCache`` (one instance per
    request: strawberry gives each its own execution context)."""

    def __init__(self, cache: DocumentCache) -> None:
        super().__init__()
        self.cache = cache

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.query and context.graphql_document is None:
            context.graphql_document = self.cache.document(context.query,
                                                           context.parse_options)
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if context.query and document is not None and context.validation_rules:
            context.pre_execution_errors = self.cache.errors(
                context.query, lambda: validate_document(
                    context.schema._schema, document, context.validation_rules))
        yield
