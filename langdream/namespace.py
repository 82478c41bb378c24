"""Namespaces: exact tuples of strings, never prefixes.

A namespace such as ``("acme", "user-42")`` scopes every read and write. It is stored as one
canonical key (a compact JSON array) and matched by equality, so ``("acme",)`` never sees
``("acme-corp",)`` and ``("u1",)`` never sees ``("u10",)`` or ``("u1", "x")``.
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Union

from langdream.errors import NamespaceError

Namespace = tuple[str, ...]
# What users may pass: a tuple/list of labels, a "a/b" string, a template such as
# ("acme", "{user_id}") filled from config["configurable"], or a callable of the run's config.
NamespaceSpec = Union[str, Sequence[str], Callable[[Mapping[str, Any]], Sequence[str]]]

SEPARATOR = "/"


def _check_label(label: Any, where: str, *, filled: bool = False) -> str:
    if not isinstance(label, str):
        raise NamespaceError(
            f"namespace labels must be strings, got {type(label).__name__} {label!r} in {where}",
            hint="pass a tuple of strings such as ('acme', 'user-42')",
        )
    if label == "" or label.strip() != label:
        raise NamespaceError(
            f"namespace label {label!r} in {where} is empty or has surrounding spaces",
            hint="use non-empty labels without leading or trailing whitespace",
        )
    if any("\ud800" <= ch <= "\udfff" for ch in label):
        # A lone surrogate (undecodable bytes read with surrogateescape) cannot be stored.
        raise NamespaceError(
            f"namespace label {label!r} in {where} contains an invalid (surrogate) character",
            hint="use labels of valid text; decode ids from bytes with errors='replace' or encode them (hex, base64)",
        )
    if SEPARATOR in label:
        raise NamespaceError(
            f"namespace label {label!r} in {where} contains {SEPARATOR!r}",
            hint=(
                f"the config value filling it must not contain {SEPARATOR!r}: reject or encode such ids"
                if filled
                else f"split it into separate labels: {tuple(label.split(SEPARATOR))!r}"
            ),
        )
    return label


def parse_namespace(value: str | Sequence[str]) -> Namespace:
    """Normalise ``"acme/u1"``, ``["acme", "u1"]`` or ``("acme", "u1")`` to a namespace tuple."""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):
            try:
                value = json.loads(stripped)
            except json.JSONDecodeError as exc:
                raise NamespaceError(
                    f"namespace {value!r} looks like JSON but does not parse: {exc.msg}",
                    hint='write it as "acme/user-42" or ["acme", "user-42"]',
                ) from exc
        else:
            value = stripped.split(SEPARATOR) if stripped else []
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise NamespaceError(
            f"a namespace must be a string or a list of strings, not {type(value).__name__}",
            hint='write it as "acme/user-42" or ["acme", "user-42"]',
        )
    labels = tuple(_check_label(label, repr(value)) for label in value)
    if not labels:
        raise NamespaceError("a namespace needs at least one label", hint='for example "default"')
    return labels


def namespace_key(namespace: Namespace) -> str:
    """The canonical stored form, compared by equality only."""
    return json.dumps(list(namespace), ensure_ascii=False, separators=(",", ":"))


def namespace_from_key(key: str) -> Namespace:
    return tuple(json.loads(key))


def format_namespace(namespace: Namespace) -> str:
    return SEPARATOR.join(namespace)


def resolve_namespace(spec: NamespaceSpec, config: Mapping[str, Any] | None) -> Namespace:
    """Fill a namespace spec from a run's config (LangGraph ``RunnableConfig``)."""
    configurable = dict((config or {}).get("configurable") or {})
    if callable(spec):
        try:
            produced = spec(config or {})
        except Exception as exc:  # the user's function: say whose it is
            raise NamespaceError(
                f"the namespace function raised {type(exc).__name__}: {exc}",
                hint="make it return a tuple of strings for every config it is given",
            ) from exc
        return parse_namespace(produced)
    # Split the template into labels first, then fill each: a filled value that contains the
    # separator is an error, never a way into another namespace.
    labels = spec.strip().split(SEPARATOR) if isinstance(spec, str) else list(spec)
    filled = []
    for label in labels:
        if not isinstance(label, str):
            raise NamespaceError(f"namespace template labels must be strings, got {label!r}")
        fields = [name for _, name, _, _ in string.Formatter().parse(label) if name]
        missing = [name for name in fields if name not in configurable]
        if missing:
            raise NamespaceError(
                f"the namespace template {tuple(labels)!r} needs config['configurable'][{missing[0]!r}]"
                " but this run's config does not have it",
                hint=f'invoke with config={{"configurable": {{"{missing[0]}": ...}}}} or change the template',
            )
        value = label.format(**{k: str(v) for k, v in configurable.items()}) if fields else label
        filled.append(_check_label(value, f"the namespace filled from template {tuple(labels)!r}", filled=bool(fields)))
    return parse_namespace(filled)
