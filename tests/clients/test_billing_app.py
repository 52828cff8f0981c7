"""The reference billing app (web/, served at /app) in Debian's Chromium against `billing-gateway
serve` on embedded defaults, as a customer and an admin use it: the sandbox's Stripe.js
stand-in picks the test card and answers 3-D Secure. Each step leaves a screenshot under
.billing/screenshots/<test>/."""

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, expect

from tests.clients.support import PATIENCE_SECONDS, chromium, new_user
from tests.served import REPO_ROOT, ServedGateway

SCREENSHOTS = REPO_ROOT / ".billing" / "screenshots"
PATIENCE_MS = PATIENCE_SECONDS * 1000
DECLINED_CARD, THREE_D_SECURE_CARD = "pm_card_chargeDeclined", "pm_card_authenticationRequired"
CREATE_PAYMENT = """
mutation ($input: CreatePaymentInput!) {
  createPayment(input: $input) { transaction { status } userErrors { code message } }
}
"""
MRR = "{ admin { metrics { mrr { amount currency decimal } } } }"

expect.set_options(timeout=PATIENCE_MS)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


class Journey:
    """One browser context on the app, with numbered screenshots of its steps."""

    def __init__(self, page: Page, folder: Path) -> None:
        self.page, self.folder, self.steps = page, folder, 0

    async def snap(self, step: str) -> None:
        self.steps += 1
        await self.page.screenshot(
            path=self.folder / f"{self.steps:02d}-{step}.png", full_page=True
        )

    async def sign_in(self, user: str, *, admin: bool = False) -> None:
        await self.page.get_by_label("User name").fill(user)
        if admin:
            await self.page.get_by_label("Billing admin").check()
        await self.snap("sign-in")
        await self.page.get_by_role("button", name="Sign in").click()
        await expect(self.page.get_by_role("status", name="Live updates")).to_have_text("Live")

    async def subscribe(self, plan: str, card: str | None = None) -> None:
        await expect(self.page.get_by_label("Test card")).to_be_visible()
        if card:
            await self.page.get_by_label("Test card").select_option(card)
        await self.page.get_by_role("button", name=f"Subscribe to {plan}").click()


@pytest_asyncio.fixture
async def journey(
    browser: Browser, gateway: ServedGateway, request: pytest.FixtureRequest
) -> AsyncIterator[Journey]:
    folder = SCREENSHOTS / request.node.name
    folder.mkdir(parents=True, exist_ok=True)
    locale = getattr(request, "param", "en-US")
    context = await browser.new_context(locale=locale, accept_downloads=True)
    page = await context.new_page()
    await page.goto(f"{gateway.base_url}/app/")
    try:
        yield Journey(page, folder)
    finally:
        await context.close()


async def test_a_good_card_subscribes_and_the_billing_page_shows_it_all(journey: Journey):
    page = journey.page
    await journey.sign_in(new_user("good"))
    await expect(page.get_by_label("Pro").locator(".price")).to_have_text("$29.00 / month")
    await journey.subscribe("Pro")

    subscription = page.get_by_label("Current subscription")
    await expect(subscription.get_by_label("Status")).to_have_text("ACTIVE")
    await expect(page.get_by_label("Access")).to_have_text("ACTIVE")
    invoices = page.get_by_role("table", name="Invoices")
    await expect(invoices.get_by_role("row").nth(1)).to_contain_text("PAID")
    await expect(invoices.get_by_role("row").nth(1)).to_contain_text("$29.00")
    await expect(page.get_by_role("table", name="Payments")).to_contain_text("SUCCEEDED")
    await expect(page.get_by_label("Credit balance")).to_have_text("1,000")
    await expect(page.get_by_role("table", name="Credit ledger")).to_contain_text("GRANT")
    await journey.snap("subscribed")

    async with page.expect_download() as download_info:
        await invoices.get_by_role("button", name="Download PDF").first.click()
    download = await download_info.value
    assert download.suggested_filename.endswith(".pdf")
    assert (await download.path()).read_bytes().startswith(b"%PDF-")


async def test_cancel_at_period_end_then_resume(journey: Journey):
    page = journey.page
    await journey.sign_in(new_user("canceler"))
    await journey.subscribe("Starter")
    subscription = page.get_by_label("Current subscription")
    await expect(subscription).to_contain_text("Renews on")

    await subscription.get_by_role("button", name="Cancel at period end").click()
    await expect(subscription).to_contain_text("Cancels on")
    await expect(page.get_by_label("Access")).to_have_text("CANCELING")
    await journey.snap("canceling")

    await subscription.get_by_role("button", name="Resume subscription").click()
    await expect(subscription).to_contain_text("Renews on")
    await expect(page.get_by_label("Access")).to_have_text("ACTIVE")
    await journey.snap("resumed")


async def test_a_plan_change_shows_the_new_plan(journey: Journey):
    page = journey.page
    await journey.sign_in(new_user("upgrader"))
    await journey.subscribe("Starter")
    subscription = page.get_by_label("Current subscription")
    await expect(subscription).to_contain_text("Starter")

    await subscription.get_by_label("Change plan").select_option(label="Pro — $29.00 / month")
    await subscription.get_by_role("button", name="Change plan").click()
    await expect(subscription.get_by_role("status")).to_have_text("Your plan was changed.")
    await expect(subscription).to_contain_text("Pro ($29.00 / month)")
    await journey.snap("changed")


async def test_a_declined_card_is_shown_as_declined(journey: Journey):
    page = journey.page
    await journey.sign_in(new_user("declined"))
    await journey.subscribe("Pro", DECLINED_CARD)

    await expect(page.get_by_role("alert")).to_contain_text("declined")
    await journey.snap("declined")
    await page.goto(page.url.split("#")[0] + "#/billing")
    await expect(page.get_by_text("No subscription yet.")).to_be_visible()


async def test_three_d_secure_approved_turns_active_live(journey: Journey):
    page = journey.page
    await journey.sign_in(new_user("secure"))
    # Survives only as long as the page does: a reload would drop it.
    await page.evaluate("window.sameDocument = true")
    await journey.subscribe("Pro", THREE_D_SECURE_CARD)

    challenge = page.get_by_role("dialog", name="3-D Secure authentication")
    await expect(challenge).to_be_visible()
    await expect(page.get_by_label("Subscription status")).to_contain_text("INCOMPLETE")
    await journey.snap("challenge")
    await challenge.get_by_role("button", name="Complete").click()

    # ACTIVE arrives with the webhook's billing update over the websocket.
    await expect(page.get_by_label("Subscription status")).to_contain_text("ACTIVE")
    assert await page.evaluate("window.sameDocument") is True
    await journey.snap("active")


async def test_three_d_secure_refused_is_shown_and_buys_nothing(journey: Journey):
    page = journey.page
    await journey.sign_in(new_user("refused"))
    await journey.subscribe("Pro", THREE_D_SECURE_CARD)

    await page.get_by_role("dialog").get_by_role("button", name="Fail").click()
    await expect(page.get_by_role("alert")).to_contain_text("Authentication failed")
    await expect(page.get_by_label("Subscription status")).to_contain_text("INCOMPLETE")
    await journey.snap("refused")


async def test_payments_are_paged(journey: Journey, gateway: ServedGateway):
    page = journey.page
    user = new_user("payer")
    await journey.sign_in(user)
    await journey.subscribe("Starter")
    token = await gateway.token(user)
    for number in range(5):
        payload = {
            "amount": str(100 + number),
            "currency": "usd",
            "paymentMethodId": "pm_card_visa",
            "idempotencyKey": f"{user}-payment-{number}",
        }
        result = await gateway.execute(CREATE_PAYMENT, {"input": payload}, token=token)
        assert result["createPayment"]["userErrors"] == [], result
    await page.reload()

    payments = page.get_by_role("table", name="Payments")
    await expect(page.get_by_text("Page 1 of 2")).to_be_visible()
    await expect(payments.locator("tbody tr")).to_have_count(5)
    await page.get_by_role("button", name="Next page").click()
    await expect(page.get_by_text("Page 2 of 2")).to_be_visible()
    await expect(payments.locator("tbody tr")).to_have_count(1)
    await expect(page.get_by_role("button", name="Next page")).to_be_disabled()
    await journey.snap("second-page")
    await page.get_by_role("button", name="Previous page").click()
    await expect(payments.locator("tbody tr")).to_have_count(5)


async def test_the_admin_page_shows_the_new_mrr(journey: Journey, gateway: ServedGateway):
    page = journey.page
    await journey.sign_in(new_user("admin"), admin=True)
    await page.goto(page.url.split("#")[0] + "#/admin")
    mrr = page.get_by_label("MRR")
    await expect(mrr).to_have_text(re.compile(r"\$"))
    before = await mrr.text_content()
    await expect(page.get_by_role("table", name="Webhook events")).to_contain_text("evt_")

    await gateway.subscribe_customer(await gateway.token(new_user("new-payer")))
    admin_token = await gateway.token(new_user("reader"), admin=True)
    [usd] = (await gateway.execute(MRR, token=admin_token))["admin"]["metrics"]["mrr"]
    expected = f"${int(usd['amount']) // 100:,}.{int(usd['amount']) % 100:02d}"

    # The admin's live webhook-event feed re-reads the overview as the new events land.
    await expect(mrr).to_have_text(expected)
    assert expected != before
    await journey.snap("admin")

    events = page.get_by_role("table", name="Webhook events")
    first_event = (await events.locator("tbody tr td").first.text_content()) or ""
    await events.get_by_role("button", name=f"Replay {first_event}").click()
    await expect(page.get_by_role("status").filter(has_text="replayed")).to_have_text(
        re.compile(rf"{first_event} replayed: (PENDING|PROCESSED|SKIPPED)")
    )


async def test_a_customer_not_admin_sees_the_admin_page_refused(journey: Journey):
    page = journey.page
    await journey.sign_in(new_user("curious"))
    await page.goto(page.url.split("#")[0] + "#/admin")
    await expect(page.get_by_role("alert")).to_contain_text(re.compile("admin", re.IGNORECASE))
    await journey.snap("refused")


@pytest.mark.parametrize("journey", ["de-DE"], indirect=True)
async def test_money_is_formatted_in_the_customers_locale(journey: Journey):
    await journey.sign_in(new_user("kunde"))
    await expect(journey.page.get_by_label("Pro").locator(".price")).to_have_text(
        "29,00\u00a0$ / month"
    )
    await journey.snap("de-DE")


async def test_a_user_name_the_gateway_refuses_is_shown(journey: Journey):
    page = journey.page
    await page.get_by_label("User name").fill("no spaces allowed")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("a user name is")
    await expect(page.get_by_role("button", name="Sign in")).to_be_enabled()
