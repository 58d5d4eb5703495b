"""Flow versions, reloaded live (README "Changing flows on a running bot").

:class:`FlowVersions` owns the engine the bot answers with. ``reload`` reads the flow files,
validates them, builds the new engine (training the intent model) in a worker thread while the
old engine goes on answering, keeps the version in the database (``flow_versions``: number,
hash, who, the files' texts) and then swaps the current engine in one assignment. A version that
does not validate is refused: the old one keeps serving and the errors (``file:line: reason``)
are returned, logged and shown on the admin page.

Each flow state the engine returns is stamped with the version it ran on (``flow_version``); a
conversation in the middle of a flow goes on with that version's engine until the flow ends
(:class:`LiveEngine`). Engines of older versions are kept while conversations use them and dropped
when idle (at most :data:`KEEP_OLD` of them); one that is needed again is rebuilt from the texts
kept in the database, so a conversation always finishes on exactly the flows it started on.

With several instances (PostgreSQL), the instance that reloads publishes a ``flows`` event;
the others load the same version from the database (its stored texts, not their own files), and
say so in their log when their own files differ. Each also checks the database every
:data:`CHECK_EVERY` seconds, so a missed event only delays the move.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from bot.aio import wait_for
from bot.audit import record
from bot.errors import FlowError, FlowValidationError, StorageUnavailable
from bot.events import Event, EventBus
from bot.model import utcnow
from bot.storage import Store
from flows import FlowEngine, load_flows
from flows.loader import NOT_FLOWS, FlowSet
from flows.turn import TurnInput, TurnResult

log = logging.getLogger(__name__)

VERSION_KEY = "flow_version"   # in the flow state: the version the conversation's flow runs on
KEEP_OLD = 4                   # engines of older versions kept in memory at most
IDLE_SECONDS = 3600.0          # an older version's engine unused this long is dropped
CHECK_EVERY = 10.0             # several instances: how often each looks for a newer version

Build = Callable[[FlowSet], FlowEngine]


def flow_files(path: str | Path) -> dict[str, str]:
    """The texts of the flow files under ``path`` (what :func:`flows.load_flows` reads), by their
    path relative to it (a single file: by its name)."""
    root = Path(path)
    if root.is_file():
        return {root.name: root.read_text(encoding="utf-8")}
    if not root.is_dir():
        return {}
    files = sorted(p for p in root.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()
                   and p.relative_to(root).parts[0] not in NOT_FLOWS)
    return {p.relative_to(root).as_posix(): p.read_text(encoding="utf-8") for p in files}


def files_hash(files: Mapping[str, str]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + files[name].encode() + b"\0")
    return h.hexdigest()


def load_texts(files: Mapping[str, str], *, teams: Iterable[str] | None,
               endpoints: Iterable[str] | None = None) -> FlowSet:
    """Validate flow files given as texts (a stored version) as :func:`flows.load_flows` does."""
    with tempfile.TemporaryDirectory(prefix="omnibot-flows-") as tmp:
        for name, text in files.items():
            p = Path(tmp, name)
            if not p.resolve().is_relative_to(Path(tmp).resolve()):
                raise FlowValidationError([FlowError("a stored file name leaves the folder", path=name)])
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text, encoding="utf-8")
        try:
            return load_flows(tmp, teams=teams, endpoints=endpoints)
        except FlowValidationError as exc:   # name the stored file, not the temporary copy
            for e in exc.errors:
                e.path = e.path.replace(tmp + "/", "").replace(tmp, "(stored version)")
            raise FlowValidationError(exc.errors) from None


def read_flows(path: str | Path, *, teams: Iterable[str] | None,
               endpoints: Iterable[str] | None = None) -> tuple[FlowSet, dict[str, str]]:
    """Validate the files on disk (FlowValidationError) and return them with their texts; the
    texts are read before and after, so an editor saving meanwhile does not slip through."""
    for _ in range(3):
        before = flow_files(path)
        flowset = load_flows(path, teams=teams, endpoints=endpoints)
        after = flow_files(path)
        if before == after:
            return flowset, after
    raise FlowValidationError([FlowError("the files kept changing while they were read; try again",
                                         path=str(path))])


def mid_flow(state: Mapping[str, Any] | None) -> bool:
    return bool(state and state.get("flow"))


@dataclass
class Loaded:
    """One version's engine."""

    number: int
    hash: str
    engine: FlowEngine
    used_at: float = field(default_factory=time.monotonic)
    users: int = 0          # turns running on it right now
    retired: bool = False   # dropped: closed when the last turn on it ends

    def close(self) -> None:
        close = getattr(self.engine.matcher, "close", None)
        if close is not None:
            close()


@dataclass
class ReloadResult:
    """What a reload (or rollback) did."""

    ok: bool
    version: int | None            # the version serving now
    previous: int | None
    changed: bool = False          # a new version serves (False: refused, or the files were unchanged)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    by: str = ""
    at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "version": self.version, "previous": self.previous, "changed": self.changed,
                "errors": self.errors, "seconds": round(self.seconds, 2), "by": self.by, "at": self.at}


class FlowVersions:
    """The versions of the flows this instance answers with.

    Args:
        store: where versions are kept.
        path: the flows folder (``flows.path``).
        build: makes an engine from a validated :class:`FlowSet` (trains; runs in a thread).
        teams: the team ids handoff steps may name.
        events: where a new version is announced (a ``flows`` event; other instances follow it).
        shared: several instances share the database (follow the others' versions).
    """

    def __init__(self, *, store: Store, path: str | Path, build: Build, teams: Iterable[str] | None,
                 events: EventBus, shared: bool = False, endpoints: Iterable[str] | None = None) -> None:
        self.store = store
        self.path = Path(path)
        self.build = build
        self.teams = list(teams) if teams is not None else None
        self.endpoints = list(endpoints) if endpoints is not None else None    # config integrations.endpoints
        self.events = events
        self.shared = shared
        self.current: Loaded | None = None
        self.old: OrderedDict[int, Loaded] = OrderedDict()
        self.last: ReloadResult | None = None          # the last reload's outcome (admin page)
        self.files_differ = False                       # this instance's files are not the version served
        self.on_swap: list[Callable[[FlowEngine], None]] = []
        self._lock = asyncio.Lock()
        self._building: dict[int, asyncio.Future[Loaded | None]] = {}
        self.engine = LiveEngine(self)

    # -- start-up --------------------------------------------------------------------

    def read(self) -> tuple[FlowSet, dict[str, str]]:
        return read_flows(self.path, teams=self.teams, endpoints=self.endpoints)

    async def start(self, flowset: FlowSet, files: dict[str, str], engine: FlowEngine) -> Loaded:
        """The version the bot starts with: the files on disk (a new version when they differ from
        the last one kept; the same number when they do not)."""
        v = await self.store.add_flow_version(files_hash(files), files, loaded_by="startup", at=utcnow())
        self.current = Loaded(v.number, v.hash, engine)
        log.info("flows: serving version %d (%s)", v.number, v.hash[:12])
        return self.current

    # -- reload, rollback, follow ----------------------------------------------------

    async def reload(self, *, by: str) -> ReloadResult:
        """Load the files on disk as the new version (see the module's doc)."""
        async with self._lock:
            t0 = time.perf_counter()
            prev = self.current.number if self.current else None
            try:
                flowset, files = await asyncio.to_thread(self.read)
            except FlowValidationError as exc:
                return self._refused(prev, [str(e) for e in exc.errors], by, t0)
            except OSError as exc:
                return self._refused(prev, [f"{self.path}: cannot read: {exc}"], by, t0)
            h = files_hash(files)
            if self.current is not None and h == self.current.hash:
                self.files_differ = False
                return self._done(ReloadResult(True, prev, prev, False, [], time.perf_counter() - t0, by), "unchanged")
            return await self._adopt(flowset, files, h, by=by, note="reload", prev=prev, t0=t0)

    async def rollback(self, number: int, *, by: str) -> ReloadResult:
        """Serve version ``number``'s stored texts again, as a new version ("rollback to N")."""
        async with self._lock:
            t0 = time.perf_counter()
            prev = self.current.number if self.current else None
            try:
                v = await self.store.flow_version(number)
            except StorageUnavailable as exc:
                return self._refused(prev, [f"storage is unavailable: {exc}"], by, t0)
            if v is None:
                return self._refused(prev, [f"there is no version {number} (omnibot flows history lists them)"],
                                     by, t0)
            try:
                flowset = await asyncio.to_thread(load_texts, v.files, teams=self.teams, endpoints=self.endpoints)
            except FlowValidationError as exc:
                return self._refused(prev, [str(e) for e in exc.errors], by, t0)
            return await self._adopt(flowset, v.files, v.hash, by=by, note=f"rollback to {number}", prev=prev, t0=t0)

    async def _adopt(self, flowset: FlowSet, files: dict[str, str], h: str, *, by: str, note: str,
                     prev: int | None, t0: float) -> ReloadResult:
        try:
            engine = await asyncio.to_thread(self.build, flowset)     # trains; the old engine serves meanwhile
        except Exception as exc:  # noqa: BLE001 - a version that cannot be built is refused, never half-served
            log.exception("flows: building the new version failed")
            return self._refused(prev, [f"{self.path}: the engine could not be built: {exc}"], by, t0)
        try:
            v = await self.store.add_flow_version(h, files, loaded_by=by, at=utcnow(), note=note)
        except StorageUnavailable as exc:
            self._close(engine)
            return self._refused(prev, [f"storage is unavailable, the version could not be kept: {exc}"], by, t0)
        self._swap(Loaded(v.number, v.hash, engine))
        self.files_differ = note != "reload" and h != self._disk_hash()
        self.events.publish(Event("flows", "", None, {"version": v.number, "hash": v.hash}))
        try:      # the audit log: who changed the configuration (README "Privacy", audit)
            await record(self.store, f"system:{by}" if by in ("SIGHUP", "startup") else f"agent:{by}",
                         "flows_rollback" if note.startswith("rollback") else "flows_reload",
                         target=f"flows v{v.number}", detail={"from": prev, "hash": v.hash[:12]})
        except Exception:  # noqa: BLE001 - the new version serves; a lost audit line is logged, not fatal
            log.exception("flows: version %d could not be recorded in the audit log", v.number)
        res = ReloadResult(True, v.number, prev, v.number != prev, [], time.perf_counter() - t0, by)
        return self._done(res, note)

    async def follow(self) -> bool:
        """Move to the latest version kept in the database (another instance stored it)."""
        async with self._lock:
            v = await self.store.latest_flow_version()
            if v is None or self.current is None or v.number <= self.current.number:
                return False
            t0 = time.perf_counter()
            try:
                flowset = await asyncio.to_thread(load_texts, v.files, teams=self.teams, endpoints=self.endpoints)
                engine = await asyncio.to_thread(self.build, flowset)
            except FlowValidationError as exc:
                log.error("flows: version %d (from another instance) does not validate here; still serving %d:\n  %s",
                          v.number, self.current.number, "\n  ".join(str(e) for e in exc.errors))
                return False
            prev = self.current.number
            self._swap(Loaded(v.number, v.hash, engine))
            disk = self._disk_hash()
            self.files_differ = disk != v.hash
            log.info("flows: version %d (loaded by %s on another instance) serves here too, after %d, in %.1f s",
                     v.number, v.loaded_by, prev, time.perf_counter() - t0)
            if self.files_differ:
                log.warning("flows: this instance's files in %s differ from version %d (served from the database); "
                            "copy the same files to every instance", self.path, v.number)
            return True

    def _disk_hash(self) -> str | None:
        try:
            return files_hash(flow_files(self.path))
        except OSError:
            return None

    def _swap(self, new: Loaded) -> None:
        old = self.current
        self.current = new                      # the swap: turns from now on use the new version
        if old is not None:
            old.used_at = time.monotonic()
            self.old[old.number] = old
        self._prune()
        for hook in self.on_swap:
            hook(new.engine)

    def _refused(self, prev: int | None, errors: list[str], by: str, t0: float) -> ReloadResult:
        res = ReloadResult(False, prev, prev, False, errors, time.perf_counter() - t0, by)
        log.error("flows: reload by %s refused; version %s keeps serving. %d problem(s):\n  %s",
                  by, prev, len(errors), "\n  ".join(errors))
        return self._done(res, "refused")

    def _done(self, res: ReloadResult, what: str) -> ReloadResult:
        res.at = utcnow().isoformat()
        self.last = res
        if res.ok:
            log.info("flows: %s by %s: version %s serves (was %s), %.1f s", what, res.by, res.version, res.previous,
                     res.seconds)
        return res

    # -- the engine of a version ------------------------------------------------------

    async def engine_for(self, number: int) -> Loaded | None:
        """Version ``number``'s engine: kept, or rebuilt from its stored texts; None if it cannot be."""
        cur = self.current
        if cur is not None and number == cur.number:
            return cur
        got = self.old.get(number)
        if got is not None and not got.retired:
            self.old.move_to_end(number)
            got.used_at = time.monotonic()
            return got
        pending = self._building.get(number)
        if pending is None:
            pending = self._building[number] = asyncio.ensure_future(self._rebuild(number))
            pending.add_done_callback(lambda _f, n=number: self._building.pop(n, None))
        return await asyncio.shield(pending)

    async def _rebuild(self, number: int) -> Loaded | None:
        v = await self.store.flow_version(number)
        if v is None:
            return None
        try:
            flowset = await asyncio.to_thread(load_texts, v.files, teams=self.teams, endpoints=self.endpoints)
            engine = await asyncio.to_thread(self.build, flowset)
        except FlowValidationError as exc:
            log.warning("flows: version %d cannot be loaded again (%s); its conversations go on with the current one",
                        number, exc)
            return None
        log.info("flows: version %d loaded again from the database for the conversations still on it", number)
        loaded = Loaded(v.number, v.hash, engine)
        self.old[number] = loaded
        self._prune()
        return loaded

    def _prune(self) -> None:
        """Drop engines of older versions unused for :data:`IDLE_SECONDS`, and all but the
        :data:`KEEP_OLD` most recently used (rebuilt from the database if needed again)."""
        now = time.monotonic()
        for number, loaded in list(self.old.items()):
            if len(self.old) > KEEP_OLD or now - loaded.used_at > IDLE_SECONDS:
                del self.old[number]
                loaded.retired = True
                if loaded.users == 0:
                    loaded.close()

    def _close(self, engine: FlowEngine) -> None:
        Loaded(0, "", engine).close()

    def release(self, loaded: Loaded) -> None:
        loaded.users -= 1
        loaded.used_at = time.monotonic()
        if loaded.retired and loaded.users == 0:
            loaded.close()

    # -- several instances ----------------------------------------------------------------

    async def run(self) -> None:
        """Follow the versions other instances load (their events, and a check every
        :data:`CHECK_EVERY` seconds); drop idle engines. Runs until cancelled."""
        q = self.events.subscribe()
        try:
            while True:
                try:
                    ev = await wait_for(q.get(), CHECK_EVERY)
                except TimeoutError:
                    ev = None
                self._prune()
                if not self.shared:
                    continue
                if ev is not None and ev.kind not in ("flows", "resync"):
                    continue
                if ev is not None and ev.kind == "flows" and self.current is not None \
                        and ev.data.get("version") == self.current.number:
                    continue          # ours
                try:
                    await self.follow()
                except StorageUnavailable:
                    pass              # the next check tries again
                except Exception:  # noqa: BLE001 - following must outlive a bad round
                    log.exception("flows: following the other instances' version failed")
        finally:
            self.events.unsubscribe(q)

    # -- what the admin page and the API show ---------------------------------------------

    def status(self) -> dict[str, Any]:
        cur = self.current
        return {"version": cur.number if cur else None, "hash": cur.hash if cur else None,
                "path": str(self.path), "files_differ": self.files_differ,
                "kept_engines": sorted(self.old), "last": self.last.to_dict() if self.last else None}


class LiveEngine:
    """The flow engine the app holds: whatever is read from it is the current version's; a turn of a
    conversation in the middle of a flow runs on the version that flow started on."""

    def __init__(self, versions: FlowVersions) -> None:
        self._versions = versions

    @property
    def current(self) -> FlowEngine:
        cur = self._versions.current
        assert cur is not None, "no flow version loaded yet"
        return cur.engine

    def __getattr__(self, name: str) -> Any:
        return getattr(self.current, name)

    async def handle(self, state: Mapping[str, Any] | None, turn: TurnInput) -> TurnResult:
        v = self._versions
        loaded = v.current
        assert loaded is not None
        pinned = (state or {}).get(VERSION_KEY)
        if isinstance(pinned, int) and pinned != loaded.number and mid_flow(state):
            loaded = await v.engine_for(pinned) or loaded
        loaded.users += 1
        try:
            result = await loaded.engine.handle(state, turn)
        finally:
            v.release(loaded)
        result.state[VERSION_KEY] = loaded.number
        return result

    async def start_flow(self, state: Mapping[str, Any] | None, name: str, turn: TurnInput,
                         slots: Mapping[str, Any] | None = None) -> TurnResult | None:
        loaded = self._versions.current
        assert loaded is not None
        result = await loaded.engine.start_flow(state, name, turn, slots)
        if result is not None:
            result.state[VERSION_KEY] = loaded.number
        return result

    def reset_after_handoff(self, state: Mapping[str, Any] | None) -> dict[str, Any]:
        return self.current.reset_after_handoff(state)

    def system_text(self, key: str, lang: str | None, **values: Any) -> str:
        return self.current.system_text(key, lang, **values)
