"""schema/execution.py answers exactly as graphql-core's own execution does: the same data and
the same errors, at the same paths, for plain fields, lists, resolvers (sync, async,
failing), nulls where none may be, values that do not coerce, permissions and directives."""

import asyncio
import enum
from functools import partial
from collections.abc import AsyncIterator
from typing import Any

import pytest
import strawberry
from strawberry.extensions import ParserCache
from strawberry.permission import BasePermission

from schema.execution import PlainFieldsExecutionContext


@strawberry.enum
class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Denied(BasePermission):
    message = "not for you"

    def has_permission(self, source: Any, info: strawberry.Info, **kwargs: Any) -> bool:
        return False


@strawberry.type
class Leaf:
    name: str
    color: Color
    count: int | None
    # A value that is not an int: it must fail the same way on both paths.
    strict: int
    # None on one leaf, where none may be.
    tag: str

    @strawberry.field
    def shout(self) -> str:
        return self.name.upper()

    @strawberry.field
    async def later(self, info: strawberry.Info) -> str:
        await asyncio.sleep(0)
        return f"{self.name}@{info.path.key}"

    @strawberry.field
    def broken(self) -> str:
        raise ValueError(f"{self.name} broke")

    @strawberry.field
    async def broken_later(self) -> str | None:
        await asyncio.sleep(0)
        raise ValueError(f"{self.name} broke later")

    @strawberry.field
    def required_but_missing(self) -> str:
        return None  # type: ignore[return-value]

    @strawberry.field(permission_classes=[Denied])
    def secret(self) -> str:
        return "leaked"

    @strawberry.field
    def scaled(self, by: int = 2) -> int:
        return (self.count or 0) * by


@strawberry.type
class Branch:
    label: str | None
    leaf: Leaf
    maybe_leaf: Leaf | None
    leaves: list[Leaf]
    sparse: list[Leaf | None] | None
    # A None among items that may not be null.
    holes: list[Leaf] | None
    nested: list[list[Leaf]]

    @strawberry.field
    async def async_leaves(self) -> list[Leaf]:
        await asyncio.sleep(0)
        return self.leaves


def _leaf(name: str, *, count: int | None = 1, strict: Any = 1, tag: Any = "t") -> Leaf:
    return Leaf(name=name, color=Color.RED, count=count, strict=strict, tag=tag)


def _branch() -> Branch:
    leaves = [_leaf("a"), _leaf("b", count=None, tag=None), _leaf("c", strict="not a number")]
    return Branch(
        label=None,
        leaf=_leaf("root"),
        maybe_leaf=None,
        leaves=leaves,
        sparse=[leaves[0], None],
        holes=[leaves[0], None],  # type: ignore[list-item]
        nested=[leaves[:2], leaves[2:]],
    )


@strawberry.type
class Query:
    @strawberry.field
    def branch(self) -> Branch:
        return _branch()

    @strawberry.field
    def branches(self) -> list[Branch]:
        return [_branch(), _branch()]

    @strawberry.field
    def root_name(self, root: Any) -> str:
        return type(root).__name__


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def leaves(self) -> AsyncIterator[Leaf]:
        for leaf in _branch().leaves:
            yield leaf


def _schema(**options: Any) -> strawberry.Schema:
    # The parser cache hands out the same document for the same text, as the gateway's does.
    return strawberry.Schema(
        query=Query,
        subscription=Subscription,
        extensions=[partial(ParserCache, maxsize=64)],
        **options,
    )


STANDARD = _schema()
PLAIN = _schema(execution_context_class=PlainFieldsExecutionContext)

FIELDS = "name color count shout later"
QUERIES = [
    # Plain leaves, objects and lists, with resolvers among them, aliases and __typename.
    f"{{ branch {{ __typename label leaf {{ {FIELDS} }} maybeLeaf {{ name }}"
    f" leaves {{ {FIELDS} }} alias: leaves {{ n: name }} nested {{ name }} }} }}",
    "{ branches { leaves { name later } asyncLeaves { name later } } }",
    # Errors: raised by resolvers, sync and async, a null where none may be, a value that
    # does not coerce; each nulls the nearest nullable field.
    "{ branch { label leaves { name broken } } }",
    "{ branch { leaves { name brokenLater } } }",
    "{ branch { leaf { name requiredButMissing } } }",
    "{ branch { leaves { name strict } } }",
    "{ branch { sparse { name strict } } }",
    "{ branch { label leaves { name tag } } }",
    "{ branches { holes { name } sparse { name } } }",
    "{ branch { maybeLeaf { name } sparse { tag } } }",
    "{ branches { nested { name broken } } }",
    # A permission refuses even a resolver without arguments.
    "{ branch { leaf { name secret } } }",
    # Arguments, fragments, the root argument.
    "{ rootName branch { leaf { scaled(by: 3) plain: scaled } } }",
    "query { branch { leaves { ...L } leaf { ... on Leaf { color } } } } fragment L on Leaf { name count }",
]


def _answer(result: Any) -> tuple[Any, list[tuple[str, Any]]]:
    errors = sorted((error.message, error.path) for error in result.errors or [])
    return result.data, errors


@pytest.mark.parametrize("query", QUERIES)
async def test_answers_as_the_standard_execution_does(query: str):
    standard = await STANDARD.execute(query)
    plain = await PLAIN.execute(query)
    assert _answer(plain) == _answer(standard)
    # The cases above are meant to exercise something: data, errors or both.
    assert plain.data is not None or plain.errors


async def test_errors_are_located_and_null_the_nearest_nullable_field():
    result = await PLAIN.execute("{ branch { label leaves { name strict } } }")
    # `strict` of the third leaf fails: it is non-null, so is its leaf and the list; the
    # branch is non-null too, so the whole (nullable) data is null.
    assert result.data is None
    (error,) = result.errors
    assert error.path == ["branch", "leaves", 2, "strict"]
    assert "Int cannot represent non-integer value" in error.message


async def test_the_same_document_again_answers_the_same():
    query = QUERIES[0]
    first = await PLAIN.execute(query)
    second = await PLAIN.execute(query)
    assert _answer(first) == _answer(second)
    assert first.data["branch"]["leaves"][0]["later"] == "a@later"


async def test_directives_follow_each_executions_variables():
    """A document with @include is collected anew for each execution: its selections
    depend on the variables."""
    query = "query ($on: Boolean!) { branch { leaf { name count @include(if: $on) } } }"
    shown = await PLAIN.execute(query, variable_values={"on": True})
    hidden = await PLAIN.execute(query, variable_values={"on": False})
    assert shown.data == {"branch": {"leaf": {"name": "root", "count": 1}}}
    assert hidden.data == {"branch": {"leaf": {"name": "root"}}}
    assert _answer(hidden) == _answer(await STANDARD.execute(query, variable_values={"on": False}))


async def test_subscription_events_answer_as_the_standard_execution_does():
    """A subscription's field resolves each event: its streaming resolver is not called."""
    query = "subscription { leaves { name shout later strict } }"

    async def events(schema: strawberry.Schema) -> list[Any]:
        stream = await schema.subscribe(query)
        return [_answer(result) async for result in stream]

    plain = await events(PLAIN)
    assert plain == await events(STANDARD)
    assert [data["leaves"]["name"] if data else None for data, _ in plain] == ["a", "b", None]
