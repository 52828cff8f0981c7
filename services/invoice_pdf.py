"""An invoice as a PDF: Stripe's own when it has one, else one rendered here.

The rendered document holds the seller, the customer, the invoice number, its dates, its
lines, tax, total and whether it is paid. It uses the PDF core fonts (no font files to
ship), which cover Latin-1: amounts are written with the currency code ("12.50 EUR"), and
any other character of a name is shown as "?".
"""

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fpdf import FPDF
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Account, Invoice, InvoiceLine, InvoiceStatus
from services.money import decimal_string

# The seller's lines: newlines, or a literal "\n" as an environment variable carries them.
SELLER_LINE_BREAK = re.compile(r"\n|\\n")


@dataclass(frozen=True)
class InvoiceDocument:
    invoice: Any
    lines: list[Any]
    customer: Any


async def find_document(
    *, session: AsyncSession, invoice_id: int, owner_id: int | None
) -> InvoiceDocument | None:
    """The invoice with its lines and customer; None when it does not exist or, with an
    `owner_id` (a customer, not an admin), belongs to someone else."""
    invoice = await session.get(Invoice, invoice_id)
    if invoice is None or (owner_id is not None and invoice.account_id != owner_id):
        return None
    lines = await session.scalars(
        select(InvoiceLine)
        .where(InvoiceLine.invoice_id == invoice.id)
        .order_by(InvoiceLine.position)
    )
    customer = await session.get(Account, invoice.account_id)
    return InvoiceDocument(invoice, list(lines), customer)


def render(document: InvoiceDocument, *, seller: str) -> bytes:
    invoice, customer = document.invoice, document.customer
    pdf = FPDF(format="A4")
    pdf.set_title(f"Invoice {_number(invoice)}")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 18)
    pdf.cell(0, 10, _latin1(f"Invoice {_number(invoice)}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=10)
    paid = "PAID" if invoice.status is InvoiceStatus.PAID else invoice.status.value.upper()
    pdf.cell(0, 6, f"Status: {paid}", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    _block(pdf, "From", SELLER_LINE_BREAK.split(seller))
    _block(pdf, "Bill to", [customer.name or "", customer.email or "", customer.user_id])
    _block(
        pdf,
        "Dates",
        [
            f"Issued: {_date(invoice.stripe_created_at)}",
            f"Period: {_date(invoice.period_start)} - {_date(invoice.period_end)}",
            f"Due: {_date(invoice.due_date)}",
            f"Paid: {_date(invoice.paid_at)}",
        ],
    )
    _lines_table(pdf, document.lines, invoice.currency)
    _totals(pdf, invoice)
    return bytes(pdf.output())


def _block(pdf: FPDF, title: str, rows: list[str]) -> None:
    pdf.set_font("Helvetica", "B", 10)
    pdf.cell(0, 6, title, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=10)
    for row in rows:
        if row:
            pdf.cell(0, 5, _latin1(row), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)


def _lines_table(pdf: FPDF, lines: list[Any], currency: str) -> None:
    with pdf.table(
        col_widths=(80, 15, 55, 40), text_align=("LEFT", "RIGHT", "LEFT", "RIGHT")
    ) as table:
        table.row(["Description", "Qty", "Period", "Amount"])
        for line in lines:
            period = f"{_date(line.period_start)} - {_date(line.period_end)}"
            table.row(
                [
                    _latin1(line.description or ""),
                    str(line.quantity) if line.quantity is not None else "",
                    period if line.period_start else "",
                    _amount(line.amount, currency),
                ]
            )


def _totals(pdf: FPDF, invoice: Any) -> None:
    pdf.ln(4)
    rows = [("Subtotal", invoice.subtotal)]
    if invoice.tax is not None:
        rows.append(("Tax", invoice.tax))
    rows += [
        ("Total", invoice.total),
        ("Paid", invoice.amount_paid),
        ("Due", invoice.amount_remaining),
    ]
    for label, amount in rows:
        pdf.set_font("Helvetica", "B" if label == "Total" else "", 10)
        pdf.cell(150, 6, label, align="R")
        pdf.cell(40, 6, _amount(amount, invoice.currency), align="R", new_x="LMARGIN", new_y="NEXT")


def _number(invoice: Any) -> str:
    return invoice.number or invoice.stripe_invoice_id


def _amount(amount: int, currency: str) -> str:
    return f"{decimal_string(amount, currency)} {currency.upper()}"


def _date(value: datetime | None) -> str:
    return value.date().isoformat() if value is not None else "-"


def _latin1(text: str) -> str:
    return text.encode("latin-1", "replace").decode("latin-1")
