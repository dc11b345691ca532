"""Strawberry's extension runner, keeping less while a subscription is open.

A subscription stays inside its `on_operation` and `on_execute` stages for as
long as it is open. Strawberry's stage keeps, besides the entered hooks, the
list it entered them from: a `contextlib.contextmanager` wrapper made for each
hook (about 600 bytes each), never used again. An `on_execute` stage that no
extension implements still makes an exit stack (about 800 bytes). Here the
list goes once the stage is entered, and an empty stage is one shared no-op.

Every stage of every request also asked each extension for its hook anew,
wrapping a generator hook with `contextlib.contextmanager` (functools.wraps
copying its attributes) each time: four stages of six extensions, a few
percent of a small mutation. A hook depends only on the extension's class,
so it is wrapped once per class and stage (`_wrapped_hook`).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable
from functools import partial
from typing import Any

from strawberry.extensions import SchemaExtension
from strawberry.extensions.context import (
    ExecutingContextManager,
    ExtensionContextManagerBase,
    OperationContextManager,
    ParsingContextManager,
    ValidationContextManager,
    WrappedHook,
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

# A stage's hook of an extension class: the wrapper that makes its context
# manager from an instance, and whether it is async; None when the class does
# not implement the stage; _ANY_HOOK when it is a plain callable (Strawberry
# wraps each one in a closure of its own, so it is left to it).
_Wrapped = tuple[Callable[[SchemaExtension], Any], bool]
_ANY_HOOK: _Wrapped = (lambda _extension: None, False)


_WRAPPED: dict[tuple[type, str], _Wrapped | None] = {}


def _wrapped_hook(extension_type: type, stage: str) -> _Wrapped | None:
    key = (extension_type, stage)
    if key not in _WRAPPED:
        # Made twice at worst, by two threads at once: both are the same.
        _WRAPPED[key] = _wrap(extension_type, stage)
    return _WRAPPED[key]


def _wrap(extension_type: type, stage: str) -> _Wrapped | None:
    """As Strawberry's `get_hook` reads the hook: from the class, unless it is
    SchemaExtension's own (no hook)."""
    hook = getattr(extension_type, stage)
    if hook is getattr(SchemaExtension, stage):
        return None
    if inspect.isgeneratorfunction(hook):
        return contextlib.contextmanager(hook), False
    if inspect.isasyncgenfunction(hook):
        return contextlib.asynccontextmanager(hook), True
    return _ANY_HOOK


class _KnownHooks(ExtensionContextManagerBase):
    """A stage whose extensions' hooks are wrapped once per class."""

    __slots__ = ()

    def get_hook(self, extension: SchemaExtension) -> WrappedHook | None:
        wrapped = _wrapped_hook(type(extension), self.HOOK_NAME)
        if wrapped is None:
            return None
        if wrapped is _ANY_HOOK:
            return super().get_hook(extension)
        make, is_async = wrapped
        return WrappedHook(
            extension=extension, hook=partial(make, extension), is_async=is_async
        )


class _Validation(_KnownHooks, ValidationContextManager):
    __slots__ = ()


class _Parsing(_KnownHooks, ParsingContextManager):
    __slots__ = ()


class _Executing(_KnownHooks, ExecutingContextManager):
    __slots__ = ()


class _Operation(_KnownHooks, OperationContextManager):
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

    def validation(self) -> Any:
        return _Validation(self.extensions)

    def parsing(self) -> Any:
        return _Parsing(self.extensions)

    def executing(self) -> Any:
        stage = _Executing(self.extensions)
        return stage if stage.hooks else _NOTHING
