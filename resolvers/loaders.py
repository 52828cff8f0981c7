"""Per-request DataLoaders: each batch opens its own short session (sessions are not task-safe)."""

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiodataloader import DataLoader
from sqlalchemy import select
from sqlalchemy.orm import InstrumentedAttribute

from db.database import Database
from db.models import PaymentMethod

Key = TypeVar("Key", bound=Hashable)


def _rows_by(
    database: Database, entity: type[Any], column: InstrumentedAttribute[Any]
) -> Callable[[Sequence[Any]], Any]:
    async def load(keys: Sequence[Any]) -> list[Any]:
        async with database.session() as session:
            rows = (await session.scalars(select(entity).where(column.in_(keys)))).all()
        by_key = {getattr(row, column.key): row for row in rows}
        return [by_key.get(key) for key in keys]

    return load


@dataclass(frozen=True)
class Loaders:
    payment_method_by_stripe_id: DataLoader

    @classmethod
    def create(cls, database: Database) -> "Loaders":
        return cls(
            payment_method_by_stripe_id=DataLoader(
                _rows_by(database, PaymentMethod, PaymentMethod.stripe_payment_method_id)
            ),
        )
