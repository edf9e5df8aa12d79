"""The channels of a run: one inbox per stage, one send endpoint per edge."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

import trio

if TYPE_CHECKING:
    from .._graph import Graph
    from .._results import StageResult

Message: TypeAlias = "tuple[int, StageResult[Any]]"
"""What an actor sends downstream: its stage index and its final result."""

Inbox: TypeAlias = "trio.MemoryReceiveChannel[Message]"
Outbox: TypeAlias = "trio.MemorySendChannel[Message]"


def wire(graph: Graph) -> tuple[list[Inbox | None], list[list[Outbox]]]:
    """Return each stage's inbox (None for a source) and its send endpoints.

    Each producer owns its own endpoint (a clone for every extra consumer)
    and closes it when its actor ends; an inbox has one slot per producer,
    so a producer's send never blocks.
    """
    nodes = graph.nodes
    outboxes: list[list[Outbox]] = [[] for _ in nodes]
    inboxes: list[Inbox | None] = []
    for node in nodes:
        if not node.inputs:
            inboxes.append(None)
            continue
        # Not open_memory_channel[Message](...): calling the subscripted
        # alias costs ~3 us more per stage (the bench's dag overhead).
        send: Outbox
        receive: Inbox
        send, receive = trio.open_memory_channel(len(node.inputs))
        inboxes.append(receive)
        outboxes[node.inputs[0]].append(send)
        for source in node.inputs[1:]:
            outboxes[source].append(send.clone())
    return inboxes, outboxes


Item: TypeAlias = "tuple[int, Any]"
"""One streamed item: its index in production order, and its value."""

ItemSend: TypeAlias = "trio.MemorySendChannel[Item]"
ItemReceive: TypeAlias = "trio.MemoryReceiveChannel[Item]"


def wire_streams(
    graph: Graph,
) -> tuple[list[ItemReceive | None], list[list[ItemSend]]]:
    """Return each stage's item inlet (None unless fed by a stream) and item outlets.

    A stream edge runs from a streaming stage to each FAN_OUT it feeds: an
    unbuffered channel, so an item is handed over only when the consumer
    has a free slot (the exact bound on items in flight). The producer owns
    one send endpoint per consumer and closes them when it ends; the
    consumer closes its receive endpoint when it stops taking items, which
    the producer sees as that consumer gone.
    """
    nodes = graph.nodes
    inlets: list[ItemReceive | None] = [None] * len(nodes)
    outlets: list[list[ItemSend]] = [[] for _ in nodes]
    for node in nodes:
        if node.stream_fed:
            send: ItemSend
            receive: ItemReceive
            send, receive = trio.open_memory_channel(0)
            inlets[node.index] = receive
            outlets[node.inputs[0]].append(send)
    return inlets, outlets
