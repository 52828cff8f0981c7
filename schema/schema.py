"""Builds the strawberry.Schema served at /graphql."""

from functools import partial

import strawberry
from graphql import print_schema
from strawberry.schema.config import StrawberryConfig

from resolvers.live import LiveUpdates
from resolvers.mutation import Mutation
from resolvers.query import Query
from schema.billing import Customer, PaymentMethod, Plan
from schema.common import UserError
from schema.extensions import MaskInternalErrors
from schema.limits import CostBudgets, QueryLimits
from schema.scalars import SCALAR_MAP


def build_schema() -> strawberry.Schema:
    """The schema with its guard rails; each schema (one per app) keeps its own cost budgets."""
    budgets = CostBudgets()
    return strawberry.Schema(
        query=Query,
        mutation=Mutation,
        subscription=LiveUpdates,
        types=[Plan, Customer, PaymentMethod, UserError],
        config=StrawberryConfig(scalar_map=SCALAR_MAP),
        extensions=[MaskInternalErrors, partial(QueryLimits, budgets=budgets)],
    )


def schema_sdl() -> str:
    return print_schema(build_schema()._schema)
