"""CME SBE: schema XML -> layouts (``schema``), a generic codec (``codec``) and the
instrument table (``instruments``). The schemas CME publishes ship in ``schemas/``.

The hot-path MDP 3.0 decoder (numba) builds its offset tables from ``schema``;
everything here is plain Python.
"""

from core.sbe.codec import DecodeError, EncodeError, decode, decode_packet, encode
from core.sbe.schema import Schema, bundled_schemas, load_schema, select_schema

__all__ = [
    "DecodeError",
    "EncodeError",
    "Schema",
    "bundled_schemas",
    "decode",
    "decode_packet",
    "encode",
    "load_schema",
    "select_schema",
]
