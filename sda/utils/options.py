"""One definition per setting: a typed config's field carries its command-line flag.

A field declared with :func:`option` holds its default, type (the annotation), help, choices and the flag
spellings (the first is canonical, the others are the reference scripts' aliases). Parsers are generated from
the fields (:func:`add_options`), configs are built from parsed flags (:func:`option_values`), and a
subprocess is driven through a config (:func:`to_argv`) rather than through hand-written flag lists, so a
default, a type or a flag name lives in one place. Checks stay in the config's ``__post_init__``.

Kinds of flags:

- ``value``: ``--name VALUE`` parsed with the field's type (or ``parse``);
- ``switch``: ``--name`` alone sets True (argparse ``store_true``; the default is False);
- ``bool``: ``--name True|False`` (guided-diffusion's ``str2bool``);
- ``toggle``: ``--name`` / ``--no-name`` (argparse ``BooleanOptionalAction``);
- ``positional``: a positional argument.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KINDS = ("value", "switch", "bool", "toggle", "positional")


@dataclass(frozen=True)
class Flag:
    help: str = ""
    names: tuple[str, ...] = ()  # spellings; () -> ("--<field name>",)
    choices: tuple[Any, ...] | None = None
    kind: str = "value"
    parse: Callable[[str], Any] | None = None  # the argparse type (default: from the annotation)
    required: bool = False
    nargs: str | tuple[str, Any] | None = None  # "+": several values (a tuple field); ("?", c): c if bare


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    names: Iterable[str] = (),
    choices: Iterable[Any] | None = None,
    kind: str | None = None,
    parse: Callable[[str], Any] | None = None,
    required: bool = False,
    nargs: str | tuple[str, Any] | None = None,
) -> Any:
    """A dataclass field with its command-line flag (see the module's docstring for ``kind``)."""
    if kind is None:
        kind = "bool" if isinstance(default, bool) else "value"
    if kind not in KINDS:
        raise ValueError(f"unknown flag kind {kind!r}")
    flag = Flag(help, tuple(names), tuple(choices) if choices is not None else None, kind, parse, required, nargs)
    return dataclasses.field(default=default, metadata={"flag": flag})


def flag_fields(cls: type) -> list[tuple[dataclasses.Field, Flag]]:
    """The fields of a config class that are command-line flags, in declaration order."""
    return [(f, f.metadata["flag"]) for f in dataclasses.fields(cls) if "flag" in f.metadata]


def flag_names(field: dataclasses.Field, flag: Flag) -> tuple[str, ...]:
    return flag.names or (f"--{field.name}",)


def field_default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def _base_type(annotation: Any) -> Any:
    """``int | None`` -> int; ``Path`` -> Path; a union of several types -> str (the config parses it)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return _base_type(args[0]) if len(args) == 1 else str
    return annotation if annotation in (int, float, str, Path) else str


def add_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    defaults: Mapping[str, Any] | None = None,
    skip: Iterable[str] = (),
    only: Iterable[str] | None = None,
) -> None:
    """Add a flag for every option field of ``cls`` (or ``only`` those; ``defaults`` override the fields')."""
    from sda.utils.cli import str2bool

    hints, defaults, skip = typing.get_type_hints(cls), defaults or {}, set(skip)
    only = None if only is None else set(only)
    for field, flag in flag_fields(cls):
        if field.name in skip or (only is not None and field.name not in only):
            continue
        default = defaults.get(field.name, field_default(field))
        kw: dict[str, Any] = {"help": flag.help or None}
        if flag.kind == "positional":
            if flag.nargs:  # "*" / "?": optional positionals with the field's default
                kw.update(nargs=flag.nargs, default=default)
            parser.add_argument(field.name, **kw)
            continue
        if any(a.dest == field.name for a in parser._actions):  # two configs on one parser must not share a name
            raise ValueError(f"{cls.__name__}.{field.name}: the parser already has an option stored as {field.name!r}")
        kw["dest"] = field.name
        if flag.kind == "switch":
            kw.update(action="store_true", default=bool(default))
        elif flag.kind == "toggle":
            kw.update(action=argparse.BooleanOptionalAction, default=default)
        else:
            kw["type"] = flag.parse or (str2bool if flag.kind == "bool" else _base_type(hints[field.name]))
            kw["choices"] = flag.choices
            if isinstance(flag.nargs, tuple):
                kw.update(nargs=flag.nargs[0], const=flag.nargs[1])
            elif flag.nargs:
                kw["nargs"] = flag.nargs
            if flag.required:
                kw["required"] = True
            else:
                kw["default"] = None if default is dataclasses.MISSING else default
        parser.add_argument(*flag_names(field, flag), **kw)


def parse_options(cls: type, prog: str, description: str, argv: Sequence[str] | None = None) -> Any:
    """``cls`` from the command line of ``prog``: a parser of its options only, then one ``cls(...)``."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    add_options(p, cls)
    return cls(**option_values(cls, p.parse_args(argv)))


def option_values(cls: type, args: argparse.Namespace | Mapping[str, Any], skip: Iterable[str] = ()) -> dict[str, Any]:
    """The option fields of ``cls`` read from parsed flags (the keyword arguments of its constructor)."""
    values = vars(args) if isinstance(args, argparse.Namespace) else args
    skip = set(skip)
    return {f.name: values[f.name] for f, _ in flag_fields(cls) if f.name not in skip and f.name in values}


def format_value(value: Any) -> str:
    if isinstance(value, tuple | list):
        return ",".join(map(str, value))
    return str(value)


def to_argv(cfg: Any, skip: Iterable[str] = (), everything: bool = False) -> list[str]:
    """The flags that make ``cfg`` again: positionals first, then every option that differs from its default
    (``everything``: every option that has a value), in declaration order, with the canonical spellings."""
    positional, flags, skip = [], [], set(skip)
    for field, flag in flag_fields(type(cfg)):
        if field.name in skip:
            continue
        value = getattr(cfg, field.name)
        if flag.kind == "positional":
            positional += list(map(str, value)) if flag.nargs in ("*", "+") else [format_value(value)]
            continue
        if value is None or value == () or (not everything and not flag.required and value == field_default(field)):
            continue  # None and () mean "not set" (an empty string is a value: e.g. all diffusion steps)
        name = flag_names(field, flag)[0]
        if flag.kind == "switch":
            flags += [name] if value else []
        elif flag.kind == "toggle":
            flags.append(name if value else "--no-" + name.removeprefix("--"))
        elif flag.nargs == "+":
            flags += [name, *map(str, value)]
        else:
            flags += [name, format_value(value)]
    return positional + flags
