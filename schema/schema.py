"""Builds the strawberry.Schema served at /graphql."""

from functools import partial
from typing import Any

import strawberry
from graphql import print_schema
from strawberry.extensions import ParserCache
from strawberry.schema.config import StrawberryConfig

from resolvers.live import LiveUpdates
from resolvers.mutation import Mutation
from resolvers.query import Query
from schema.billing import Customer, PaymentMethod, Plan
from schema.cache import CachedResponses
from schema.common import UserError
from schema.execution import FastLeafExecutionContext
from schema.extensions import MaskInternalErrors, OperationMetrics
from schema.limits import CostBudgets, DocumentMemo, QueryLimits
from schema.scalars import SCALAR_MAP
from services.response_cache import ResponseCache

# Clients send a handful of distinct documents; parsing each once saves most of a request.
PARSED_DOCUMENTS = 256


def build_schema(*, response_cache_size: int = 0) -> strawberry.Schema:
    """The schema with its guard rails; each schema (one per app) keeps its own cost budgets."""
    budgets, memo = CostBudgets(), DocumentMemo()
    responses = ResponseCache(maxsize=response_cache_size)
    cacheable_documents: dict[tuple[Any, ...], bool] = {}
    return strawberry.Schema(
        query=Query,
        mutation=Mutation,
        subscription=LiveUpdates,
        types=[Plan, Customer, PaymentMethod, UserError],
        config=StrawberryConfig(scalar_map=SCALAR_MAP),
        extensions=[
            OperationMetrics,
            MaskInternalErrors,
            partial(QueryLimits, budgets=budgets, memo=memo),
            partial(ParserCache, maxsize=PARSED_DOCUMENTS),
            partial(CachedResponses, cache=responses, cacheable=cacheable_documents),
        ],
        execution_context_class=FastLeafExecutionContext,
    )


def schema_sdl() -> str:
    return print_schema(build_schema()._schema)
