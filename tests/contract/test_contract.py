"""The served schema contains the public contract (tests/contract/contract.graphql).

Both schemas are flattened into "elements" (key -> signature):

    schema.query               -> root type name
    Plan                       -> "object" (the kind)
    Plan implements Node       -> "implements"
    Plan.amount                -> "Money!" (also input object fields)
    Admin.customers(first)     -> "Int" (argument type)
    BillingInterval.DAY        -> "enum value"

Descriptions, default values and directives are ignored. Contract elements not yet
served are listed in pending.txt; each issue deletes the lines it implements.
"""

from pathlib import Path

from graphql import (
    GraphQLArgument,
    GraphQLField,
    GraphQLInputField,
    GraphQLNamedType,
    GraphQLSchema,
    build_schema,
    is_enum_type,
    is_input_object_type,
    is_interface_type,
    is_introspection_type,
    is_object_type,
    is_specified_scalar_type,
    is_union_type,
)

from schema.schema import schema_sdl

HERE = Path(__file__).resolve().parent
CONTRACT_PATH = HERE / "contract.graphql"
PENDING_PATH = HERE / "pending.txt"
SHARED_CONTRACT_PATH = (
    Path(__file__).resolve().parents[2].parent / "shared" / "design" / "contract.graphql"
)

Elements = dict[str, str]


def type_kind(named: GraphQLNamedType) -> str:
    """The kind of a named type."""
    if is_object_type(named):
        return "object"
    if is_interface_type(named):
        return "interface"
    if is_enum_type(named):
        return "enum"
    if is_input_object_type(named):
        return "input"
    if is_union_type(named):
        return "union"
    return "scalar"


def field_elements(owner: str, name: str, field: GraphQLField | GraphQLInputField) -> Elements:
    """A field's element and those of its arguments."""
    key = f"{owner}.{name}"
    elements = {key: str(field.type)}
    args: dict[str, GraphQLArgument] = getattr(field, "args", {})
    elements.update({f"{key}({arg})": str(value.type) for arg, value in args.items()})
    return elements


def type_elements(named: GraphQLNamedType) -> Elements:
    """A named type's element and those of its fields, arguments and enum values."""
    elements = {named.name: type_kind(named)}
    # Each interface is its own element, so a served type may implement more than the contract's.
    for interface in getattr(named, "interfaces", ()):
        elements[f"{named.name} implements {interface.name}"] = "implements"
    if is_enum_type(named):
        elements.update({f"{named.name}.{value}": "enum value" for value in named.values})
    fields = getattr(named, "fields", {})
    for name, field in fields.items():
        elements.update(field_elements(named.name, name, field))
    return elements


def root_elements(schema: GraphQLSchema) -> Elements:
    """The schema's root operation type names."""
    roots = {
        "schema.query": schema.query_type,
        "schema.mutation": schema.mutation_type,
        "schema.subscription": schema.subscription_type,
    }
    return {key: root.name for key, root in roots.items() if root is not None}


def is_builtin(named: GraphQLNamedType) -> bool:
    """True for graphql's built-in scalars and introspection types."""
    return is_specified_scalar_type(named) or is_introspection_type(named)


def schema_elements(sdl: str) -> Elements:
    """Every element of the schema described by sdl."""
    schema = build_schema(sdl)
    elements = root_elements(schema)
    for named in schema.type_map.values():
        if not is_builtin(named):
            elements.update(type_elements(named))
    return elements


def parse_pending(text: str) -> list[str]:
    """The element keys of a pending.txt text, without comments and blank lines."""
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def signature_mismatches(contract: Elements, served: Elements) -> list[str]:
    """Elements in both schemas whose signatures differ, one line each."""
    return [
        f"{key}: contract {contract[key]!r}, served {served[key]!r}"
        for key in sorted(contract.keys() & served.keys())
        if contract[key] != served[key]
    ]


def unexpected_missing(contract: Elements, served: Elements, pending: list[str]) -> list[str]:
    """Contract elements the served schema lacks that pending.txt does not list."""
    return sorted(contract.keys() - served.keys() - set(pending))


def pending_but_served(served: Elements, pending: list[str]) -> list[str]:
    """pending.txt lines the served schema already has."""
    return sorted(set(pending) & served.keys())


def pending_not_in_contract(contract: Elements, pending: list[str]) -> list[str]:
    """pending.txt lines that are not contract elements (typos, stale names)."""
    return sorted(set(pending) - contract.keys())


def duplicate_pending(pending: list[str]) -> list[str]:
    """pending.txt lines listed more than once."""
    return sorted({line for line in pending if pending.count(line) > 1})


def missing_pending(contract: Elements, served: Elements) -> list[str]:
    """The pending.txt lines for the current served schema: contract elements it lacks."""
    return sorted(contract.keys() - served.keys())


def listing(title: str, lines: list[str]) -> str:
    """An assertion message: a title and one indented line per offending element."""
    return "\n".join([title, *(f"  {line}" for line in lines)])


def contract_elements() -> Elements:
    """The elements of tests/contract/contract.graphql."""
    return schema_elements(CONTRACT_PATH.read_text(encoding="utf-8"))


def served_elements() -> Elements:
    """The elements of the schema the gateway serves."""
    return schema_elements(schema_sdl())


def pending_lines() -> list[str]:
    """The element keys listed in tests/contract/pending.txt."""
    return parse_pending(PENDING_PATH.read_text(encoding="utf-8"))


# ---- the served schema against the contract ----


def test_served_signatures_match_contract() -> None:
    """Elements in both schemas have the contract's types and nullability."""
    mismatches = signature_mismatches(contract_elements(), served_elements())
    assert not mismatches, listing("Served schema differs from the contract:", mismatches)


def test_served_schema_has_every_contract_element_not_pending() -> None:
    """Every contract element is served unless pending.txt lists it."""
    missing = unexpected_missing(contract_elements(), served_elements(), pending_lines())
    title = "Contract elements missing from the served schema (not in pending.txt):"
    assert not missing, listing(title, missing)


def test_pending_lists_nothing_already_served() -> None:
    """pending.txt shrinks as features land: served elements must be deleted from it."""
    served = pending_but_served(served_elements(), pending_lines())
    title = "Elements now served; delete these lines from tests/contract/pending.txt:"
    assert not served, listing(title, served)


def test_pending_lines_are_contract_elements() -> None:
    """Every pending.txt line names a contract element (typo guard)."""
    unknown = pending_not_in_contract(contract_elements(), pending_lines())
    title = "tests/contract/pending.txt lines that are not contract elements:"
    assert not unknown, listing(title, unknown)


def test_pending_lines_are_unique() -> None:
    """No pending.txt line is listed twice."""
    duplicates = duplicate_pending(pending_lines())
    assert not duplicates, listing("Duplicate lines in tests/contract/pending.txt:", duplicates)


def test_contract_copy_matches_shared_design() -> None:
    """The vendored contract is byte-identical to the shared design, when that is present."""
    # The project must not need /work/shared at run time: outside the shared workspace
    # there is nothing to compare against, so this check passes rather than skipping.
    if not SHARED_CONTRACT_PATH.is_file():
        return
    assert CONTRACT_PATH.read_bytes() == SHARED_CONTRACT_PATH.read_bytes(), (
        f"{CONTRACT_PATH} differs from {SHARED_CONTRACT_PATH}; copy it again"
    )


# ---- the checker itself, on tiny schemas ----

TINY_CONTRACT = """
schema { query: Query mutation: Mutation }
interface Node { id: ID! }
enum Color { RED GREEN }
input PaintInput { color: Color! }
type Item implements Node { id: ID! name: String! tags(first: Int): [String!]! }
type Query { item(id: ID!): Item }
type Mutation { paint(input: PaintInput!): Item }
"""

TINY_SERVED = """
interface Node { id: ID! }
enum Color { RED GREEN BLUE }
type Item implements Node { id: ID! name: String tags(first: Int = null): [String!]! }
type Query { item(id: ID!): Item extra: Int }
"""


def test_elements_cover_roots_kinds_fields_args_and_values() -> None:
    """A schema is flattened into the documented element keys and signatures."""
    elements = schema_elements(TINY_CONTRACT)
    assert elements["schema.query"] == "Query"
    assert elements["schema.mutation"] == "Mutation"
    assert "schema.subscription" not in elements
    assert elements["Item"] == "object"
    assert elements["Item implements Node"] == "implements"
    assert elements["Node"] == "interface"
    assert elements["PaintInput"] == "input"
    assert elements["PaintInput.color"] == "Color!"
    assert elements["Item.tags"] == "[String!]!"
    assert elements["Item.tags(first)"] == "Int"
    assert elements["Mutation.paint(input)"] == "PaintInput!"
    assert elements["Color.RED"] == "enum value"
    assert "String" not in elements and "__Schema" not in elements


def test_differing_nullability_is_reported() -> None:
    """A field whose nullability differs is a mismatch; default values are not."""
    mismatches = signature_mismatches(schema_elements(TINY_CONTRACT), schema_elements(TINY_SERVED))
    assert mismatches == ["Item.name: contract 'String!', served 'String'"]


def test_a_dropped_interface_is_missing_and_an_added_one_is_allowed() -> None:
    """Dropping an interface the contract gives a type is reported; adding one is not."""
    contract = schema_elements(TINY_CONTRACT)
    dropped = schema_elements(TINY_SERVED.replace("type Item implements Node", "type Item"))
    assert "Item implements Node" in unexpected_missing(contract, dropped, [])
    added = TINY_SERVED.replace(
        "type Item implements Node", "interface Named { id: ID! } type Item implements Node & Named"
    )
    assert signature_mismatches(contract, schema_elements(added)) == [
        "Item.name: contract 'String!', served 'String'"
    ]


def test_missing_element_not_pending_is_reported() -> None:
    """Contract elements the served schema lacks are reported unless pending."""
    contract, served = schema_elements(TINY_CONTRACT), schema_elements(TINY_SERVED)
    pending = ["Mutation", "Mutation.paint", "Mutation.paint(input)", "schema.mutation"]
    assert unexpected_missing(contract, served, pending) == ["PaintInput", "PaintInput.color"]


def test_pending_element_that_is_served_is_reported() -> None:
    """A pending.txt line naming a served element is reported."""
    served = schema_elements(TINY_SERVED)
    assert pending_but_served(served, ["Item.name", "Mutation"]) == ["Item.name"]


def test_pending_line_not_in_contract_is_reported() -> None:
    """A pending.txt line that is not a contract element is reported."""
    contract = schema_elements(TINY_CONTRACT)
    assert pending_not_in_contract(contract, ["Mutation", "Mutaton.paint"]) == ["Mutaton.paint"]


def test_served_extras_are_allowed() -> None:
    """Elements only the served schema has are neither mismatches nor missing."""
    contract, served = schema_elements(TINY_CONTRACT), schema_elements(TINY_SERVED)
    assert "Query.extra" not in signature_mismatches(contract, served)
    assert "Color.BLUE" not in missing_pending(contract, served)


def test_pending_parser_ignores_comments_and_blank_lines() -> None:
    """Comment lines and blank lines are not element keys; keys are stripped."""
    text = "# header\n\nPlan.amount\n  # indented comment\n  Viewer.access  \n"
    assert parse_pending(text) == ["Plan.amount", "Viewer.access"]


def test_duplicate_pending_lines_are_reported() -> None:
    """A line listed twice in pending.txt is reported once."""
    assert duplicate_pending(["A", "B", "A"]) == ["A"]
