"""On-disk cache of embeddings, keyed by embedder, model, options and text.

Training, calibration and evaluation embed their texts through
:class:`EmbeddingCache`, so a text that was embedded once with the same
embedder, model and options is read back from disk instead of being embedded
again. The cache is an SQLite database in WAL mode. Each write is one
transaction, so several processes can share a cache file and a crash never
leaves a half-written entry. The stored size is bounded, and the least
recently used entries are evicted first. See ``docs/embedding-cache.md``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import numbers
import os
import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from rorf_core.embedders.base import check_texts
from rorf_core.errors import EmbeddingError, InvalidInputError, RorfError

if TYPE_CHECKING:
    from rorf_core.embedders.base import Embedder

logger = logging.getLogger(__name__)

__all__ = [
    "CACHE_DIR_ENV",
    "DEFAULT_MAX_BYTES",
    "DISABLE_ENV",
    "MAX_BYTES_ENV",
    "MEMORY_PATH",
    "CacheStats",
    "EmbeddingCache",
    "EmbeddingCacheError",
    "default_cache_path",
    "embedder_key_prefix",
    "parse_size",
    "text_keys",
]

#: Bound on the database size unless ``max_bytes`` or the environment sets one.
DEFAULT_MAX_BYTES = 2 * 1024**3
#: Directory that contains ``embeddings.sqlite`` when no path is given.
CACHE_DIR_ENV = "RORF_CACHE_DIR"
#: Bound on the database size: an integer with an optional K, M, G or T suffix.
MAX_BYTES_ENV = "RORF_CACHE_MAX_BYTES"
#: Set to 1, true or yes to turn off caches that are created without a path.
DISABLE_ENV = "RORF_CACHE_DISABLE"
#: Pass as ``path`` for a cache that lives in memory for the object's lifetime.
MEMORY_PATH = ":memory:"
CACHE_FILE_NAME = "embeddings.sqlite"

# Eviction stops below the bound, so that the next few writes do not each
# trigger another eviction pass.
EVICT_TO_FRACTION = 0.9
# How long a write waits for another process's write transaction to finish.
BUSY_TIMEOUT_S = 60.0
# WAL files are truncated to this size after a checkpoint. Without a limit,
# one large write leaves a WAL file of that size on disk.
WAL_SIZE_LIMIT_BYTES = 32 * 1024**2
SCHEMA_VERSION = 1
# Part of every key, so a change to the key layout never reads old vectors.
KEY_FORMAT = "rorf-embedding-cache/1"
# Keys per SELECT ... IN (...), under SQLite's default limit on parameters.
_QUERY_CHUNK = 500

_SIZE_SUFFIXES = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_TRUE_WORDS = {"1", "true", "yes", "on"}
_FALSE_WORDS = {"", "0", "false", "no", "off"}
# Connections inherited through fork(). Closing one would run SQLite code in
# the child on state copied from the parent, which SQLite does not support, so
# they are kept here and never used again. Interpreter shutdown may still close
# them, but multiprocessing's fork children end with os._exit and skip it.
_ABANDONED_CONNECTIONS: list[sqlite3.Connection] = []

# The vector goes last so that the small columns stay on the row's first page.
_SCHEMA = (
    """CREATE TABLE embeddings (
        id INTEGER PRIMARY KEY,
        key BLOB NOT NULL UNIQUE,
        last_access INTEGER NOT NULL,
        dimension INTEGER NOT NULL,
        vector BLOB NOT NULL
    )""",
    "CREATE INDEX embeddings_last_access ON embeddings (last_access, id)",
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "INSERT INTO meta (name, value) VALUES ('clock', 0)",
)

# A row that already exists was either written by another process in the
# meantime (same vector) or is stale (wrong dimension), so it is overwritten.
_UPSERT = """
INSERT INTO embeddings (key, last_access, dimension, vector) VALUES (?, ?, ?, ?)
ON CONFLICT (key) DO UPDATE SET
    last_access = excluded.last_access,
    dimension = excluded.dimension,
    vector = excluded.vector
"""


class EmbeddingCacheError(RorfError, RuntimeError):
    """The embedding cache file cannot be opened, read or written."""


@attrs.frozen
class CacheStats:
    """Counts from one :meth:`EmbeddingCache.embed` call.

    ``hits`` counts positions served from the cache, ``misses`` the distinct
    texts that were embedded and ``total`` the texts passed in. A text repeated
    within one call is embedded once, so ``hits + misses`` can be less than
    ``total``.
    """

    hits: int
    misses: int
    total: int


def default_cache_path() -> Path:
    """Return where the cache lives when no path is given.

    ``$RORF_CACHE_DIR/embeddings.sqlite`` when that variable is set, else
    ``$XDG_CACHE_HOME/rorf/embeddings.sqlite``, else
    ``~/.cache/rorf/embeddings.sqlite``.
    """
    directory = os.environ.get(CACHE_DIR_ENV)
    if directory:
        return Path(directory).expanduser() / CACHE_FILE_NAME
    xdg_cache = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg_cache).expanduser() if xdg_cache else Path.home() / ".cache"
    return base / "rorf" / CACHE_FILE_NAME


def parse_size(text: str, *, source: str) -> int:
    """Parse a byte count such as ``"1073741824"``, ``"512M"`` or ``"2GiB"``.

    Suffixes K, M, G and T (optionally followed by ``iB``) are powers of 1024.
    """
    match = re.fullmatch(r"\s*(\d+)\s*(?:([KMGT])(?:iB)?)?\s*", text, re.IGNORECASE)
    if match is None or int(match.group(1)) < 1:
        raise ValueError(
            f"invalid {source} {text!r}: expected a positive number of bytes, "
            "optionally with a K, M, G or T suffix (powers of 1024), e.g. 2G"
        )
    suffix = (match.group(2) or "").upper()
    return int(match.group(1)) * _SIZE_SUFFIXES[suffix]


def _resolve_max_bytes(max_bytes: int | None) -> int:
    if max_bytes is None:
        from_env = os.environ.get(MAX_BYTES_ENV)
        if not from_env:
            return DEFAULT_MAX_BYTES
        return parse_size(from_env, source=f"{MAX_BYTES_ENV} value")
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, numbers.Integral):
        raise ValueError(f"max_bytes must be a positive int, got {max_bytes!r}")
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be a positive int, got {max_bytes!r}")
    return int(max_bytes)


def _disabled_by_env() -> bool:
    value = os.environ.get(DISABLE_ENV, "").strip().lower()
    if value in _TRUE_WORDS:
        return True
    if value in _FALSE_WORDS:
        return False
    raise ValueError(
        f"invalid {DISABLE_ENV} value {value!r}: use 1 to disable the embedding "
        "cache or 0 to enable it"
    )


def embedder_key_prefix(embedder: Embedder) -> bytes:
    """Encode the embedder's name, model and options as canonical JSON bytes."""
    identity = {
        "format": KEY_FORMAT,
        "embedder": embedder.name,
        "model": embedder.model,
        "options": embedder.options(),
    }
    try:
        encoded = json.dumps(
            identity,
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        )
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"{embedder.name} embedder: options() and model must be JSON values "
            f"to form the cache key ({error}); return str, int, float, bool, "
            "None, list or dict values from options()"
        ) from error
    return encoded.encode("utf-8")


def text_keys(prefix: bytes, texts: Sequence[str]) -> list[bytes]:
    """Return the sha256 digest of ``prefix``, a NUL byte and each text."""
    # JSON output never contains a raw NUL, so the separator is unambiguous.
    # surrogatepass keeps texts with lone surrogates hashable.
    return [
        hashlib.sha256(prefix + b"\0" + text.encode("utf-8", "surrogatepass")).digest()
        for text in texts
    ]


class _SqliteStore:
    """The SQLite side of the cache: lookup, upsert, access times, eviction."""

    def __init__(self, path: str, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.RLock()
        self._connection: sqlite3.Connection | None = None
        self._pid: int | None = None

    @property
    def in_memory(self) -> bool:
        return self.path == MEMORY_PATH

    def exists(self) -> bool:
        return self.in_memory or Path(self.path).exists()

    def lookup(self, keys: list[bytes], dimension: int) -> dict[bytes, np.ndarray]:
        """Return the stored vectors of ``keys`` that have ``dimension`` entries."""
        found: dict[bytes, np.ndarray] = {}
        stale = 0
        with self._using() as connection:
            for start in range(0, len(keys), _QUERY_CHUNK):
                chunk = keys[start : start + _QUERY_CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = connection.execute(
                    "SELECT key, dimension, vector FROM embeddings "
                    f"WHERE key IN ({marks})",
                    chunk,
                )
                for key, stored_dimension, blob in rows:
                    if stored_dimension != dimension or len(blob) != 4 * dimension:
                        stale += 1
                        continue
                    found[key] = np.frombuffer(blob, dtype="<f4")
        if stale:
            # The key covers name, model and options, so a dimension change
            # means the embedder changed without changing them. The caller
            # embeds these texts again and the upsert replaces the rows.
            logger.warning(
                "%d cached embeddings in %s do not have dimension %d; "
                "embedding those texts again",
                stale,
                self.path,
                dimension,
            )
        return found

    def store(self, new: dict[bytes, np.ndarray], touched: list[bytes]) -> None:
        """Insert ``new`` and mark ``touched`` as used, in one transaction."""
        with self._using() as connection:
            with _transaction(connection):
                clock = _advance_clock(connection)
                connection.executemany(
                    _UPSERT,
                    (_entry_row(key, vector, clock) for key, vector in new.items()),
                )
                connection.executemany(
                    "UPDATE embeddings SET last_access = ? WHERE key = ?",
                    ((clock, key) for key in touched),
                )
                evicted = self.evict(connection)
            if evicted:
                # Truncate the freed pages off the end of the file, which
                # auto_vacuum = INCREMENTAL allows without a full VACUUM.
                connection.executescript("PRAGMA incremental_vacuum;")

    def evict(self, connection: sqlite3.Connection) -> int:
        """Delete least recently used entries until the used pages fit the bound.

        Runs inside the write transaction, whose page counts include its own
        uncommitted deletions. Deleting a row does not always free a whole
        page, so the loop measures again and deletes more until the target
        is met.
        """
        used = _used_bytes(connection)
        if used <= self.max_bytes:
            return 0
        before = used
        target = int(self.max_bytes * EVICT_TO_FRACTION)
        evicted = 0
        while used > target:
            count = connection.execute("SELECT count(*) FROM embeddings").fetchone()[0]
            if count == 0:
                break
            # used / count overestimates an entry's share, because it includes
            # the fixed pages, so each pass deletes at most what is needed.
            batch = max(1, math.ceil((used - target) * count / used))
            deleted = connection.execute(
                "DELETE FROM embeddings WHERE id IN (SELECT id FROM embeddings "
                "ORDER BY last_access, id LIMIT ?)",
                (batch,),
            )
            evicted += deleted.rowcount
            used = _used_bytes(connection)
        logger.info(
            "evicted %d least recently used embeddings from %s (%d -> %d bytes)",
            evicted,
            self.path,
            before,
            used,
        )
        return evicted

    def clear(self) -> None:
        with self._using() as connection:
            with _transaction(connection):
                connection.execute("DELETE FROM embeddings")
            connection.executescript("PRAGMA incremental_vacuum;")

    def size_bytes(self) -> int:
        with self._using() as connection:
            return _used_bytes(connection)

    def close(self) -> None:
        with self._lock:
            if self._connection is not None and self._pid == os.getpid():
                self._connection.close()
            self._connection = None

    @contextlib.contextmanager
    def _using(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                with _translated_errors(self.path):
                    yield self._connect()
            except EmbeddingCacheError:
                # The next call opens a new connection, so a file that the user
                # deleted or replaced meanwhile is read afresh.
                self.close()
                raise

    def _connect(self) -> sqlite3.Connection:
        if self._connection is not None and self._pid != os.getpid():
            # SQLite connections must not cross fork(), so the child opens its own.
            _ABANDONED_CONNECTIONS.append(self._connection)
            self._connection = None
        if self._connection is None:
            self._connection = self._open()
            self._pid = os.getpid()
        return self._connection

    def _open(self) -> sqlite3.Connection:
        if not self.in_memory:
            _make_parent_directory(self.path)
        # isolation_level=None: this module issues BEGIN and COMMIT itself.
        connection = sqlite3.connect(
            self.path,
            timeout=BUSY_TIMEOUT_S,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            _prepare(connection, self.path)
        except BaseException:
            connection.close()
            raise
        return connection


def _make_parent_directory(path: str) -> None:
    directory = Path(path).parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise EmbeddingCacheError(
            f"cannot create the embedding cache directory {directory} ({error}); "
            f"set {CACHE_DIR_ENV} to a writable directory or {DISABLE_ENV}=1"
        ) from error


def _prepare(connection: sqlite3.Connection, path: str) -> None:
    # auto_vacuum only takes effect if set before the first table exists and
    # outside a transaction. On an existing database it changes nothing.
    connection.execute("PRAGMA auto_vacuum = INCREMENTAL")
    connection.execute("PRAGMA journal_mode = WAL")
    # NORMAL in WAL mode keeps every commit atomic and the file consistent
    # after a crash. A power loss may drop the last few commits, which for a
    # cache only means re-embedding those texts.
    connection.execute("PRAGMA synchronous = NORMAL")
    connection.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}")
    with _transaction(connection):
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version != 0 or _has_tables(connection):
            raise EmbeddingCacheError(
                f"{path} is not an embedding cache of this RoRF version "
                f"(schema version {version}, expected {SCHEMA_VERSION}); delete "
                f"it or set {CACHE_DIR_ENV} to another directory"
            )
        for statement in _SCHEMA:
            connection.execute(statement)
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _has_tables(connection: sqlite3.Connection) -> bool:
    row = connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    return row[0] > 0


@contextlib.contextmanager
def _transaction(connection: sqlite3.Connection) -> Iterator[None]:
    # IMMEDIATE takes the write lock at the start, so two writers queue on the
    # busy timeout instead of failing with a deadlock on lock upgrade.
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        # SQLite rolls back by itself after some errors (disk full, I/O), and
        # a second ROLLBACK would then hide the original error.
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def _advance_clock(connection: sqlite3.Connection) -> int:
    # A counter shared by all processes, advanced once per write transaction.
    # Writes are serialised, so it orders accesses without trusting clocks.
    connection.execute("UPDATE meta SET value = value + 1 WHERE name = 'clock'")
    row = connection.execute("SELECT value FROM meta WHERE name = 'clock'").fetchone()
    return int(row[0])


def _used_bytes(connection: sqlite3.Connection) -> int:
    """Return the bytes of database pages in use: the file size less free pages."""
    page_size = connection.execute("PRAGMA page_size").fetchone()[0]
    page_count = connection.execute("PRAGMA page_count").fetchone()[0]
    free_pages = connection.execute("PRAGMA freelist_count").fetchone()[0]
    return int(page_size * (page_count - free_pages))


def _entry_row(key: bytes, vector: np.ndarray, clock: int) -> tuple[Any, ...]:
    blob = np.ascontiguousarray(vector, dtype="<f4").tobytes()
    return (key, clock, int(vector.shape[0]), blob)


@contextlib.contextmanager
def _translated_errors(path: str) -> Iterator[None]:
    """Turn sqlite3 errors about the file into errors that name it and the fix."""
    try:
        yield
    except sqlite3.OperationalError as error:
        message = str(error)
        if "locked" in message or "busy" in message:
            raise EmbeddingCacheError(
                f"timed out after {BUSY_TIMEOUT_S:g} s waiting for another process "
                f"to release the embedding cache {path} ({message}); retry when "
                f"that process has finished, or set {CACHE_DIR_ENV} to another "
                "directory"
            ) from error
        raise EmbeddingCacheError(
            f"cannot use the embedding cache {path} ({message}); check that its "
            f"directory is writable and the disk is not full, set {CACHE_DIR_ENV} "
            f"to another directory, or set {DISABLE_ENV}=1"
        ) from error
    except sqlite3.DatabaseError as error:
        # Exactly DatabaseError is what SQLite's CORRUPT and NOTADB codes map
        # to. Subclasses such as IntegrityError are bugs here and pass through.
        if type(error) is not sqlite3.DatabaseError:
            raise
        raise EmbeddingCacheError(
            f"the embedding cache {path} is corrupted or not an SQLite database "
            f"({error}); delete {path} and any {path}-wal and {path}-shm files "
            "beside it, and RoRF builds a new cache on the next run"
        ) from error


class EmbeddingCache:
    """Embed texts through an embedder, storing each vector on disk once.

    :param path: the SQLite file. ``None`` uses :func:`default_cache_path`,
        or disables the cache when ``RORF_CACHE_DISABLE`` is set to 1.
        ``":memory:"`` keeps entries in memory for the lifetime of this object
        and writes nothing to disk.
    :param max_bytes: bound on the database pages in use, which is the size
        of the file less its free pages and the WAL file. ``None`` reads
        ``RORF_CACHE_MAX_BYTES``, else uses :data:`DEFAULT_MAX_BYTES` (2 GiB).

    The constructor only stores its arguments; the file is opened on first use.
    Instances are safe to share between threads, and several processes may
    use the same file at once.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        max_bytes: int | None = None,
    ) -> None:
        self.max_bytes = _resolve_max_bytes(max_bytes)
        self.last_stats: CacheStats | None = None
        self._store: _SqliteStore | None = None
        if path is None and _disabled_by_env():
            return
        resolved = default_cache_path() if path is None else path
        location = MEMORY_PATH if resolved == MEMORY_PATH else os.fspath(resolved)
        if not location:
            # sqlite3 would open a private temporary database for "".
            raise ValueError(
                "path must name a file, be None for the default location, or be "
                f"{MEMORY_PATH!r} for a cache in memory; got an empty string"
            )
        self._store = _SqliteStore(location, self.max_bytes)

    @classmethod
    def disabled(cls) -> EmbeddingCache:
        """Return a cache that stores nothing: every call embeds its texts.

        Repeated texts within one call are still embedded once.
        """
        cache = cls.__new__(cls)
        # Nothing is stored, so there is nothing to bound.
        cache.max_bytes = 0
        cache.last_stats = None
        cache._store = None
        return cache

    @property
    def enabled(self) -> bool:
        """Whether this cache stores vectors at all."""
        return self._store is not None

    @property
    def path(self) -> Path | str | None:
        """The SQLite file, ``":memory:"``, or ``None`` for a disabled cache."""
        if self._store is None:
            return None
        return MEMORY_PATH if self._store.in_memory else Path(self._store.path)

    def embed(
        self, embedder: Embedder, texts: Sequence[str], *, progress: bool = False
    ) -> np.ndarray:
        """Embed ``texts`` in order, reading cached vectors and storing new ones.

        Returns what ``embedder.embed(texts)`` returns: float32, shape
        ``(len(texts), embedder.dimension)``. Only texts missing from the cache
        reach the embedder, each distinct text once, in one
        ``embedder.embed(misses, progress=progress)`` call. If that call
        raises, nothing is stored and the error propagates. An
        :class:`InvalidInputError` is re-raised with its index translated to
        the position of that text in ``texts``.

        :raises InvalidInputError: a text is empty or not a ``str``.
        :raises EmbeddingCacheError: the cache file cannot be used.
        """
        checked = check_texts(texts)
        unique, inverse, first_positions = _deduplicate(checked)
        dimension = int(embedder.dimension)
        keys = self._keys(embedder, unique)
        cached = self._store.lookup(keys, dimension) if self._store and keys else {}

        vectors = np.empty((len(unique), dimension), dtype=np.float32)
        miss_slots: list[int] = []
        for slot in range(len(unique)):
            vector = cached.get(keys[slot]) if cached else None
            if vector is None:
                miss_slots.append(slot)
            else:
                vectors[slot] = vector
        if miss_slots:
            misses = [unique[slot] for slot in miss_slots]
            vectors[miss_slots] = _embed_misses(
                embedder, misses, miss_slots, first_positions, progress, dimension
            )
        # Stored only after every miss was embedded, so a failed call stores
        # nothing. The same transaction records that the hits were used.
        if self._store is not None and keys:
            new = {keys[slot]: vectors[slot] for slot in miss_slots}
            self._store.store(new, list(cached))

        missed = set(miss_slots)
        hit_count = sum(1 for slot in inverse if slot not in missed)
        self.last_stats = CacheStats(
            hits=hit_count, misses=len(miss_slots), total=len(checked)
        )
        logger.info(
            "embedded %d of %d texts (%d from cache)",
            len(miss_slots),
            len(checked),
            hit_count,
        )
        return vectors[np.asarray(inverse, dtype=np.intp)]

    def _keys(self, embedder: Embedder, unique: list[str]) -> list[bytes]:
        if self._store is None or not unique:
            return []
        return text_keys(embedder_key_prefix(embedder), unique)

    def clear(self) -> None:
        """Delete every entry from the cache file."""
        if self._store is not None and self._store.exists():
            self._store.clear()

    def size_bytes(self) -> int:
        """Return the bytes of database pages in use, the size ``max_bytes`` bounds.

        That is the database file's size less its free pages. The WAL file
        beside it is not counted. A cache file that does not exist yet is 0.
        """
        if self._store is None or not self._store.exists():
            return 0
        return self._store.size_bytes()

    def close(self) -> None:
        """Close the database connection. A later call opens a new one."""
        if self._store is not None:
            self._store.close()

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._store is None:
            return "EmbeddingCache.disabled()"
        return f"EmbeddingCache({self._store.path!r}, max_bytes={self.max_bytes})"


def _deduplicate(texts: list[str]) -> tuple[list[str], list[int], list[int]]:
    """Return distinct texts, each position's slot, and each slot's first position."""
    slots: dict[str, int] = {}
    inverse: list[int] = []
    first_positions: list[int] = []
    for position, text in enumerate(texts):
        slot = slots.get(text)
        if slot is None:
            slot = slots[text] = len(first_positions)
            first_positions.append(position)
        inverse.append(slot)
    return list(slots), inverse, first_positions


def _embed_misses(
    embedder: Embedder,
    misses: list[str],
    miss_slots: list[int],
    first_positions: list[int],
    progress: bool,
    dimension: int,
) -> np.ndarray:
    # NOTE: only InvalidInputError gets its index translated. Other errors pass
    # through unchanged, so an EmbeddingError message that names a text index
    # counts positions in ``misses``, not in the caller's texts.
    try:
        vectors = np.asarray(
            embedder.embed(misses, progress=progress), dtype=np.float32
        )
    except InvalidInputError as error:
        # The embedder saw only the distinct misses, so point the caller at the
        # first place the bad text appears in their own list.
        if not 0 <= error.index < len(misses):
            raise
        position = first_positions[miss_slots[error.index]]
        raise InvalidInputError(position, error.reason) from error
    expected = (len(misses), dimension)
    if vectors.shape != expected:
        raise EmbeddingError(
            f"{embedder.name} embedder returned shape {vectors.shape} for "
            f"{len(misses)} texts, expected {expected}"
        )
    return vectors
