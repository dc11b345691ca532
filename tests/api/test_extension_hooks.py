"""The extension runner's stages (api/extension_runner.py) take the same hooks
as Strawberry's own, wrapped once per extension class, and run them alike."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from strawberry.extensions import SchemaExtension
from strawberry.extensions.context import (
    ExecutingContextManager,
    ExtensionContextManagerBase,
    OperationContextManager,
    ParsingContextManager,
    ValidationContextManager,
)

from careforall.api.extension_runner import ExtensionsRunner
from careforall.api.schema import schema

log: list[str] = []


class Generators(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        log.append(f"operation in {id(self)}")
        yield
        log.append(f"operation out {id(self)}")

    async def on_execute(self) -> AsyncIterator[None]:
        log.append(f"execute in {id(self)}")
        yield
        log.append(f"execute out {id(self)}")

    def on_parse(self) -> None:  # type: ignore[override]
        log.append(f"parse {id(self)}")

    async def on_validate(self) -> None:  # type: ignore[override]
        log.append(f"validate {id(self)}")


class NoHooks(SchemaExtension):
    pass


def stages(runner: ExtensionsRunner) -> dict[str, ExtensionContextManagerBase]:
    return {
        "operation": runner.operation(),
        "validation": runner.validation(),
        "parsing": runner.parsing(),
        "executing": runner.executing(),
    }


STRAWBERRY = {
    "operation": OperationContextManager,
    "validation": ValidationContextManager,
    "parsing": ParsingContextManager,
    "executing": ExecutingContextManager,
}


async def enter(stage: ExtensionContextManagerBase) -> None:
    async with stage:
        log.append("inside")


@pytest.mark.parametrize("name", list(STRAWBERRY))
def test_stages_run_the_hooks_strawberry_runs(name: str) -> None:
    extensions = [Generators(), NoHooks(), Generators()]
    ours = stages(ExtensionsRunner(None, extensions))[name]  # type: ignore[arg-type]
    theirs = STRAWBERRY[name](extensions)
    assert [(h.extension, h.is_async) for h in ours.hooks] == [
        (h.extension, h.is_async) for h in theirs.hooks
    ]
    log.clear()
    asyncio.run(enter(ours))
    by_us = list(log)
    log.clear()
    asyncio.run(enter(theirs))
    assert by_us == log
    assert "inside" in by_us and len(by_us) > 1


def test_the_schemas_extensions_get_the_same_hooks() -> None:
    extensions = schema.get_extensions()
    ours = stages(ExtensionsRunner(None, extensions))  # type: ignore[arg-type]
    for name, stage in ours.items():
        theirs = STRAWBERRY[name](extensions)
        assert [(h.extension, h.is_async) for h in getattr(stage, "hooks", [])] == [
            (h.extension, h.is_async) for h in theirs.hooks
        ], name
