"""An invoice as a PDF: Stripe's own when it has one, else one rendered here.

The rendered document holds the seller, the customer, the invoice number, its dates, its
lines, discounts, taxes, total and whether it is paid. An invoice that charges Australian GST
is a tax invoice as the ATO requires: it says so, and shows the seller's ABN, the GST, and
the buyer's identity (name, address and ABN, all printed when known; the ATO asks for them
from AUD 1,000). It uses the PDF core fonts (no font files to
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
# How tax id types are labelled on a document.
TAX_ID_LABELS = {"au_abn": "ABN", "nz_gst": "GST", "gb_vat": "VAT", "eu_vat": "VAT"}


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


def is_australian_tax_invoice(invoice: Any) -> bool:
    return any(tax.get("country") == "AU" and tax["amount"] > 0 for tax in invoice.taxes)


def render(document: InvoiceDocument, *, seller: str, seller_tax_id: str | None = None) -> bytes:
    invoice, customer = document.invoice, document.customer
    title = "Tax invoice" if is_australian_tax_invoice(invoice) else "Invoice"
    pdf = FPDF(format="A4")
    pdf.set_title(f"{title} {_number(invoice)}")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 18)
    pdf.cell(0, 10, _latin1(f"{title} {_number(invoice)}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=10)
    paid = "PAID" if invoice.status is InvoiceStatus.PAID else invoice.status.value.upper()
    pdf.cell(0, 6, f"Status: {paid}", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    seller_lines = SELLER_LINE_BREAK.split(seller)
    if seller_tax_id:
        label = "ABN" if title == "Tax invoice" else "Tax ID"
        seller_lines.append(f"{label} {seller_tax_id}")
    _block(pdf, "From", seller_lines)
    _block(pdf, "Bill to", _buyer(invoice, customer))
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


def _buyer(invoice: Any, customer: Any) -> list[str]:
    address = invoice.customer_address or customer.address or {}
    place = " ".join(
        part
        for part in (address.get("city"), address.get("state"), address.get("postal_code"))
        if part
    )
    tax_ids = [
        f"{TAX_ID_LABELS.get(entry['type'], 'Tax ID')} {entry['value']}"
        for entry in invoice.customer_tax_ids or []
    ]
    return [
        customer.name or "",
        customer.email or "",
        customer.user_id,
        address.get("line1") or "",
        address.get("line2") or "",
        place,
        address.get("country") or "",
        *tax_ids,
    ]


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
    for discount in invoice.discounts:
        rows.append((_latin1(f"Discount: {_discount_name(discount)}"), -discount["amount"]))
    for tax in invoice.taxes:
        rows.append((_tax_label(tax), tax["amount"]))
    if invoice.tax is not None and not invoice.taxes:
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


def _discount_name(discount: dict[str, Any]) -> str:
    return discount.get("promotion_code") or discount.get("name") or discount["coupon_id"]


def _tax_label(tax: dict[str, Any]) -> str:
    percentage = tax.get("percentage")
    rate = f" {percentage:g}%" if percentage is not None else ""
    included = " (included)" if tax.get("inclusive") else ""
    return _latin1(f"{tax['name']}{rate}{included}")


def _number(invoice: Any) -> str:
    return invoice.number or invoice.stripe_invoice_id


def _amount(amount: int, currency: str) -> str:
    return f"{decimal_string(amount, currency)} {currency.upper()}"


def _date(value: datetime | None) -> str:
    return value.date().isoformat() if value is not None else "-"


def _latin1(text: str) -> str:
    return text.encode("latin-1", "replace").decode("latin-1")
