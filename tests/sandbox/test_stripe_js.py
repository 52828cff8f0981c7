"""What a customer's page calls in the sandbox: its Stripe.js stand-in, and the browser
actions, which answer pages on any origin (as Stripe's API answers Stripe.js)."""

import httpx

from tests.sandbox.test_payments import pay

PAGE_ORIGIN = "http://shop.example:5173"


async def test_stripe_js_is_served_as_javascript(sandbox):
    async with httpx.AsyncClient(base_url=sandbox.url) as http:
        answer = await http.get("/_sandbox/stripe.js", headers={"Origin": PAGE_ORIGIN})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/javascript")
    assert "window.Stripe = function" in answer.text
    # It offers Stripe's test cards by token, never a card number to type.
    assert "pm_card_authenticationRequired" in answer.text
    assert "4242424242424242" not in answer.text


async def test_a_page_on_another_origin_may_authenticate_a_payment(stripe_client, sandbox):
    intent = await pay(stripe_client, "pm_card_authenticationRequired")
    preflight_headers = {
        "Origin": PAGE_ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    path = f"/_sandbox/payment_intents/{intent.id}/authenticate"
    async with httpx.AsyncClient(base_url=sandbox.url) as http:
        preflight = await http.options(path, headers=preflight_headers)
        answer = await http.post(path, data={"outcome": "succeed"}, headers={"Origin": PAGE_ORIGIN})

    assert preflight.status_code == 200
    assert answer.status_code == 200 and answer.json()["status"] == "succeeded"
    assert answer.headers["access-control-allow-origin"] == "*"
    assert (await stripe_client.v1.payment_intents.retrieve_async(intent.id)).status == "succeeded"


async def test_the_api_itself_stays_closed_to_pages(sandbox):
    async with httpx.AsyncClient(base_url=sandbox.url) as http:
        answer = await http.get("/v1/customers", headers={"Origin": PAGE_ORIGIN})
    assert answer.status_code == 401
    assert "access-control-allow-origin" not in answer.headers
