"""Shared streams: one GraphQL stream per account and `billingUpdates` document, framed once.

A dashboard opened in many tabs (or by many users of one billing account) subscribes
the same document many times. Running Strawberry's stream for each would execute and
encode every update once per socket; instead the first such subscription of an account
starts one stream, each result is encoded once, and every socket subscribed with the
same document gets that text in its own bounded queue, framed with its operation id.
Each socket still has its own task and queue: a slow one is closed (as with the bus)
and never delays the others. Both subprotocols share streams (each frames the same text
its own way). Only a lone `billingUpdates` root field qualifies; every other operation
runs on Strawberry's own per-operation path."""

import asyncio
import copy
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

from graphql import FieldNode, GraphQLError, OperationDefinitionNode, OperationType, parse
from strawberry.types.execution import ExecutionResult, PreExecutionError
from strawberry.utils.aio import aclosing

log = logging.getLogger("billing_gateway.live")

SHARED_ROOT_FIELD = "billingUpdates"
_COMPLETE = object()

StreamKey = tuple[str, str, str | None, str]


@lru_cache(maxsize=256)
def _operation(query: str, operation_name: str | None) -> OperationDefinitionNode | None:
    """The document's operation when it is the only definition (parsed once per text)."""
    try:
        document = parse(query)
    except GraphQLError:
        return None  # Strawberry's own path reports it
    if len(document.definitions) != 1:
        return None
    operation = document.definitions[0]
    if not isinstance(operation, OperationDefinitionNode):
        return None
    if operation_name is not None and (
        operation.name is None or operation.name.value != operation_name
    ):
        return None
    return operation


def is_subscription(query: str, operation_name: str | None) -> bool:
    operation = _operation(query, operation_name)
    return operation is not None and operation.operation is OperationType.SUBSCRIPTION


def is_shareable(query: str, operation_name: str | None) -> bool:
    """True for a document whose operation is a subscription of `billingUpdates` alone."""
    if not is_subscription(query, operation_name):
        return False
    operation = _operation(query, operation_name)
    assert operation is not None
    selections = operation.selection_set.selections
    return (
        len(selections) == 1
        and isinstance(selections[0], FieldNode)
        and selections[0].name.value == SHARED_ROOT_FIELD
        and not selections[0].directives
    )


class Framing(NamedTuple):
    """How a subprotocol frames a result and a refusal."""

    result_type: str
    # graphql-ws sends the first error as an object, graphql-transport-ws the list.
    first_error_only: bool


TRANSPORT_WS_FRAMING = Framing("next", first_error_only=False)
LEGACY_WS_FRAMING = Framing("data", first_error_only=True)


class Member:
    """One socket's operation on a shared stream: its queue of encoded payloads."""

    __slots__ = ("_framing", "_prefix", "_queue", "_send_text", "close_lagging")

    def __init__(
        self,
        operation_id: str,
        framing: Framing,
        size: int,
        send_text: Callable[[str], Any],
        close_lagging: Callable[[], None],
    ) -> None:
        self._prefix = '{"id":' + json.dumps(operation_id) + ',"type":'
        self._framing = framing
        self._queue: asyncio.Queue[Any] = asyncio.Queue(size)
        self._send_text = send_text
        self.close_lagging = close_lagging

    def offer(self, item: Any) -> bool:
        """Queue without waiting; False (and the socket closed) when it fell too far behind."""
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.close_lagging()
            return False
        return True

    async def run(self) -> None:
        """Send each payload as a result; a refusal or the stream's end ends the operation."""
        result_prefix = self._prefix + json.dumps(self._framing.result_type) + ',"payload":'
        while True:
            item = await self._queue.get()
            if item is _COMPLETE:
                await self.complete()
                return
            if isinstance(item, list):  # the stream was refused before it started
                errors = item[0] if self._framing.first_error_only else item
                await self._send_text(
                    self._prefix + '"error","payload":' + json.dumps(errors) + "}"
                )
                return
            await self._send_text(result_prefix + item + "}")

    async def complete(self) -> None:
        await self._send_text(self._prefix + '"complete"}')


@dataclass(frozen=True)
class StreamConnection:
    """What the subscription resolvers use of a connection, for a shared stream."""

    bus: Any
    close_lagging: Callable[[], None]


class SharedStream:
    """One Strawberry stream whose results every member receives, encoded once."""

    def __init__(self, key: StreamKey, streams: "SharedStreams") -> None:
        self.key = key
        self._streams = streams
        self.members: set[Member] = set()
        self.task: asyncio.Task[None] | None = None
        self.closing = False

    def start(
        self, schema: Any, query: str, variables: Any, operation_name: Any, context: Any
    ) -> None:
        """Run the stream with a copy of the first member's context whose connection is the
        stream's own: it outlives that member, and falling behind closes every member."""
        stream_context = copy.copy(context)
        stream_context.live = StreamConnection(context.live.bus, self._close_all_lagging)
        source = schema.stream(
            query,
            variable_values=variables,
            context_value=stream_context,
            operation_name=operation_name,
        )
        self.task = asyncio.create_task(self._run(source), name="live-shared-stream")

    def _close_all_lagging(self) -> None:
        for member in list(self.members):
            member.close_lagging()

    async def _run(self, pending_source: Any) -> None:
        try:
            source = await pending_source
            async with aclosing(source):
                async for result in source:
                    if isinstance(result, PreExecutionError):
                        self._send_all([error.formatted for error in result.errors or ()])
                        return
                    self._send_all(_encoded(result))
            self._send_all(_COMPLETE)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("live updates: a shared stream failed")
            self._send_all(_COMPLETE)
        finally:
            self._streams.forget(self)

    def _send_all(self, item: Any) -> None:
        for member in list(self.members):
            if not member.offer(item):
                self.leave(member)

    def leave(self, member: Member) -> None:
        self.members.discard(member)
        if not self.members and self.task is not None:
            self.closing = True
            self.task.cancel()  # nobody listens: stop the stream and its bus subscription
            self._streams.forget(self)


def _encoded(result: ExecutionResult) -> str:
    payload: dict[str, Any] = {"data": result.data}
    if result.errors:
        payload["errors"] = [error.formatted for error in result.errors]
    if result.extensions:
        payload["extensions"] = result.extensions
    return json.dumps(payload)


class SharedStreams:
    """The app's shared streams by (account user, document, operation name, variables)."""

    def __init__(self) -> None:
        self._streams: dict[StreamKey, SharedStream] = {}

    @staticmethod
    def key(user_id: str, query: str, operation_name: str | None, variables: Any) -> StreamKey:
        return user_id, query, operation_name, json.dumps(variables, sort_keys=True)

    def join(
        self, key: StreamKey, member: Member, start: Callable[[SharedStream], None]
    ) -> SharedStream:
        stream = self._streams.get(key)
        if stream is None or stream.closing:
            stream = self._streams[key] = SharedStream(key, self)
            start(stream)
        stream.members.add(member)
        return stream

    def forget(self, stream: SharedStream) -> None:
        if self._streams.get(stream.key) is stream:
            del self._streams[stream.key]

    def member_count(self) -> int:
        return sum(len(stream.members) for stream in self._streams.values())

    def stream_count(self) -> int:
        return len(self._streams)


async def run_member(stream: SharedStream, member: Member) -> None:
    """A member's operation task: its sends, and leaving the stream however it ends."""
    try:
        await member.run()
    finally:
        stream.leave(member)
