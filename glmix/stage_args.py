"""The typed contract between the flow builder and a stage: one pydantic model per stage.

The flow builder fills a stage's model and writes ``to_argv()`` into the command; the stage reads
the same model back with ``from_argv()``. So a flag exists once, as a field: its name is the
field's (``offsets_exclude`` is ``--offsets-exclude``), its type and checks are the field's, and
a bad value is a ConfigError naming the stage and the key. Written by hand because argparse
knows nothing of pydantic and the libraries that bridge them (typer, pydantic-settings' CLI)
would bring their own conventions for lists, booleans and help that the flows would then carry.

Field kinds on the command line:
    bool                      --flag / --no-flag
    list of scalars           --flag A B C (or the flag repeated)
    list of NAME=VALUE        --flag N1=V1 --flag N2=V2 (NamedLocation items)
    dict                      --flag '<JSON, sorted keys>'
    models, lists of models   --flag '<compact JSON>'
    anything else             --flag VALUE (pydantic converts)

Flags come in the fields' order (a config's fields before those a stage's arguments add).
"""

from __future__ import annotations

import argparse
import json
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from glmix.errors import ConfigError
from glmix.settings import Settings

FieldKind = Literal["bool", "list", "json", "scalar"]


class _Location:
    """Marks a field (or the items of a list field) holding a local path or a URI, so that
    ``StageArgs.resolved`` can anchor relative paths where the stage runs (Azkaban's working
    directory: the project). ``named``: the value is ``NAME=...=PATH`` (the scoring job's models)."""

    def __init__(self, named: bool = False) -> None:
        self.named = named


Location = Annotated[str, _Location()]
NamedLocation = Annotated[str, _Location(named=True)]


def _anchored(value: str, base: Path, named: bool) -> str:
    head, sep, path = value.rpartition("=") if named else ("", "", value)
    if "://" in path or Path(path).is_absolute():
        return value
    return f"{head}{sep}{(base / path).resolve()}"


def _location_marker(field: FieldInfo) -> _Location | None:
    """The marker on a field of type Location, list[Location] or their optional forms."""
    candidates = [field.annotation, *field.metadata]
    while candidates:
        item = candidates.pop()
        if isinstance(item, _Location):
            return item
        candidates += [a for a in get_args(item) if a is not type(None)]
    return None


def _kind(field: FieldInfo) -> FieldKind:
    annotation = field.annotation
    options = [a for a in get_args(annotation) if a is not type(None)] \
        if get_origin(annotation) in (Union, types.UnionType) else [annotation]
    if options == [bool]:
        return "bool"
    for option in options:
        origin, inner = get_origin(option), get_args(option)
        if origin is dict or (isinstance(option, type) and issubclass(option, BaseModel)):
            return "json"
        if origin in (list, tuple):
            element = inner[0] if inner else str
            if get_origin(element) is dict or (isinstance(element, type) and issubclass(element, BaseModel)):
                return "json"
            return "list"
    return "scalar"


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


class StageArgs(Settings):
    """Base of every stage's arguments. ``PROG`` names the stage in errors and ``--help``."""

    PROG: ClassVar[str] = "stage"

    def to_argv(self) -> list[str]:
        """The command-line words of this model: unset optional values and defaults left out."""
        words: list[str] = []
        values = self.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
        for name, field in type(self).model_fields.items():
            if name not in values:
                continue
            value, kind = values[name], _kind(field)
            if kind == "bool":
                words.append(flag(name) if value else "--no-" + name.replace("_", "-"))
            elif kind == "list" and getattr(_location_marker(field), "named", False):
                for item in value:   # NAME=... items each with its flag, as spark-submit's --conf
                    words += [flag(name), str(item)]
            elif kind == "list":
                if value:
                    words += [flag(name), *(str(v) for v in value)]
            elif isinstance(getattr(self, name), BaseModel):   # a model: compact, in field order, its
                model = getattr(self, name)                     # None values kept (None may be meant)
                words += [flag(name), json.dumps(model.model_dump(mode="json", exclude_defaults=True),
                                                 separators=(",", ":"))]
            elif isinstance(value, dict):   # a free-form mapping, e.g. a model's arguments
                words += [flag(name), json.dumps(value, sort_keys=True)]
            elif kind == "json":            # lists of models: compact, in field order
                words += [flag(name), json.dumps(value, separators=(",", ":"))]
            else:
                words += [flag(name), str(value)]
        return words

    def resolved(self, base: Path) -> Self:
        """Relative local paths of the location fields made absolute against ``base``."""
        changes: dict[str, Any] = {}
        for name, field in type(self).model_fields.items():
            marker, value = _location_marker(field), getattr(self, name)
            if marker is None or value is None:
                continue
            if isinstance(value, str):
                changes[name] = _anchored(value, base, marker.named)
            else:
                changes[name] = [_anchored(v, base, marker.named) for v in value]
        return self.model_copy(update=changes)

    @classmethod
    def parser(cls, description: str | None = None) -> argparse.ArgumentParser:
        """An argparse parser for the fields (every value kept as text; pydantic validates)."""
        parser = argparse.ArgumentParser(prog=cls.PROG, description=description,
                                         formatter_class=argparse.RawDescriptionHelpFormatter)
        for name, field in cls.model_fields.items():
            kind = _kind(field)
            options: dict[str, Any] = {"dest": name, "default": None, "help": field.description}
            if kind == "bool":
                options["action"] = argparse.BooleanOptionalAction
            elif kind == "list":
                options.update(nargs="+", action="extend")   # --flag A B, or --flag A --flag B
            if field.is_required():
                options["required"] = True
            parser.add_argument(flag(name), **options)
        return parser

    @classmethod
    def from_namespace(cls, namespace: argparse.Namespace) -> Self:
        values: dict[str, Any] = {}
        for name, field in cls.model_fields.items():
            value = getattr(namespace, name, None)
            if value is None:
                continue
            if _kind(field) == "json":
                try:
                    value = json.loads(value)
                except json.JSONDecodeError as exc:
                    raise ConfigError(f"{cls.PROG}: {flag(name)}: not JSON ({exc})") from None
            values[name] = value
        return cls.parse(values, where=cls.PROG)

    @classmethod
    def from_argv(cls, argv: Sequence[str] | None = None, description: str | None = None) -> Self:
        """Parse a command line (``None``: this process's); usage errors exit as argparse does."""
        return cls.from_namespace(cls.parser(description).parse_args(argv))
