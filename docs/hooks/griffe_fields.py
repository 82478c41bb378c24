"""A griffe extension for the API reference: pydantic models and enums get a generated table.

A pydantic model has no ``__init__`` for mkdocstrings to show, and its fields have no docstrings,
so the reference would say nothing about them. This extension appends an ``Attributes:`` section
to the docstring of each pydantic model (every field with its type, its default, and the
``Field(description=...)`` when there is one) and of each enum (every member with its value and
the comment on its line), so the tables come from the code and cannot drift from it.

Loaded by mkdocstrings (``extensions:`` in mkdocs.yml); it changes nothing in the package.
"""

from __future__ import annotations

import ast
import re
from typing import Any

import griffe

# Bases by name (griffe reads the source; pydantic itself is not loaded): pydantic models,
# and the chat models of langdream.testing, which are pydantic models too.
_MODEL_BASES = {"BaseModel", "_Model", "BaseChatModel", "FakeReflectionModel"}
_ENUM_BASES = {"Enum", "StrEnum", "IntEnum"}
# Shown as what a user passes and gets, not as the validating alias that parses it.
_ANNOTATION_NAMES = {"NamespaceField": "Namespace"}
_FACTORIES = {"list": "[]", "dict": "{}", "set": "set()", "tuple": "()"}
_INFO = "langdream_field"


def _base_names(cls: griffe.Class) -> set[str]:
    return {str(base).rsplit(".", 1)[-1] for base in cls.bases}


def _field_call(node: ast.AST | None) -> ast.Call | None:
    value = getattr(node, "value", None)
    if isinstance(value, ast.Call):
        func = value.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name == "Field":
            return value
    return None


def _default_text(node: ast.AST | None) -> tuple[str | None, str | None]:
    """(default as source text or None when required, description from Field(...) or None)."""
    value = getattr(node, "value", None)
    if value is None:
        return None, None
    call = _field_call(node)
    if call is None:
        return ast.unparse(value), None
    keywords = {k.arg: k.value for k in call.keywords if k.arg}
    description = keywords.get("description")
    text = description.value if isinstance(description, ast.Constant) and isinstance(description.value, str) else None
    if "default" in keywords:
        return ast.unparse(keywords["default"]), text
    if call.args and not (isinstance(call.args[0], ast.Constant) and call.args[0].value is Ellipsis):
        return ast.unparse(call.args[0]), text
    factory = keywords.get("default_factory")
    if factory is not None:
        if isinstance(factory, ast.Lambda):  # default_factory=lambda: dict(DEFAULT_X)
            return ast.unparse(factory.body), text
        source = ast.unparse(factory)
        return _FACTORIES.get(source, f"{source}()"), text
    return None, text


def _trailing_comment(attr: griffe.Attribute) -> str | None:
    try:
        line = attr.lines[0] if attr.lines else ""
    except (OSError, IndexError, TypeError):
        return None
    match = re.search(r"#\s*(.+?)\s*$", line)
    return match.group(1) if match else None


def _one_line(text: str) -> str:
    return " ".join(text.split())


class FieldTables(griffe.Extension):
    """Append an ``Attributes:`` section of fields (models) or members (enums) to class docstrings."""

    def on_attribute_instance(
        self, *, node: ast.AST | griffe.ObjectNode, attr: griffe.Attribute, **kwargs: Any
    ) -> None:
        if isinstance(node, ast.AST):
            default, description = _default_text(node)
            attr.extra[_INFO]["default"] = default
            attr.extra[_INFO]["description"] = description

    def on_class_members(self, *, cls: griffe.Class, **kwargs: Any) -> None:
        bases = _base_names(cls)
        if bases & _MODEL_BASES:
            lines = self._model_lines(cls)
        elif bases & _ENUM_BASES:
            lines = self._enum_lines(cls)
        else:
            return
        if not lines:
            return
        docstring = cls.docstring.value if cls.docstring else ""
        if re.search(r"^\s*Attributes:\s*$", docstring, re.M):
            return  # written by hand
        section = "\n".join(["Attributes:", *lines])
        text = f"{docstring}\n\n{section}" if docstring else section
        if cls.docstring:
            cls.docstring.value = text
        else:
            cls.docstring = griffe.Docstring(text, parent=cls)

    def _model_lines(self, cls: griffe.Class) -> list[str]:
        lines = []
        for name, member in cls.members.items():
            if name.startswith("_") or name == "model_config" or member.is_alias or not member.is_attribute:
                continue
            if "property" in member.labels or _INFO not in member.extra:
                continue
            annotation = str(member.annotation) if member.annotation is not None else ""
            for alias, shown in _ANNOTATION_NAMES.items():
                annotation = re.sub(rf"\b{alias}\b", shown, annotation)
            default = member.extra[_INFO].get("default")
            described = member.extra[_INFO].get("description") or (member.docstring.value if member.docstring else "")
            parts = [_one_line(described).rstrip(".") + "." if described else ""]
            parts.append("Required." if default is None else f"Default: {self._default(cls, default)}.")
            type_part = f" ({annotation})" if annotation else ""
            lines.append(f"    {name}{type_part}: {' '.join(p for p in parts if p)}")
        return lines

    def _enum_lines(self, cls: griffe.Class) -> list[str]:
        lines = []
        for name, member in cls.members.items():
            if name.startswith("_") or member.is_alias or not member.is_attribute or member.value is None:
                continue
            comment = _trailing_comment(member)
            text = f"`{member.value}`" + (f": {comment}" if comment else "")
            lines.append(f"    {name}: {text}")
        return lines

    @staticmethod
    def _default(owner: griffe.Class, default: str) -> str:
        """The default as code; a ``DEFAULT_X`` constant of the module as its value and its name."""
        module = owner.module
        if re.fullmatch(r"DEFAULT_[A-Z0-9_]+", default) and default in module.members:
            value = getattr(module.members[default], "value", None)
            if value is not None:
                return f"`{_one_line(str(value))}` (`{default}`)"
        return f"`{default}`"
