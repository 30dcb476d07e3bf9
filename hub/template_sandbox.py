"""The Jinja2 sandbox user-written templates run in: immutable, and bounded in size and time.

Marketers write the templates, one letter is rendered per recipient, and the
renders share objects (the company details, a worker's memory). So:

- ImmutableSandboxedEnvironment: a template cannot change a dict, list or set
  it is given (``{{ company.update(...) }}``), so one recipient's data never
  leaks into the next recipient's letter; :func:`render` also hands every
  render fresh copies of the containers in its context.
- Bounded: a template cannot build a value or an output larger than
  MAX_OUTPUT characters, loop more than MAX_LOOP_STEPS times, or run longer
  than MAX_RENDER_SECONDS. ``{{ 'a' * 400000000 }}``, nested loops over big
  ranges, a string doubled in a loop, ``'x'|center(10**9)`` all stop with a
  clear error before they allocate the memory they ask for. The checks sit in
  the sandbox's own interception points (call, call_binop) and in a code
  generator that routes every loop, concatenation and piece of output
  through a counter.

Normal templates never come near these limits: a long HTML letter is tens of
kilobytes and renders in milliseconds.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import functools
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from hub import formats
from hub.i18n import gettext as _
from hub.i18n import ngettext

# Characters in one rendered part, and in any one value built while rendering.
MAX_OUTPUT = 1_000_000
# Characters written in all, counting what macros and {% set %} blocks capture.
MAX_PRODUCED = 5 * MAX_OUTPUT
# Loop iterations in one render, all loops together.
MAX_LOOP_STEPS = 1_000_000
# Wall-clock time of one render.
MAX_RENDER_SECONDS = 5.0
# Size of an integer a template may compute (2 ** 100000 has 30103 digits).
MAX_INT_BITS = 100_000


class TemplateLimitError(SecurityError):
    """A template asked for more output, memory or time than a letter can need."""


@dataclass
class _Budget:
    deadline: float
    steps: int = 0
    produced: int = 0
    checks: int = 0


_budget: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("hub_template_budget", default=None)


def _n(number: int) -> str:
    return formats.number(number)


def _too_slow() -> TemplateLimitError:
    return TemplateLimitError(_("the template takes longer than %(seconds)s s to render; simplify its loops",
                                seconds=f"{MAX_RENDER_SECONDS:g}"))


def _check_time() -> None:
    """Stop a render past its deadline; the clock is read on every 16th call, which keeps this cheap."""
    budget = _budget.get()
    if budget is not None:
        budget.checks += 1
        if not budget.checks & 15 and time.monotonic() > budget.deadline:
            raise _too_slow()


def _too_big(size: int) -> TemplateLimitError:
    return TemplateLimitError(ngettext(
        "the template builds a text of %(num)s character (at most %(limit)s are allowed)",
        "the template builds a text of %(num)s characters (at most %(limit)s are allowed)",
        size, num=_n(size), limit=_n(MAX_OUTPUT)))


def _need(size: Any) -> None:
    """Refuse to build a value of `size` characters or items, before it is built."""
    if isinstance(size, int) and size > MAX_OUTPUT:
        raise _too_big(size)


def _int_too_big() -> TemplateLimitError:
    return TemplateLimitError(_("the template computes a number larger than 2**%(bits)s", bits=MAX_INT_BITS))


def _sized(value: Any) -> Any:
    """The value, if it is not larger than a letter can use."""
    if isinstance(value, (str, bytes, list, tuple, dict, set, frozenset)):
        _need(len(value))
    elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        raise _int_too_big()
    return value


def _length(value: Any) -> int:
    try:
        return len(value)
    except TypeError:
        return len(str(value))


# --- estimates for the operations that can grow a value far beyond their inputs -------------

_PRINTF_FIELD = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_FORMAT_FIELD = re.compile(r"\{([^{}]*)\}")


def _check_printf(fmt: str, values: Any) -> None:
    star = False
    for width, precision in _PRINTF_FIELD.findall(fmt):
        for number in (width, precision):
            if number == "*":
                star = True
            elif number:
                _need(int(number))
    if star:
        items = values if isinstance(values, tuple) else (values,)
        for item in items:
            _need(item if isinstance(item, int) else 0)


def _check_format(fmt: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    for field in _FORMAT_FIELD.findall(fmt):
        _, _, spec = field.partition(":")
        for number in re.findall(r"\d+", spec):
            _need(int(number))
    if re.search(r"\{[^{}]*:[^{}]*\{", fmt):  # a width taken from an argument: {:>{}}
        for item in (*args, *kwargs.values()):
            _need(item if isinstance(item, int) else 0)


def _check_replace(s: Any, old: Any, new: Any, count: Any = None) -> None:
    s, old, new = str(s), str(old), str(new)
    found = (s.count(old) if old else len(s) + 1)
    if isinstance(count, int) and count >= 0:
        found = min(found, count)
    _need(len(s) + found * max(len(new) - len(old), 0))


def _check_join(items: list[Any], separator: Any) -> None:
    _need(len(str(separator)) * max(len(items) - 1, 0) + sum(_length(item) for item in items))


def _check_width(s: Any, width: Any = 0, *_: Any, **__: Any) -> None:
    if isinstance(width, int):
        _need(width)


def _check_indent(s: Any, width: Any = 4, *_: Any, **__: Any) -> None:
    text = str(s)
    prefix = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    _need(len(text) + (text.count("\n") + 1) * prefix)


def _check_wordwrap(s: Any, width: Any = 79, break_long_words: Any = True, wrapstring: Any = None,
                    *_: Any, **__: Any) -> None:
    text = str(s)
    wrap = len(str(wrapstring)) if wrapstring is not None else 1
    lines = len(text) // max(width, 1) + text.count(" ") + 1 if isinstance(width, int) else len(text) + 1
    _need(len(text) + lines * wrap)


def _check_count(value: Any, count: Any = 0, *_: Any, **__: Any) -> None:
    if isinstance(count, int):
        _need(count)


def _check_tojson(value: Any, indent: Any = None, *_: Any, **__: Any) -> None:
    if isinstance(indent, int):
        _need(indent * 1000)  # every nested line repeats the indent


# filter name → check of its arguments (after the one Jinja passes itself: environment, eval context)
_FILTER_CHECKS: dict[str, Callable[..., None]] = {
    "center": _check_width,
    "indent": _check_indent,
    "wordwrap": _check_wordwrap,
    "batch": _check_count,
    "slice": _check_count,
    "truncate": _check_count,
    "tojson": _check_tojson,
    "format": lambda value, *args, **kwargs: _check_printf(str(value), args or tuple(kwargs.values())),
    "replace": lambda s, old="", new="", count=None, *_, **__: _check_replace(s, old, new, count),
}

# str methods a template may call that can grow a value far beyond their inputs
_STR_METHOD_CHECKS: dict[str, Callable[..., None]] = {
    "center": lambda s, width=0, *_: _need(width if isinstance(width, int) else 0),
    "ljust": lambda s, width=0, *_: _need(width if isinstance(width, int) else 0),
    "rjust": lambda s, width=0, *_: _need(width if isinstance(width, int) else 0),
    "zfill": lambda s, width=0, *_: _need(width if isinstance(width, int) else 0),
    "expandtabs": lambda s, tabsize=8, **__: _need(len(s) + s.count("\t") * (tabsize if isinstance(tabsize, int)
                                                                              else 8)),
    "replace": lambda s, old="", new="", count=-1, **__: _check_replace(s, old, new, count),
}


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    check = _FILTER_CHECKS.get(name)
    passes_arg = getattr(func, "jinja_pass_arg", None) is not None

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if check is not None:
            check(*(args[1:] if passes_arg else args), **kwargs)
        if name == "join":
            items = list(args[1] if passes_arg else args[0])
            _check_join(items, (args[2] if len(args) > 2 else kwargs.get("d", "")) if passes_arg else "")
            args = (args[0], items, *args[2:]) if passes_arg else (items, *args[1:])
        return _sized(func(*args, **kwargs))

    return guarded


# --- the environment ------------------------------------------------------------------------

class _LimitedCodeGenerator(CodeGenerator):
    """Jinja's code generator, with loops, concatenation and output counted at run time."""

    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        for loop in node.find_all(nodes.For):
            loop.iter = nodes.Call(nodes.EnvironmentAttribute("hub_loop"), [loop.iter], [], None, None,
                                   lineno=loop.iter.lineno)
        super().visit_Template(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.hub_sized(")
        super().visit_Concat(node, frame)
        self.write(")")

    # What goes straight to the template's output is counted by render() as it streams out; what a
    # macro, a {% set %} block or a {% call %} captures into a buffer is counted here.
    _buffered = False

    def visit_Output(self, node: nodes.Output, frame: Frame) -> None:
        outer, self._buffered = self._buffered, frame.buffer is not None
        try:
            super().visit_Output(node, frame)
        finally:
            self._buffered = outer

    def _output_const_repr(self, group: Iterable[Any]) -> str:
        text = super()._output_const_repr(group)
        return f"environment.hub_written({text})" if self._buffered else text

    def _output_child_pre(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        if self._buffered:
            self.write("environment.hub_written(")
        super()._output_child_pre(node, frame, finalize)

    def _output_child_post(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        super()._output_child_post(node, frame, finalize)
        if self._buffered:
            self.write(")")


# Every attribute a plain dict has (its methods and dunders): `d.name` for any other name can only be the key.
_DICT_ATTRIBUTES = frozenset(dir(dict))


class LimitedSandbox(ImmutableSandboxedEnvironment):
    """ImmutableSandboxedEnvironment whose templates cannot exhaust memory or time (see the module)."""

    code_generator_class = _LimitedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.globals.pop("lipsum", None)  # lipsum(10**9) would write a billion paragraphs
        self.filters = _GuardedFilters(self.filters)

    # called from compiled templates ---------------------------------------------------------

    def hub_loop(self, iterable: Any) -> Iterator[Any]:
        return _counted(iterable)

    def hub_sized(self, value: Any) -> Any:
        return _sized(value)

    def hub_written(self, text: Any) -> Any:
        budget = _budget.get()
        if budget is not None:
            budget.produced += len(text)
            if budget.produced > MAX_PRODUCED:
                raise TemplateLimitError(_("the template writes more than %(limit)s characters (counting macros "
                                           "and set blocks)", limit=_n(MAX_PRODUCED)))
        return text

    # the sandbox's interception points --------------------------------------------------------

    def getattr(self, obj: Any, attribute: str) -> Any:
        """`contact.first_name` on a plain dict: its key, read first.

        The sandbox asks the object for an attribute first and reads the key
        only after the AttributeError that every dict raises: a raised and
        caught exception for each of the thirty or so names a letter prints.
        A name no dict has as an attribute can only end up as that key, so it
        is read at once; anything else (a missing key, `items`, other types)
        takes the sandbox's own way, checks included.
        """
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except (KeyError, TypeError):
                pass
        return super().getattr(obj, attribute)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _check_time()
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(times, int) and not isinstance(seq, (int, float)) and hasattr(seq, "__len__"):
                    _need(len(seq) * times)
            if isinstance(left, int) and isinstance(right, int) and \
                    left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise _int_too_big()
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and \
                    right * abs(left).bit_length() > MAX_INT_BITS:
                raise _int_too_big()
        elif operator == "%" and isinstance(left, str):
            _check_printf(left, right)
        return _sized(super().call_binop(context, operator, left, right))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _check_time()
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            check = _STR_METHOD_CHECKS.get(getattr(__obj, "__name__", ""))
            if check is not None:
                check(owner, *args, **kwargs)
            elif getattr(__obj, "__name__", "") == "join" and args:
                items = list(args[0])
                _check_join(items, owner)
                args = (items, *args[1:])
        return _sized(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt = value.__self__

        @functools.wraps(wrapped)
        def checked(*args: Any, **kwargs: Any) -> str:
            _check_format(fmt, args, kwargs)
            return _sized(wrapped(*args, **kwargs))

        return checked


class _GuardedFilters(dict[str, Callable[..., Any]]):
    """The filter table; a filter added later (by a module or plugin) is guarded as well."""

    def __init__(self, filters: Mapping[str, Callable[..., Any]]) -> None:
        super().__init__()
        self.update(filters)

    def __setitem__(self, name: str, func: Callable[..., Any]) -> None:
        super().__setitem__(name, _guard_filter(name, func))

    def update(self, *args: Any, **kwargs: Any) -> None:
        for name, func in dict(*args, **kwargs).items():
            self[name] = func


def _counted(iterable: Any) -> Iterator[Any]:
    budget = _budget.get()
    for item in iterable:
        if budget is not None:
            budget.steps += 1
            if budget.steps > MAX_LOOP_STEPS:
                raise TemplateLimitError(_("the template's loops take more than %(limit)s steps",
                                           limit=_n(MAX_LOOP_STEPS)))
            if not budget.steps & 1023 and time.monotonic() > budget.deadline:
                raise _too_slow()
        yield item


# Values a render cannot change, passed on as they are (fresh).
_UNCHANGING = frozenset({str, int, float, bool, type(None), Decimal, dt.date, dt.datetime})


# --- rendering --------------------------------------------------------------------------------

def fresh(value: Any) -> Any:
    """Copies of the dicts, lists and sets in a context, so no render can touch another's objects."""
    kind = type(value)
    if kind in _UNCHANGING:  # most of a context: answered without the Mapping check, the slow one
        return value
    if kind is dict:
        return {key: fresh(item) for key, item in value.items()}
    if isinstance(value, Mapping):
        return {key: fresh(item) for key, item in value.items()}
    if isinstance(value, list):
        return [fresh(item) for item in value]
    if isinstance(value, (set, frozenset)):
        return set(value)
    return value


def render(template: Any, context: Mapping[str, Any]) -> str:
    """Render a compiled template within the limits, streaming and counting its output."""
    budget = _Budget(deadline=time.monotonic() + MAX_RENDER_SECONDS)
    token = _budget.set(budget)
    try:
        parts: list[str] = []
        size = 0
        for chunk in template.generate(context):
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise TemplateLimitError(_("the template outputs more than %(limit)s characters", limit=_n(MAX_OUTPUT)))
            parts.append(chunk)
        budget.produced += size
        return "".join(parts)
    finally:
        _budget.reset(token)
