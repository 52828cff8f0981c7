"""Products: create (optionally with a default price), retrieve, update, delete, list."""

import copy
from typing import Any

from sandbox.errors import invalid_request
from sandbox.registry import Call, StripeObject, handles
from sandbox.resources.common import apply_update, metadata_update, one_of
from sandbox.store import Store, blank, changed_fields

UPDATABLE = (
    "name",
    "active",
    "description",
    "images",
    "shippable",
    "statement_descriptor",
    "tax_code",
    "unit_label",
    "url",
    "package_dimensions",
)


@handles("POST", "/v1/products")
def create(call: Call) -> StripeObject:
    product = create_product(call.store, call.params)
    if "default_price_data" in call.params:
        _add_default_price(call.store, product, call.params["default_price_data"])
    return product


def create_product(store: Store, params: dict[str, Any]) -> StripeObject:
    """A new product from create-product params (also `product_data` of prices and checkout)."""
    if not params.get("name"):
        raise invalid_request(
            "Missing required param: name.", param="name", code="parameter_missing"
        )
    product_id = params.get("id") or store.new_id("prod", 14)
    if store.find("product", product_id) is not None:
        raise invalid_request("Product already exists.", param="id", code="resource_already_exists")
    now = store.now()
    product = blank(
        "product",
        id=product_id,
        active=params.get("active", True),
        created=now,
        default_price=None,
        description=params.get("description"),
        images=params.get("images", []),
        marketing_features=[{"name": f["name"]} for f in params.get("marketing_features", [])],
        metadata=metadata_update({}, params.get("metadata")),
        name=params["name"],
        package_dimensions=params.get("package_dimensions"),
        shippable=params.get("shippable"),
        statement_descriptor=params.get("statement_descriptor"),
        tax_code=params.get("tax_code"),
        type=one_of(params.get("type", "service"), ("good", "service"), "type"),
        unit_label=params.get("unit_label"),
        updated=now,
        url=params.get("url"),
    )
    store.add(product)
    store.emit("product.created", product)
    return product


def _add_default_price(store: Store, product: StripeObject, price_data: dict[str, Any]) -> None:
    from sandbox.resources import prices

    price = prices.create_price(store, price_data, product["id"])
    # Stripe creates the product with its default price in one step: no product.updated.
    product["default_price"] = price["id"]


@handles("GET", "/v1/products/{id}")
def retrieve(call: Call) -> StripeObject:
    return call.store.get("product", call.args["id"])


@handles("POST", "/v1/products/{id}")
def update(call: Call) -> StripeObject:
    product = call.store.get("product", call.args["id"])
    params = call.params
    before = copy.deepcopy(product)
    if "default_price" in params:
        product["default_price"] = _own_price(call.store, product, params["default_price"])
    if "marketing_features" in params:
        features = params["marketing_features"] or []
        product["marketing_features"] = [{"name": f["name"]} for f in features]
    apply_update(product, params, UPDATABLE)
    if product["name"] is None:
        raise invalid_request("You cannot unset the name of a product.", param="name")
    changes = changed_fields(before, product)
    if changes:
        product["updated"] = call.store.now()
        call.store.emit("product.updated", product, changes)
    return product


def _own_price(store: Store, product: StripeObject, price_id: str) -> str | None:
    if not price_id:
        return None
    price = store.get("price", price_id, param="default_price")
    if price["product"] != product["id"]:
        raise invalid_request(
            f"The price `{price_id}` does not belong to product `{product['id']}`.",
            param="default_price",
        )
    if not price["active"]:
        raise invalid_request(
            "The default price of a product must be active.", param="default_price"
        )
    return price_id


@handles("DELETE", "/v1/products/{id}")
def delete(call: Call) -> StripeObject:
    product = call.store.get("product", call.args["id"])
    if any(
        call.store.objects[price_id]["product"] == product["id"]
        for price_id in call.store.ids_by_type["price"]
    ):
        raise invalid_request(
            "This product cannot be deleted because it has one or more user-created prices."
        )
    # The event carries the product as it was; afterwards it answers as deleted.
    call.store.emit("product.deleted", product)
    product["deleted"] = True
    return {"id": product["id"], "object": "product", "deleted": True}


@handles("GET", "/v1/products")
def list_products(call: Call) -> StripeObject:
    params = call.params

    def keep(product: StripeObject) -> bool:
        checks = [
            "active" not in params or product["active"] == params["active"],
            "ids" not in params or product["id"] in params["ids"],
            "shippable" not in params or product["shippable"] == params["shippable"],
            "type" not in params or product["type"] == params["type"],
            "url" not in params or product["url"] == params["url"],
        ]
        return all(checks)

    return call.store.list_objects("product", params, "/v1/products", keep)
