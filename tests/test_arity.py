"""arity_problem: a stage that cannot take (input, context) is named before any run."""

from __future__ import annotations

import functools
import inspect
from typing import Any

import pytest

from actors import PipelineContext
from actors._arity import arity_problem


async def one_arg(x: int) -> int:
    """Forgot the context."""
    return x


async def no_args() -> None:
    """Takes nothing at all."""


async def three_args(input: int, context: PipelineContext[Any], extra: int) -> int:
    """Wants a third argument nobody passes."""
    return input + extra


async def keyword_only(input: int, context: PipelineContext[Any], *, key: str) -> int:
    """Wants a keyword nobody passes."""
    return input


async def fine(input: int, context: PipelineContext[Any]) -> int:
    """The stage contract."""
    return input


async def with_defaults(
    input: int = 0, context: Any = None, extra: int = 1, *, key: str = ""
) -> int:
    """Every extra parameter has a default."""
    return input


async def variadic(*args: Any, **kwargs: Any) -> None:
    """Takes anything."""


async def positional_only(input: int, context: Any, /) -> int:
    """Positional-only parameters are called by position too."""
    return input


class Stage:
    """A stage object, once right and once wrong."""

    name = "stage"

    async def execute(self, input: int, context: PipelineContext[Any]) -> int:
        """The stage contract (self is bound)."""
        return input

    async def execute_input_only(self, input: int) -> int:
        """Forgot the context."""
        return input


class CallableStage:
    """An object with an async __call__ that forgot the context."""

    async def __call__(self, input: int) -> int:
        """One argument only."""
        return input


@pytest.mark.parametrize(
    "fn",
    [
        fine,
        with_defaults,
        variadic,
        positional_only,
        Stage().execute,
        functools.partial(three_args, extra=1),
    ],
    ids=lambda fn: getattr(fn, "__name__", type(fn).__name__),
)
def test_a_callable_taking_input_and_context_passes(fn: Any) -> None:
    """Two positional arguments fit: no problem is reported."""
    assert arity_problem(fn) is None


@pytest.mark.parametrize(
    ("fn", "problem"),
    [
        (
            one_arg,
            "one_arg(x) accepts 1 positional argument, but it is called with "
            "2 positional arguments: (input, context)",
        ),
        (
            no_args,
            "no_args() accepts 0 positional arguments, but it is called with "
            "2 positional arguments: (input, context)",
        ),
        (
            three_args,
            "three_args(input, context, extra) requires 'extra' as well, but it "
            "is called with only (input, context); give it a default",
        ),
        (
            keyword_only,
            "keyword_only(input, context, *, key) requires 'key' as well, but it "
            "is called with only (input, context); give it a default",
        ),
        (
            Stage().execute_input_only,
            "Stage.execute_input_only(input) accepts 1 positional argument, but "
            "it is called with 2 positional arguments: (input, context)",
        ),
        (
            CallableStage(),
            "CallableStage(input) accepts 1 positional argument, but it is called "
            "with 2 positional arguments: (input, context)",
        ),
    ],
    ids=["one_arg", "no_args", "three_args", "keyword_only", "method", "callable"],
)
def test_a_callable_that_cannot_take_input_and_context_is_named(
    fn: Any, problem: str
) -> None:
    """The message names the callable, its parameters and the call it gets."""
    assert arity_problem(fn) == problem


def test_several_required_extras_are_listed_together() -> None:
    """Every missing parameter is listed at once."""

    async def greedy(input: int, context: Any, a: int, *, b: int, c: int = 0) -> int:
        return input

    assert arity_problem(greedy) == (
        "greedy(input, context, a, *, b, c=...) requires 'a', 'b' as well, but it "
        "is called with only (input, context); give them defaults"
    )


def test_other_call_shapes_are_checked_too() -> None:
    """A condition is called as condition(context): one argument."""

    def condition(context: Any, extra: bool) -> bool:
        return extra

    assert arity_problem(lambda context: True, ("context",)) is None
    assert arity_problem(condition, ("context",)) == (
        "condition(context, extra) requires 'extra' as well, but it is called "
        "with only (context); give it a default"
    )


def test_an_unreadable_signature_is_not_a_problem() -> None:
    """Callables whose signature cannot be read are left to run time."""
    with pytest.raises(ValueError, match="no signature found"):
        inspect.signature(next)
    assert arity_problem(next) is None


def _logged(fn: Any) -> Any:
    """A decorator that keeps the signature visible through __wrapped__."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        return await fn(*args, **kwargs)

    return wrapper


class Methods:
    """Methods of every shape, bound below."""

    async def fine(self, input: int, context: Any) -> int:
        """Fits."""
        return input

    async def short(self, input: int) -> int:
        """One short."""
        return input

    async def extra(self, input: int, context: Any, more: int, *, key: int) -> int:
        """Wants more."""
        return input


EVERY_SHAPE = [
    fine,
    with_defaults,
    variadic,
    positional_only,
    one_arg,
    no_args,
    three_args,
    keyword_only,
    _logged(fine),
    _logged(one_arg),
    Methods().fine,
    Methods().short,
    Methods().extra,
    CallableStage(),
    functools.partial(three_args, extra=1),
    functools.partial(fine, 1),
]


@pytest.mark.parametrize("fn", EVERY_SHAPE, ids=repr)
def test_the_verdict_agrees_with_python_binding_the_call(fn: Any) -> None:
    """No problem is reported exactly when (input, context) binds to the signature."""
    try:
        inspect.signature(fn).bind("input", "context")
    except TypeError:
        binds = False
    else:
        binds = True
    assert (arity_problem(fn) is None) == binds


def test_validation_refuses_a_stage_with_the_wrong_arity() -> None:
    """The definition is refused before any run, naming the stage and the callable."""
    from actors import PipelineDefinition, StageDefinition

    # Typed as Any: mypy already refuses these as stages; validation is for
    # code no type checker saw.
    first: Any = one_arg
    second: Any = Stage().execute_input_only
    definition = PipelineDefinition(
        name="p",
        stages=[
            StageDefinition("first", first),
            StageDefinition("second", second, inputs=["first"]),
            StageDefinition("third", fine, inputs=["second"]),
        ],
    )
    assert definition.validate_pipeline() == [
        "stage 'first': one_arg(x) accepts 1 positional argument, but it is "
        "called with 2 positional arguments: (input, context)",
        "stage 'second': Stage.execute_input_only(input) accepts 1 positional "
        "argument, but it is called with 2 positional arguments: (input, context)",
    ]
