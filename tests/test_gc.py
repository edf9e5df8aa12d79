"""No reference cycles left behind by the failure paths.

The ``gc.DEBUG_SAVEALL`` technique (trio's own tests use it): with automatic
collection off, run the path, drop every result, collect, and require that
the collector found nothing unreachable. A traceback stored on a result that
holds the executor's frames, or a nursery's exception group that holds the
frame that raised it, would show up here.
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import trio
import trio.testing

from actors import (
    ExecutionPattern,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    RetryConfig,
    StageDefinition,
)


@contextmanager
def no_cyclic_garbage() -> Iterator[None]:
    """Fail if the block leaves objects that only the cycle collector can free."""
    gc.collect()
    flags = gc.get_debug()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield
        gc.collect()
        kinds = Counter(type(obj).__name__ for obj in gc.garbage)
        assert kinds == Counter()
    finally:
        gc.garbage.clear()
        gc.set_debug(flags)
        gc.enable()


async def ok(value: Any, context: PipelineContext[Any]) -> str:
    """Succeed after half a second."""
    await trio.sleep(0.5)
    return "ok"


async def boom(value: Any, context: PipelineContext[Any]) -> None:
    """Fail after a second."""
    await trio.sleep(1)
    raise ValueError("boom")


async def hang(value: Any, context: PipelineContext[Any]) -> None:
    """Wait until cancelled."""
    await trio.sleep_forever()


async def interrupt(value: Any, context: PipelineContext[Any]) -> None:
    """Raise KeyboardInterrupt after a second."""
    await trio.sleep(1)
    raise KeyboardInterrupt


class WrongType:
    """An object-form stage whose execute returns an int."""

    name = "wrong"

    async def execute(self, input: Any, context: PipelineContext[Any]) -> Any:
        """Return the wrong type."""
        await trio.sleep(1)
        return 42


def _pipeline(first: Any, **options: Any) -> PipelineDefinition:
    """``first`` (with *options*), a stage blocked until cancelled, and a consumer."""
    return PipelineDefinition(
        name="gc",
        stages=[
            StageDefinition("first", first, **options),
            StageDefinition("blocked", hang),
            StageDefinition("after", ok, inputs=["first"]),
        ],
    )


async def _execute(pipeline: PipelineDefinition, **context: Any) -> None:
    await PipelineExecutor().execute(pipeline, [1, 2, 3], PipelineContext(**context))


async def _failure() -> None:
    await _execute(_pipeline(boom))


async def _retried_failure() -> None:
    retry = RetryConfig(max_attempts=3, initial_delay_ms=250)
    await _execute(_pipeline(boom, retry_config=retry))


async def _contract_violation() -> None:
    await _execute(_pipeline(WrongType()))


async def _condition_raises() -> None:
    def condition(context: PipelineContext[Any]) -> bool:
        raise RuntimeError("condition")

    await _execute(_pipeline(ok, condition=condition))


async def _stage_timeout() -> None:
    await _execute(_pipeline(hang, timeout_ms=750))


async def _pipeline_timeout() -> None:
    pipeline = _pipeline(ok).model_copy(update={"timeout_ms": 2000.0})
    await _execute(pipeline)


async def _fan_out_failure() -> None:
    await _execute(_pipeline(boom, pattern=ExecutionPattern.FAN_OUT))


async def _cancel_token() -> None:
    token = trio.Event()

    async def set_token() -> None:
        await trio.sleep(2)
        token.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(set_token)
        await _execute(_pipeline(ok), cancel_token=token)


async def _caller_cancel() -> None:
    with trio.move_on_after(2):
        await _execute(_pipeline(ok))


async def _keyboard_interrupt() -> None:
    with pytest.raises(KeyboardInterrupt):
        await _execute(_pipeline(interrupt))


PATHS: dict[str, Callable[[], Awaitable[None]]] = {
    "failure": _failure,
    "retried failure": _retried_failure,
    "contract violation": _contract_violation,
    "condition raises": _condition_raises,
    "stage timeout": _stage_timeout,
    "pipeline timeout": _pipeline_timeout,
    "fan-out failure": _fan_out_failure,
    "cancel token": _cancel_token,
    "caller cancel": _caller_cancel,
    "keyboard interrupt": _keyboard_interrupt,
}


@pytest.mark.parametrize("path", list(PATHS))
async def test_path_leaves_no_cyclic_garbage(
    path: str, autojump_clock: trio.testing.MockClock
) -> None:
    """The run and its result are freed by reference counting alone."""
    await PATHS[path]()  # once first, so one-off caches are not counted
    with no_cyclic_garbage():
        await PATHS[path]()


async def test_interrupt_is_not_joined_by_a_closed_channel_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A stage raising an interrupt leaves its consumer quiet (no EndOfChannel).

    Regression: the interrupted stage closed its outbox before any cancel, so
    its consumer's receive raised ``trio.EndOfChannel`` next to the interrupt.
    (A BaseException of the stage's own no longer escapes: it fails the stage.)
    """

    async def abort(value: Any, context: PipelineContext[Any]) -> None:
        await trio.sleep(1)
        raise KeyboardInterrupt

    pipeline = PipelineDefinition(
        name="abort",
        stages=[
            StageDefinition("abort", abort),
            StageDefinition("after", ok, inputs=["abort"]),
        ],
    )
    with pytest.raises(KeyboardInterrupt) as caught:
        await PipelineExecutor(log_events=False).execute(pipeline)
    assert caught.value.__context__ is None  # nothing joined it
