"""The sandbox's state on disk: a snapshot plus an append-only journal of what each change
wrote, so that persisting a request costs what it touched, not the whole store.

Each table of the store (objects, deliveries, …) is a `TrackedDict`, which remembers every key
read or written since the last commit; handlers change objects in place, so a read may be a
write. A commit serializes the touched entries, keeps those whose bytes differ from what was
last persisted, and appends them as one JSON line, fsync'd. Opening replays the snapshot and
then the journal (a line torn by a crash is dropped: its request was never answered). Once the
journal outgrows the snapshot, the two are folded into a new snapshot, written beside it and
renamed over it.
"""

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger("billing_gateway.sandbox.journal")

# Fold the journal into the snapshot once it is this many times the snapshot's size (and at
# least COMPACT_MIN_BYTES), so replaying costs a few times what loading does, at worst.
COMPACT_RATIO = 4
COMPACT_MIN_BYTES = 1 << 20
_MISSING = object()


class TrackedDict(dict):
    """A dict that records the keys read or written through it (in `touched`) until taken."""

    __slots__ = ("touched",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.touched: dict[Any, None] = {}

    def __getitem__(self, key: Any) -> Any:
        self.touched[key] = None
        return super().__getitem__(key)

    def get(self, key: Any, default: Any = None) -> Any:
        self.touched[key] = None
        return super().get(key, default)

    def __setitem__(self, key: Any, value: Any) -> None:
        if key not in self:  # new keys are replayed in the order they were added
            self.touched.pop(key, None)
        self.touched[key] = None
        super().__setitem__(key, value)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def __delitem__(self, key: Any) -> None:
        self.touched[key] = None
        super().__delitem__(key)

    def pop(self, key: Any, *default: Any) -> Any:
        self.touched[key] = None
        return super().pop(key, *default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def clear(self) -> None:
        self.touched.update(dict.fromkeys(self))
        super().clear()

    def take_touched(self) -> Iterable[Any]:
        touched, self.touched = self.touched, {}
        return touched


class Journal:
    """Persists `tables` (and the small `scalars`) under `path` and `path`.journal."""

    def __init__(
        self,
        path: Path,
        tables: Mapping[str, TrackedDict],
        scalars: Callable[[], dict[str, Any]],
    ) -> None:
        self.path = path
        self.journal_path = path.with_name(path.name + ".journal")
        self.tables = tables
        self.scalars = scalars
        self._digests: dict[str, dict[Any, bytes]] = {name: {} for name in tables}
        self._scalars: dict[str, Any] = {}
        self._snapshot_bytes = 0
        self._journal_bytes = 0
        self._fd: int | None = None

    @classmethod
    def open(
        cls,
        path: Path,
        tables: Mapping[str, TrackedDict],
        scalars: Callable[[], dict[str, Any]],
    ) -> tuple["Journal", dict[str, Any]]:
        """The journal, with `tables` filled from disk; also the scalars last persisted."""
        journal = cls(path, tables, scalars)
        state: dict[str, Any] = {}
        if path.exists():
            snapshot = path.read_bytes()
            journal._snapshot_bytes = len(snapshot)
            journal._apply(json.loads(snapshot), state)
        valid = journal._replay(state)
        for name, table in tables.items():
            table.take_touched()
            journal._digests[name] = {key: _digest(_dumps(value)) for key, value in table.items()}
        journal._scalars = {key: state[key] for key in state if key not in tables}
        path.parent.mkdir(parents=True, exist_ok=True)
        journal._fd = os.open(journal.journal_path, os.O_WRONLY | os.O_CREAT, 0o600)
        os.truncate(journal._fd, valid)  # drop a torn last line
        os.lseek(journal._fd, valid, os.SEEK_SET)
        journal._journal_bytes = valid
        return journal, journal._scalars

    def commit(self) -> None:
        """Append what changed since the last commit, durably; then fold if it is time."""
        parts = []
        for name, table in self.tables.items():
            changes = self._changes(name, table)
            if changes:
                parts.append(f"{json.dumps(name)}: {{{', '.join(changes)}}}")
        scalars = self.scalars()
        if scalars != self._scalars:
            self._scalars = scalars
            parts.extend(
                f"{json.dumps(key)}: {json.dumps(value)}" for key, value in scalars.items()
            )
        if not parts:
            return
        line = ("{" + ", ".join(parts) + "}\n").encode()
        assert self._fd is not None, "commit on a closed journal"
        os.write(self._fd, line)
        os.fsync(self._fd)
        self._journal_bytes += len(line)
        if self._journal_bytes > max(COMPACT_MIN_BYTES, COMPACT_RATIO * self._snapshot_bytes):
            self.compact()

    def compact(self) -> None:
        """Write the whole state as the snapshot and empty the journal."""
        self._settle()
        state = {name: dict(table) for name, table in self.tables.items()} | self._scalars
        data = json.dumps(state).encode()
        temporary = self.path.with_name(self.path.name + ".tmp")
        with temporary.open("wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.path)
        _fsync_directory(self.path.parent)
        assert self._fd is not None
        os.truncate(self._fd, 0)
        os.lseek(self._fd, 0, os.SEEK_SET)
        os.fsync(self._fd)
        self._snapshot_bytes, self._journal_bytes = len(data), 0

    def _settle(self) -> None:
        """Bring the digests up to date without writing (the snapshot is about to hold all)."""
        for name, table in self.tables.items():
            self._changes(name, table)
        self._scalars = self.scalars()

    def close(self) -> None:
        if self._fd is not None:
            self.compact()
            os.close(self._fd)
            self._fd = None

    def _changes(self, name: str, table: TrackedDict) -> list[str]:
        """`"key": value` for each touched entry whose bytes changed (null: removed)."""
        digests = self._digests[name]
        changes = []
        for key in table.take_touched():
            value = dict.get(table, key, _MISSING)
            if value is _MISSING:
                if digests.pop(key, None) is not None:
                    changes.append(f"{json.dumps(key)}: null")
                continue
            dumped = _dumps(value)
            digest = _digest(dumped)
            if digests.get(key) != digest:
                digests[key] = digest
                changes.append(f"{json.dumps(key)}: {dumped}")
        return changes

    def _replay(self, state: dict[str, Any]) -> int:
        """Apply the journal's complete lines; the byte length of those."""
        if not self.journal_path.exists():
            return 0
        valid = 0
        with self.journal_path.open("rb") as file:
            for line in file:
                try:
                    change = json.loads(line) if line.endswith(b"\n") else None
                except ValueError:
                    change = None
                if change is None:
                    log.warning("dropped a torn line at the end of %s", self.journal_path)
                    break
                self._apply(change, state)
                valid += len(line)
        return valid

    def _apply(self, change: dict[str, Any], state: dict[str, Any]) -> None:
        for key, value in change.items():
            table = self.tables.get(key)
            if table is None:
                state[key] = value
                continue
            for entry, entry_value in value.items():
                if entry_value is None:
                    dict.pop(table, entry, None)
                else:
                    dict.__setitem__(table, entry, entry_value)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _digest(dumped: str) -> bytes:
    return hashlib.blake2b(dumped.encode(), digest_size=16).digest()


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
