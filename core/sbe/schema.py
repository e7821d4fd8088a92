"""SBE schema XML -> frozen layouts with precomputed offsets.

Layouts are read from CME's own schema files (bundled in ``core/sbe/schemas``),
never typed by hand. Both namespace spellings of the root element (``ns2:`` as in
CME's files, ``sbe:`` as in the FIX reference) load, because XML namespaces are
resolved by URI and tag prefixes are ignored.

API
---
``load_schema(path) -> Schema``
    Parse one XML file (cached per resolved path).
``bundled_schemas() -> tuple[Schema, ...]``
    Every schema shipped with the package, sorted by (id, version).
``select_schema(schema_id, version, template_id) -> Schema | None``
    The bundled schema to decode a message whose SBE header says
    (schemaId, version, templateId): among bundled schemas with that id that
    define the template, the one with the smallest version >= ``version``;
    if none, the newest one below. So MDP v10/v11 packets decode with v12,
    legacy templates (27, 32, 42, ...) with v5..v9. ``None`` if no schema fits.
``bundled_schema(schema_id, version) -> Schema``
    Exactly that bundled (id, version); KeyError otherwise.
``bundled_index() -> tuple[(id, version, frozenset(template ids), path), ...]``
    What each bundled file holds, from a quick scan (no layout work); lets
    ``select_schema`` parse only the files it picks.

Layout objects (all frozen dataclasses)
---------------------------------------
``Schema``: id, version, package, byte_order ("little"/"big"), description,
    header (``CompositeLayout`` of ``messageHeader``), messages
    ``{template_id: MessageLayout}``, path. ``schema.message(name_or_id)``.

``MessageLayout``: id, name, block_length (root block as declared),
    since_version, fields, groups, var_data, description.
    ``msg.field(name)``, ``msg.group(name)``.

``GroupLayout``: name, id, dimension (``CompositeLayout`` read from the
    schema's ``dimensionType`` composite, e.g. ``groupSize`` = blockLength u16 +
    numInGroup u8, size 3, or ``groupSize8Byte`` = blockLength u16, numInGroup
    u8 at offset 7, size 8), block_length, fields, groups (nested), var_data,
    since_version. ``group.dimension.member("numInGroup").offset`` etc.

``FieldLayout`` (a root/group field, or a member of a composite):
    name, id, offset (bytes from the start of the enclosing block; for a
    composite member, from the start of the composite), size (bytes on the
    wire, 0 for constants), primitive ('int64', 'uint8', 'char', ...; for
    enums/sets their encoding primitive; '' for composites), dtype (numpy
    dtype with the schema's byte order; ``S<length>`` for char arrays; None for
    composites), length (array length, 1 for scalars), presence ('required',
    'optional', 'constant'), null_value (int: the raw wire integer meaning null,
    explicit nullValue or the SBE default of the primitive; chars as their
    byte value; float NaN for float/double; None when the field is required),
    constant (the value of a constant: int, or str for chars; None otherwise),
    since_version, kind ('primitive', 'enum', 'set', 'composite'), type_name,
    semantic_type, members (composite members, each a FieldLayout with its own
    offset/primitive/presence/null/constant), enum_values ``{name: raw}``
    (raw is a 1-char str for char enums, int otherwise), set_choices
    ``{name: bit}``, mantissa (for a price-like composite whose exponent is a
    constant: the mantissa member) and exponent (that constant, e.g. -9 for
    PRICE9, -7 for the legacy PRICE), and ``scalar_member``: the only
    non-constant member of a composite, if there is exactly one.

``DataLayout`` (var data): name, id, since_version, type_name, length
    (``FieldLayout`` of the length prefix), data_primitive ('char' or 'uint8').

``CompositeLayout``: name, size, members; ``member(name)``.

The SBE defaults used for nulls when a type has no nullValue: char 0, int8
-128, uint8 255, int16 -32768, uint16 65535, int32 -2**31, uint32 2**32-1, int64
-2**63, uint64 2**64-1, float/double NaN. CME's types carry explicit values
(Int32NULL = INT32_MAX, PRICENULL9 mantissa = INT64_MAX), which win.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "PRIMITIVE_SIZES",
    "CompositeLayout",
    "DataLayout",
    "FieldLayout",
    "GroupLayout",
    "MessageLayout",
    "Schema",
    "SchemaError",
    "bundled_index",
    "bundled_schema",
    "bundled_schemas",
    "load_schema",
    "select_schema",
]

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"

PRIMITIVE_SIZES: dict[str, int] = {
    "char": 1,
    "int8": 1,
    "uint8": 1,
    "int16": 2,
    "uint16": 2,
    "int32": 4,
    "uint32": 4,
    "int64": 8,
    "uint64": 8,
    "float": 4,
    "double": 8,
}

_NUMPY_CODES: dict[str, str] = {
    "char": "S1",
    "int8": "i1",
    "uint8": "u1",
    "int16": "i2",
    "uint16": "u2",
    "int32": "i4",
    "uint32": "u4",
    "int64": "i8",
    "uint64": "u8",
    "float": "f4",
    "double": "f8",
}

_DEFAULT_NULLS: dict[str, int | float] = {
    "char": 0,
    "int8": -(2**7),
    "uint8": 2**8 - 1,
    "int16": -(2**15),
    "uint16": 2**16 - 1,
    "int32": -(2**31),
    "uint32": 2**32 - 1,
    "int64": -(2**63),
    "uint64": 2**64 - 1,
    "float": math.nan,
    "double": math.nan,
}


class SchemaError(ValueError):
    """The schema XML is malformed or uses something this loader cannot lay out."""


# --------------------------------------------------------------------------
# Layout dataclasses
# --------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class FieldLayout:
    name: str
    id: int
    offset: int
    size: int
    primitive: str
    dtype: np.dtype | None
    length: int
    presence: str
    null_value: int | float | None
    constant: int | str | None
    since_version: int
    kind: str
    type_name: str
    semantic_type: str = ""
    members: tuple[FieldLayout, ...] = ()
    enum_values: dict[str, int | str] = field(default_factory=dict)
    set_choices: dict[str, int] = field(default_factory=dict)
    mantissa: FieldLayout | None = None
    exponent: int | None = None
    scalar_member: FieldLayout | None = None

    @property
    def is_constant(self) -> bool:
        return self.presence == "constant"

    @property
    def is_char(self) -> bool:
        return self.primitive == "char"

    def member(self, name: str) -> FieldLayout:
        for m in self.members:
            if m.name == name:
                return m
        raise KeyError(f"{self.type_name} has no member {name!r}")


@dataclass(frozen=True, eq=False)
class CompositeLayout:
    name: str
    size: int
    members: tuple[FieldLayout, ...]

    def member(self, name: str) -> FieldLayout:
        for m in self.members:
            if m.name == name:
                return m
        raise KeyError(f"composite {self.name} has no member {name!r}")


@dataclass(frozen=True, eq=False)
class DataLayout:
    name: str
    id: int
    since_version: int
    type_name: str
    length: FieldLayout  # the length prefix (offset 0 in the composite)
    data_primitive: str
    header_size: int  # bytes before the data (the offset of the varData member)


@dataclass(frozen=True, eq=False)
class GroupLayout:
    name: str
    id: int
    dimension: CompositeLayout
    block_length: int
    fields: tuple[FieldLayout, ...]
    groups: tuple[GroupLayout, ...]
    var_data: tuple[DataLayout, ...]
    since_version: int

    def field(self, name: str) -> FieldLayout:
        return _find(self.fields, name, self.name)

    def group(self, name: str) -> GroupLayout:
        return _find(self.groups, name, self.name)


@dataclass(frozen=True, eq=False)
class MessageLayout:
    id: int
    name: str
    block_length: int
    since_version: int
    fields: tuple[FieldLayout, ...]
    groups: tuple[GroupLayout, ...]
    var_data: tuple[DataLayout, ...]
    description: str = ""
    semantic_type: str = ""

    def field(self, name: str) -> FieldLayout:
        return _find(self.fields, name, self.name)

    def group(self, name: str) -> GroupLayout:
        return _find(self.groups, name, self.name)


@dataclass(frozen=True, eq=False)
class Schema:
    id: int
    version: int
    package: str
    byte_order: str  # "little" or "big"
    description: str
    header: CompositeLayout
    messages: dict[int, MessageLayout]
    path: str = ""

    def message(self, key: int | str) -> MessageLayout:
        if isinstance(key, int):
            return self.messages[key]
        for m in self.messages.values():
            if m.name == key:
                return m
        raise KeyError(f"schema {self.id} v{self.version} has no message {key!r}")

    def __repr__(self) -> str:
        return (
            f"Schema(id={self.id}, version={self.version}, package={self.package!r}, "
            f"messages={len(self.messages)}, path={Path(self.path).name!r})"
        )


def _find(items: tuple[Any, ...], name: str, owner: str) -> Any:
    for it in items:
        if it.name == name:
            return it
    raise KeyError(f"{owner} has no {name!r}")


# --------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------
def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1].split(":")[-1]


def _int(s: str) -> int:
    return int(s.strip(), 0) if s.strip().lower().startswith("0x") else int(s.strip())


def _parse_value(primitive: str, text: str, length: int) -> int | float | str:
    text = text or ""
    if primitive == "char":
        return text.strip() or text
    if primitive in ("float", "double"):
        return float(text)
    return _int(text)


def _dtype(primitive: str, length: int, order: str) -> np.dtype:
    if primitive == "char":
        return np.dtype(f"S{max(length, 1)}")
    code = _NUMPY_CODES[primitive]
    dt = np.dtype(order + code)
    return np.dtype((dt, (length,))) if length > 1 else dt


class _Parser:
    def __init__(self, root: ET.Element, path: str) -> None:
        self.root = root
        self.path = path
        order = root.get("byteOrder", "littleEndian")
        self.byte_order = "big" if order == "bigEndian" else "little"
        self.np_order = ">" if self.byte_order == "big" else "<"
        self.types: dict[str, ET.Element] = {}
        for types in root:
            if _local(types.tag) != "types":
                continue
            for el in types:
                name = el.get("name")
                if name is None:
                    raise SchemaError(f"{path}: unnamed type element <{_local(el.tag)}>")
                self.types[name] = el
        self._composites: dict[int, CompositeLayout] = {}

    # -- type resolution ---------------------------------------------------
    def type_element(self, name: str) -> ET.Element:
        el = self.types.get(name)
        if el is not None:
            return el
        if name in PRIMITIVE_SIZES:  # SBE lets a field name a primitive type directly
            el = self.types[name] = ET.Element("type", name=name, primitiveType=name)
            return el
        raise SchemaError(f"{self.path}: unknown type {name!r}")

    def _encoding(self, enc: str) -> tuple[str, str, int | float | None]:
        """encodingType of an enum/set -> (primitive, presence, null_value)."""
        if enc in PRIMITIVE_SIZES:
            return enc, "required", None
        el = self.type_element(enc)
        if _local(el.tag) != "type":
            raise SchemaError(f"{self.path}: encodingType {enc!r} is not a simple type")
        prim = el.get("primitiveType", "")
        presence = el.get("presence", "required")
        null = self._null_of(el, prim) if presence == "optional" else None
        return prim, presence, null

    def _null_of(self, el: ET.Element, prim: str) -> int | float:
        nv = el.get("nullValue")
        if nv is None:
            return _DEFAULT_NULLS[prim]
        if prim == "char":
            return ord(nv) if len(nv) == 1 and not nv.isdigit() else _int(nv)
        if prim in ("float", "double"):
            return float(nv)
        return _int(nv)

    def _enum_values(self, el: ET.Element, prim: str) -> dict[str, int | str]:
        vals: dict[str, int | str] = {}
        for vv in el:
            if _local(vv.tag) != "validValue":
                continue
            text = (vv.text or "").strip()
            vals[vv.get("name", "")] = text[:1] if prim == "char" else _int(text)
        return vals

    def _resolve_value_ref(self, ref: str) -> int | str:
        enum_name, _, value_name = ref.partition(".")
        el = self.type_element(enum_name)
        prim, _, _ = self._encoding(el.get("encodingType", ""))
        vals = self._enum_values(el, prim)
        if value_name not in vals:
            raise SchemaError(f"{self.path}: valueRef {ref!r} not found")
        return vals[value_name]

    def layout_type(
        self,
        type_name: str,
        *,
        name: str,
        fid: int,
        offset: int,
        since_version: int,
        semantic_type: str = "",
        presence_override: str | None = None,
        value_ref: str | None = None,
        el: ET.Element | None = None,
    ) -> FieldLayout:
        """Lay out a field (or composite member) whose encoding is ``type_name`` or ``el``."""
        if el is None:
            el = self.type_element(type_name)
        tag = _local(el.tag)
        o = self.np_order
        if tag == "type":
            prim = el.get("primitiveType", "")
            if prim not in PRIMITIVE_SIZES:
                raise SchemaError(f"{self.path}: type {type_name!r} has primitive {prim!r}")
            length = int(el.get("length", "1"))
            presence: str = presence_override or el.get("presence") or "required"
            constant: int | str | None = None
            null: int | float | None = None
            vref = value_ref or el.get("valueRef")
            if presence == "constant":
                if vref:
                    constant = self._resolve_value_ref(vref)
                else:
                    cv = _parse_value(prim, el.text or "", length)
                    constant = cv if not isinstance(cv, float) else None
                size = 0
            else:
                size = PRIMITIVE_SIZES[prim] * length
                if presence == "optional":
                    null = self._null_of(el, prim)
            return FieldLayout(
                name=name,
                id=fid,
                offset=offset,
                size=size,
                primitive=prim,
                dtype=_dtype(prim, length, o),
                length=length,
                presence=presence,
                null_value=null,
                constant=constant,
                since_version=since_version,
                kind="primitive",
                type_name=type_name,
                semantic_type=semantic_type or el.get("semanticType", ""),
            )
        if tag == "enum":
            prim, enc_presence, null = self._encoding(el.get("encodingType", ""))
            vals = self._enum_values(el, prim)
            presence = presence_override or enc_presence
            constant = None
            size = PRIMITIVE_SIZES[prim]
            if presence == "constant":
                if not value_ref:
                    raise SchemaError(f"{self.path}: constant enum field {name!r} needs valueRef")
                constant = self._resolve_value_ref(value_ref)
                size, null = 0, None
            return FieldLayout(
                name=name,
                id=fid,
                offset=offset,
                size=size,
                primitive=prim,
                dtype=_dtype(prim, 1, o),
                length=1,
                presence=presence,
                null_value=null if presence == "optional" else None,
                constant=constant,
                since_version=since_version,
                kind="enum",
                type_name=type_name,
                semantic_type=semantic_type or el.get("semanticType", ""),
                enum_values=vals,
            )
        if tag == "set":
            prim, enc_presence, null = self._encoding(el.get("encodingType", ""))
            choices = {
                c.get("name", ""): _int(c.text or "0") for c in el if _local(c.tag) == "choice"
            }
            return FieldLayout(
                name=name,
                id=fid,
                offset=offset,
                size=PRIMITIVE_SIZES[prim],
                primitive=prim,
                dtype=_dtype(prim, 1, o),
                length=1,
                presence=enc_presence,
                null_value=null,
                constant=None,
                since_version=since_version,
                kind="set",
                type_name=type_name,
                semantic_type=semantic_type or el.get("semanticType", ""),
                set_choices=choices,
            )
        if tag == "composite":
            comp = self.composite(el)
            presence = presence_override or "required"
            non_const = [m for m in comp.members if not m.is_constant]
            mant = exp = None
            names = {m.name: m for m in comp.members}
            if "mantissa" in names and "exponent" in names and names["exponent"].is_constant:
                mant = names["mantissa"]
                ev = names["exponent"].constant
                exp = int(ev) if ev is not None else None
            if presence == "optional" or (
                len(non_const) == 1 and non_const[0].presence == "optional"
            ):
                presence = "optional"
            return FieldLayout(
                name=name,
                id=fid,
                offset=offset,
                size=comp.size,
                primitive="",
                dtype=None,
                length=1,
                presence=presence,
                null_value=None,
                constant=None,
                since_version=since_version,
                kind="composite",
                type_name=type_name,
                semantic_type=semantic_type or el.get("semanticType", ""),
                members=comp.members,
                mantissa=mant,
                exponent=exp,
                scalar_member=non_const[0] if len(non_const) == 1 else None,
            )
        if tag == "ref":
            return self.layout_type(
                el.get("type", ""),
                name=name,
                fid=fid,
                offset=offset,
                since_version=since_version,
                semantic_type=semantic_type,
            )
        raise SchemaError(f"{self.path}: cannot lay out <{tag}> {type_name!r}")

    def composite(self, el: ET.Element) -> CompositeLayout:
        key = id(el)
        if key not in self._composites:
            self._composites[key] = self._layout_composite(el)
        return self._composites[key]

    def _layout_composite(self, el: ET.Element) -> CompositeLayout:
        members: list[FieldLayout] = []
        pos = 0
        for child in el:
            ctag = _local(child.tag)
            if ctag not in ("type", "composite", "enum", "set", "ref"):
                continue
            mname = child.get("name", "")
            off = child.get("offset")
            moff = int(off) if off is not None else pos
            since = int(child.get("sinceVersion", "0"))
            if ctag == "ref":
                m = self.layout_type(
                    child.get("type", ""),
                    name=mname,
                    fid=0,
                    offset=moff,
                    since_version=since,
                )
            else:
                m = self.layout_type(
                    mname,
                    name=mname,
                    fid=0,
                    offset=moff,
                    since_version=since,
                    el=child,
                )
            members.append(m)
            pos = moff + m.size
        size = max((m.offset + m.size for m in members), default=0)
        return CompositeLayout(name=el.get("name", ""), size=size, members=tuple(members))

    def composite_named(self, name: str) -> CompositeLayout:
        el = self.type_element(name)
        if _local(el.tag) != "composite":
            raise SchemaError(f"{self.path}: {name!r} is not a composite")
        return self.composite(el)

    # -- messages and groups ------------------------------------------------
    def _members(
        self, parent: ET.Element, owner: str
    ) -> tuple[tuple[FieldLayout, ...], tuple[GroupLayout, ...], tuple[DataLayout, ...], int]:
        fields: list[FieldLayout] = []
        groups: list[GroupLayout] = []
        datas: list[DataLayout] = []
        pos = 0
        for child in parent:
            tag = _local(child.tag)
            if tag == "field":
                off_attr = child.get("offset")
                off = int(off_attr) if off_attr is not None else pos
                f = self.layout_type(
                    child.get("type", ""),
                    name=child.get("name", ""),
                    fid=int(child.get("id", "0")),
                    offset=off,
                    since_version=int(child.get("sinceVersion", "0")),
                    semantic_type=child.get("semanticType", ""),
                    presence_override=child.get("presence"),
                    value_ref=child.get("valueRef"),
                )
                if f.is_constant:
                    # constants take no bytes; keep the running position untouched
                    f = _replace_offset(f, off if off_attr is not None else pos)
                else:
                    pos = off + f.size
                fields.append(f)
            elif tag == "group":
                groups.append(self.group(child))
            elif tag == "data":
                datas.append(self.data(child))
        return tuple(fields), tuple(groups), tuple(datas), pos

    def group(self, el: ET.Element) -> GroupLayout:
        name = el.get("name", "")
        fields, groups, datas, end = self._members(el, name)
        bl = el.get("blockLength")
        dim = self.composite_named(el.get("dimensionType", "groupSize"))
        for needed in ("blockLength", "numInGroup"):
            dim.member(needed)
        return GroupLayout(
            name=name,
            id=int(el.get("id", "0")),
            dimension=dim,
            block_length=int(bl) if bl is not None else end,
            fields=fields,
            groups=groups,
            var_data=datas,
            since_version=int(el.get("sinceVersion", "0")),
        )

    def data(self, el: ET.Element) -> DataLayout:
        tname = el.get("type", "")
        comp = self.composite_named(tname)
        length = comp.member("length")
        var = comp.member("varData")
        return DataLayout(
            name=el.get("name", ""),
            id=int(el.get("id", "0")),
            since_version=int(el.get("sinceVersion", "0")),
            type_name=tname,
            length=length,
            data_primitive=var.primitive,
            header_size=var.offset,
        )

    def message(self, el: ET.Element) -> MessageLayout:
        name = el.get("name", "")
        fields, groups, datas, end = self._members(el, name)
        bl = el.get("blockLength")
        return MessageLayout(
            id=int(el.get("id", "0")),
            name=name,
            block_length=int(bl) if bl is not None else end,
            since_version=int(el.get("sinceVersion", "0")),
            fields=fields,
            groups=groups,
            var_data=datas,
            description=el.get("description", ""),
            semantic_type=el.get("semanticType", ""),
        )

    def schema(self) -> Schema:
        header = self.composite_named(self.root.get("headerType", "messageHeader"))
        for needed in ("blockLength", "templateId", "schemaId", "version"):
            header.member(needed)
        messages: dict[int, MessageLayout] = {}
        for el in self.root:
            if _local(el.tag) == "message":
                m = self.message(el)
                if m.id in messages:
                    raise SchemaError(f"{self.path}: template {m.id} defined twice")
                messages[m.id] = m
        return Schema(
            id=int(self.root.get("id", "0")),
            version=int(self.root.get("version", "0")),
            package=self.root.get("package", ""),
            byte_order=self.byte_order,
            description=self.root.get("description", ""),
            header=header,
            messages=messages,
            path=self.path,
        )


def _replace_offset(f: FieldLayout, offset: int) -> FieldLayout:
    return f if f.offset == offset else dataclasses.replace(f, offset=offset)


# --------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------
@functools.lru_cache(maxsize=64)
def _load_resolved(path: str) -> Schema:
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise SchemaError(f"{path}: not valid XML: {exc}") from exc
    if _local(root.tag) != "messageSchema":
        raise SchemaError(f"{path}: root element is <{_local(root.tag)}>, not messageSchema")
    return _Parser(root, path).schema()


def load_schema(path: str | Path) -> Schema:
    """Parse an SBE schema XML file into layouts (cached per file)."""
    return _load_resolved(str(Path(path).resolve()))


@functools.cache
def bundled_schemas() -> tuple[Schema, ...]:
    """Every schema shipped in ``core/sbe/schemas``, sorted by (id, version)."""
    schemas = [load_schema(p) for p in sorted(SCHEMA_DIR.glob("*.xml"))]
    return tuple(sorted(schemas, key=lambda s: (s.id, s.version)))


def bundled_schema(schema_id: int, version: int) -> Schema:
    for sid, ver, _, path in bundled_index():
        if sid == schema_id and ver == version:
            return load_schema(path)
    raise KeyError(f"no bundled schema id={schema_id} version={version}")


_ROOT_RE = re.compile(r"<(?:\w+:)?messageSchema\s[^>]*>", re.S)
_ATTR_RE = re.compile(r'\b(id|version)="(\d+)"')
_MESSAGE_ID_RE = re.compile(r'<(?:\w+:)?message\s[^>]*?\bid="(\d+)"', re.S)


@functools.cache
def bundled_index() -> tuple[tuple[int, int, frozenset[int], str], ...]:
    """(id, version, template ids, path) of each bundled schema, without laying it out.

    A regex scan (a few ms) so that ``select_schema`` parses only the schemas it
    picks: ``nanoarb decode`` on a v9 capture loads one XML, not ten.
    """
    out = []
    for p in sorted(SCHEMA_DIR.glob("*.xml")):
        text = p.read_text(encoding="utf-8")
        root = _ROOT_RE.search(text)
        if root is None:
            raise SchemaError(f"{p}: no messageSchema element")
        attrs = dict(_ATTR_RE.findall(root.group(0)))
        ids = frozenset(int(i) for i in _MESSAGE_ID_RE.findall(text, root.end()))
        out.append((int(attrs.get("id", "0")), int(attrs.get("version", "0")), ids, str(p)))
    return tuple(sorted(out, key=lambda t: (t[0], t[1])))


@functools.cache
def select_schema(schema_id: int, version: int, template_id: int) -> Schema | None:
    """Bundled schema for a message header (see the module docstring)."""
    having = [e for e in bundled_index() if e[0] == schema_id and template_id in e[2]]
    if not having:
        return None
    at_or_above = [e for e in having if e[1] >= version]
    pick = min(at_or_above, key=lambda e: e[1]) if at_or_above else max(having, key=lambda e: e[1])
    return load_schema(pick[3])
