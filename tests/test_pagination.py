"""Keyset pages read through the driver (services/pagination.py): newest first, counted in
the same statement, the same rows and counts after a cursor, each parent's own page, and a
refused cursor or size; sealed columns come back opened."""

import pytest

from db.database import Database
from db.models import Account, Invoice, InvoiceStatus
from services.errors import InvalidInput
from services.pagination import Listing, paginate, paginate_each
from tests import factories


async def two_customers(db: Database) -> tuple[Account, Account]:
    plan = await factories.add(db, factories.plan())
    ada = await factories.customer_with_billing(
        db, user_id="ada", plans=[plan], subscriptions=1, invoices=5, lines=1, cards=0
    )
    bob = await factories.customer_with_billing(
        db, user_id="bob", plans=[plan], subscriptions=1, invoices=2, lines=1, cards=0
    )
    return ada, bob


def invoices_of(**filters: object) -> Listing:
    return Listing.matching(Invoice.__table__, "stripe_created_at", **filters)


async def test_pages_walk_one_accounts_rows_newest_first_with_their_count(db: Database):
    ada, _ = await two_customers(db)
    listing = invoices_of(account_id=ada.id)

    pages, after = [], None
    while True:
        page = await paginate(db, listing, first=2, after=after)
        pages.append(page)
        if not page.has_next_page:
            break
        after = page.cursors[-1]

    numbers = [row.number for page in pages for row in page.rows]
    assert numbers == [f"INV-ada-{n:04d}" for n in range(5)]
    assert [page.total_count for page in pages] == [5, 5, 5]
    assert [page.has_previous_page for page in pages] == [False, True, True]
    assert all(row.status is InvoiceStatus.PAID for page in pages for row in page.rows)

    beyond = await paginate(db, listing, first=2, after=pages[-1].cursors[-1])
    assert beyond.rows == [] and beyond.total_count == 5 and not beyond.has_next_page


async def test_filters_by_value_and_by_list_and_none_filters_nothing(db: Database):
    ada, bob = await two_customers(db)

    assert (await paginate(db, invoices_of(), first=10, after=None)).total_count == 7
    both = invoices_of(account_id=[ada.id, bob.id], status=[InvoiceStatus.PAID])
    assert (await paginate(db, both, first=10, after=None)).total_count == 7
    none_open = invoices_of(account_id=ada.id, status=[InvoiceStatus.OPEN])
    empty = await paginate(db, none_open, first=10, after=None)
    assert empty.rows == [] and empty.total_count == 0
    assert (await paginate(db, invoices_of(account_id=None), first=1, after=None)).total_count == 7


async def test_each_parent_gets_its_own_page_and_count_in_one_statement(db: Database):
    ada, bob = await two_customers(db)
    nobody = 10**9

    pages = await paginate_each(
        db, invoices_of(), parent="account_id", parent_ids=[ada.id, bob.id, nobody], first=3,
        after=None,
    )  # fmt: skip
    assert [row.number for row in pages[ada.id].rows] == [f"INV-ada-{n:04d}" for n in range(3)]
    assert pages[ada.id].total_count == 5 and pages[ada.id].has_next_page
    assert [row.number for row in pages[bob.id].rows] == ["INV-bob-0000", "INV-bob-0001"]
    assert pages[bob.id].total_count == 2 and not pages[bob.id].has_next_page
    assert pages[nobody].rows == [] and pages[nobody].total_count == 0

    after = pages[ada.id].cursors[-1]
    later = await paginate_each(
        db, invoices_of(), parent="account_id", parent_ids=[ada.id], first=3, after=after
    )
    assert [row.number for row in later[ada.id].rows] == ["INV-ada-0003", "INV-ada-0004"]
    assert later[ada.id].total_count == 5 and later[ada.id].has_previous_page


async def test_sealed_columns_are_opened_and_a_raw_condition_is_kept(db: Database):
    ada, _ = await two_customers(db)
    listing = Listing(Account.__table__, "created_at", "user_id = $1", ("ada",))

    (row,) = (await paginate(db, listing, first=5, after=None)).rows
    assert row.id == ada.id and row.email == "ada@example.com"


@pytest.mark.parametrize("first, after", [(101, None), (-1, None), (2, "not-a-cursor")])
async def test_a_size_or_cursor_outside_the_rules_is_refused(db: Database, first, after):
    with pytest.raises(InvalidInput):
        await paginate(db, invoices_of(), first=first, after=after)
