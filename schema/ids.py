"""Opaque global ids: base64url of "TypeName:row id"."""

import base64
import binascii

from services.errors import InvalidInput


def to_global_id(type_name: str, row_id: int) -> str:
    return base64.urlsafe_b64encode(f"{type_name}:{row_id}".encode()).decode().rstrip("=")


def from_global_id(global_id: str, *, field: str = "id") -> tuple[str, int]:
    """The (type name, row id) an id stands for; INVALID_INPUT for anything else."""
    try:
        padded = global_id + "=" * (-len(global_id) % 4)
        type_name, _, row_id = base64.urlsafe_b64decode(padded.encode()).decode().partition(":")
        if type_name.isidentifier() and row_id.isdigit() and row_id.isascii():
            return type_name, int(row_id)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise InvalidInput(f"`{field}` is not an id this API gave out", [field])


def row_id_of(global_id: str, type_name: str, *, field: str = "id") -> int:
    """The row id of a global id that must name a `type_name`."""
    found_type, row_id = from_global_id(global_id, field=field)
    if found_type != type_name:
        raise InvalidInput(f"`{field}` must be the id of a {type_name}", [field])
    return row_id
