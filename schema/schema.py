"""Builds the strawberry.Schema served at /graphql."""

import strawberry
from graphql import print_schema
from strawberry.schema.config import StrawberryConfig

from resolvers.mutation import Mutation
from resolvers.query import Query
from schema.billing import Customer, PaymentMethod, Plan
from schema.common import UserError
from schema.extensions import MaskInternalErrors
from schema.scalars import SCALAR_MAP


def build_schema() -> strawberry.Schema:
    return strawberry.Schema(
        query=Query,
        mutation=Mutation,
        types=[Plan, Customer, PaymentMethod, UserError],
        config=StrawberryConfig(scalar_map=SCALAR_MAP),
        extensions=[MaskInternalErrors],
    )


def schema_sdl() -> str:
    return print_schema(build_schema()._schema)
