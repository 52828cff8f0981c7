"""Builds the strawberry.Schema served at /graphql."""

from functools import partial
from typing import Any

import strawberry
from graphql import GraphQLError, print_schema
from strawberry.extensions import ParserCache
from strawberry.schema.config import StrawberryConfig

from resolvers.live import LiveUpdates
from resolvers.mutation import Mutation
from resolvers.query import Query
from schema.billing import Customer, PaymentMethod, Plan
from schema.cache import CachedResponses
from schema.common import UserError
from schema.execution import PlainFieldsExecutionContext
from schema.extensions import MaskInternalErrors, OperationMetrics
from schema.limits import DocumentMemo, QueryLimits
from schema.scalars import SCALAR_MAP
from services.response_cache import ResponseCache

# Clients send a handful of distinct documents; parsing each once saves most of a request.
PARSED_DOCUMENTS = 256


class GatewaySchema(strawberry.Schema):
    """Strawberry's schema without its log line per error: the caller's errors (validation,
    coded domain errors) are answers, not incidents, and the unexpected ones are logged once,
    with the request id, by MaskInternalErrors."""

    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        return None


def build_schema(*, responses: ResponseCache | None = None) -> strawberry.Schema:
    """The schema with its guard rails. Each app passes its own response cache, which
    gateway/cached_queries.py shares; without one it caches nothing."""
    memo = DocumentMemo()
    return GatewaySchema(
        query=Query,
        mutation=Mutation,
        subscription=LiveUpdates,
        types=[Plan, Customer, PaymentMethod, UserError],
        config=StrawberryConfig(scalar_map=SCALAR_MAP),
        extensions=[
            OperationMetrics,
            MaskInternalErrors,
            partial(QueryLimits, memo=memo),
            partial(ParserCache, maxsize=PARSED_DOCUMENTS),
            partial(CachedResponses, cache=responses or ResponseCache(maxsize=0)),
        ],
        execution_context_class=PlainFieldsExecutionContext,
    )


def schema_sdl() -> str:
    return print_schema(build_schema()._schema)
