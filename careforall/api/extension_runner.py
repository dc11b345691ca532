"""Strawberry's extension runner, keeping less while a subscription is open.

A subscription stays inside its `on_operation` and `on_execute` stages for as
long as it is open. Strawberry's stage keeps, besides the entered hooks, the
list it entered them from: a `contextlib.contextmanager` wrapper made for each
hook (about 600 bytes each), never used again. An `on_execute` stage that no
extension implements still makes an exit stack (about 800 bytes). Here the
list goes once the stage is entered, and an empty stage is one shared no-op.
"""

from __future__ import annotations

from typing import Any

from strawberry.extensions.context import (
    ExecutingContextManager,
    OperationContextManager,
)
from strawberry.extensions.runner import SchemaExtensionsRunner


class _Nothing:
    """A stage no extension implements: nothing to enter or leave."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        return None

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc_info: object) -> None:
        return None


_NOTHING = _Nothing()


class _Operation(OperationContextManager):
    __slots__ = ()

    def __enter__(self) -> None:
        super().__enter__()
        self.hooks = []  # entered: the exit stack alone leaves them

    async def __aenter__(self) -> None:
        await super().__aenter__()
        self.hooks = []


class ExtensionsRunner(SchemaExtensionsRunner):
    def operation(self) -> Any:
        return _Operation(self.extensions)

    def executing(self) -> Any:
        stage = ExecutingContextManager(self.extensions)
        return stage if stage.hooks else _NOTHING
