"""`GET /invoices/{id}/pdf`: an invoice as a PDF, to its owner or an admin.

Bearer token as for /graphql. Anyone else, and any id that is not an invoice's, gets 404
(never 403): an id reveals nothing. With real Stripe the answer redirects to Stripe's own
PDF when it has one; the sandbox's PDF links lead nowhere, so there the gateway renders it.
"""

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from gateway.auth import TokenVerifier, require_principal
from gateway.settings import Settings
from schema.ids import from_global_id
from services import accounts, invoice_pdf
from services.errors import InvalidInput


def invoice_pdf_router(settings: Settings, verifier: TokenVerifier) -> APIRouter:
    router = APIRouter()

    @router.get("/invoices/{invoice_id}/pdf")
    async def invoice_as_pdf(invoice_id: str, request: Request) -> Response:
        principal = require_principal(verifier, request.headers.get("authorization"))
        row_id = _invoice_row_id(invoice_id)
        database = request.app.state.database
        owner_id = None
        if not principal.is_admin:
            account = await accounts.find_account(database, principal.user_id)
            owner_id = account.id if account is not None else 0
        async with database.read_session() as session:
            document = await invoice_pdf.find_document(
                session=session, invoice_id=row_id, owner_id=owner_id
            )
        if document is None:
            raise HTTPException(status_code=404, detail="Not Found")
        stripe_pdf = document.invoice.stripe_pdf_url
        if stripe_pdf and not settings.uses_sandbox:
            return RedirectResponse(stripe_pdf, status_code=302)
        body = invoice_pdf.render(
            document, seller=settings.invoice_seller, seller_tax_id=settings.invoice_seller_tax_id
        )
        filename = f"{document.invoice.number or document.invoice.stripe_invoice_id}.pdf"
        headers = {
            "Content-Disposition": f'inline; filename="{filename}"',
            "Cache-Control": "private, no-store",
        }
        return Response(body, media_type="application/pdf", headers=headers)

    return router


def _invoice_row_id(invoice_id: str) -> int:
    try:
        type_name, row_id = from_global_id(invoice_id)
    except InvalidInput as exc:
        raise HTTPException(status_code=404, detail="Not Found") from exc
    if type_name != "Invoice":
        raise HTTPException(status_code=404, detail="Not Found")
    return row_id
