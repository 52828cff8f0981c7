"""GET /invoices/{id}/pdf: the invoice as a PDF to its owner or an admin, 404 to anyone else."""

import io
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr
from pypdf import PdfReader
from sqlalchemy import update

from db.database import Database
from db.models import Invoice
from gateway.app import create_app
from gateway.settings import Settings
from schema.ids import to_global_id
from tests import factories

STRIPE_PDF = "https://pay.stripe.com/invoice/acct_1/test_abc/pdf"


async def an_invoice(db: Database, user_id: str) -> Invoice:
    """A paid invoice of $20.00 (two $10.00 lines) with $1.60 tax, total $21.60."""
    plan = await factories.add(db, factories.plan())
    account = await factories.customer_with_billing(
        db, user_id=user_id, plans=[plan], subscriptions=1, invoices=1, lines=2, cards=1
    )
    async with db.session() as session, session.begin():
        invoice = await session.scalar(
            update(Invoice)
            .where(Invoice.account_id == account.id)
            .values(tax=160, total=2160, amount_due=2160, amount_paid=2160)
            .returning(Invoice)
        )
    assert invoice is not None
    return invoice


def pdf_url(invoice: Invoice) -> str:
    return f"/invoices/{to_global_id('Invoice', invoice.id)}/pdf"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def text_of(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


async def test_the_owner_gets_a_pdf_with_the_number_and_total(client, db: Database, token_for):
    invoice = await an_invoice(db, "alice")

    response = await client.get(pdf_url(invoice), headers=bearer(token_for("alice")))

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pdf"
    text = text_of(response.content)
    assert invoice.number is not None and invoice.number in text
    assert "21.60 USD" in text  # the total
    assert "1.60 USD" in text  # the tax
    assert "Seat 1" in text and "Seat 2" in text  # the lines
    assert "PAID" in text
    assert "alice@example.com" in text
    assert "billing-gateway" in text  # the seller (INVOICE_SELLER)


async def test_an_admin_gets_anyones_invoice(client, db: Database, token_for):
    invoice = await an_invoice(db, "alice")
    response = await client.get(pdf_url(invoice), headers=bearer(token_for("ops", admin=True)))
    assert response.status_code == 200
    assert invoice.number in text_of(response.content)


async def test_another_customer_and_unknown_ids_get_404(client, db: Database, token_for):
    invoice = await an_invoice(db, "alice")
    await an_invoice(db, "mallory")
    mallory = bearer(token_for("mallory"))

    assert (await client.get(pdf_url(invoice), headers=mallory)).status_code == 404
    # A caller never seen before, an id of no invoice, one of another type, and no id at all
    assert (await client.get(pdf_url(invoice), headers=bearer(token_for("eve")))).status_code == 404
    unknown = f"/invoices/{to_global_id('Invoice', invoice.id + 1000)}/pdf"
    assert (await client.get(unknown, headers=mallory)).status_code == 404
    customer = f"/invoices/{to_global_id('Customer', 1)}/pdf"
    assert (await client.get(customer, headers=mallory)).status_code == 404
    assert (await client.get("/invoices/not-an-id/pdf", headers=mallory)).status_code == 404


async def test_without_a_valid_token_the_answer_is_401(client, db: Database):
    invoice = await an_invoice(db, "alice")
    assert (await client.get(pdf_url(invoice))).status_code == 401
    bad = bearer("not.a.token")
    assert (await client.get(pdf_url(invoice), headers=bad)).status_code == 401


@pytest.fixture
async def live_stripe_client(settings: Settings, db: Database) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway configured for real Stripe (it is never called in these tests)."""
    live = settings.model_copy(update={"stripe_api_key": SecretStr("sk_test_never_used")})
    transport = httpx.ASGITransport(app=create_app(live, database=db))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as http:
        yield http


async def test_with_real_stripe_the_owner_is_sent_to_stripes_own_pdf(
    live_stripe_client, db: Database, token_for
):
    invoice = await an_invoice(db, "alice")
    async with db.session() as session, session.begin():
        await session.execute(
            update(Invoice).where(Invoice.id == invoice.id).values(stripe_pdf_url=STRIPE_PDF)
        )
    owner, other = bearer(token_for("alice")), bearer(token_for("mallory"))

    response = await live_stripe_client.get(pdf_url(invoice), headers=owner)
    assert response.status_code == 302
    assert response.headers["location"] == STRIPE_PDF
    assert (await live_stripe_client.get(pdf_url(invoice), headers=other)).status_code == 404
