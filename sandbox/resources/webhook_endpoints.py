"""Webhook endpoints: where the sandbox delivers events, each with its own signing secret."""

from sandbox.errors import invalid_request
from sandbox.registry import Call, StripeObject, handles
from sandbox.resources.common import apply_update, metadata_update
from sandbox.spec import API_VERSION
from sandbox.store import blank


@handles("POST", "/v1/webhook_endpoints")
def create(call: Call) -> StripeObject:
    params = call.params
    if not params.get("url", "").startswith(("http://", "https://")):
        raise invalid_request("Invalid URL: must be http or https", param="url")
    if not params.get("enabled_events"):
        raise invalid_request("Missing required param: enabled_events.", param="enabled_events")
    endpoint = blank(
        "webhook_endpoint",
        id=call.store.new_id("we"),
        api_version=params.get("api_version", API_VERSION),
        application=None,
        created=call.store.now(),
        description=params.get("description"),
        enabled_events=params["enabled_events"],
        metadata=metadata_update({}, params.get("metadata")),
        status="enabled",
        url=params["url"],
    )
    call.store.add(endpoint)
    secret = call.store.webhook_secret or call.store.new_id("whsec", 32)
    call.store.endpoint_secrets[endpoint["id"]] = secret
    return endpoint | {"secret": secret}


@handles("GET", "/v1/webhook_endpoints/{webhook_endpoint}")
def retrieve(call: Call) -> StripeObject:
    return call.store.get("webhook_endpoint", call.args["webhook_endpoint"])


@handles("POST", "/v1/webhook_endpoints/{webhook_endpoint}")
def update(call: Call) -> StripeObject:
    endpoint = call.store.get("webhook_endpoint", call.args["webhook_endpoint"])
    apply_update(endpoint, call.params, ("url", "description", "enabled_events"))
    if "disabled" in call.params:
        endpoint["status"] = "disabled" if call.params["disabled"] else "enabled"
    return endpoint


@handles("DELETE", "/v1/webhook_endpoints/{webhook_endpoint}")
def delete(call: Call) -> StripeObject:
    endpoint = call.store.get("webhook_endpoint", call.args["webhook_endpoint"])
    endpoint["deleted"] = True
    return {"id": endpoint["id"], "object": "webhook_endpoint", "deleted": True}


@handles("GET", "/v1/webhook_endpoints")
def list_endpoints(call: Call) -> StripeObject:
    return call.store.list_objects("webhook_endpoint", call.params, "/v1/webhook_endpoints")
