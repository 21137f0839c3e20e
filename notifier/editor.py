"""Editing the calendar from the console: the use cases behind its forms.

Each save is checked as `check` checks files, written atomically into the file the event (or
audience) lives in, recorded as a version in the ledger and reloaded; a refused reload puts
the file back. Hand edits are noticed at reload and recorded as "edited outside the console".
The App owns one `Editor` (`app.editor`); the web edge calls it, never the parts below.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from notifier.config import Settings
from notifier.editing import (
    OUTSIDE,
    Draft,
    EditConflict,
    EditPreview,
    EditRefused,
    Who,
    changed_events,
    check_conflict,
    current_event,
    draft,
    quick_preview,
    relative,
    revert_draft,
    schedule_files,
    unified_diff,
)
from notifier.editing import check as check_draft
from notifier.editing import preview as preview_draft
from notifier.errors import StoreError
from notifier.ledger.console import ConsoleStore, NewVersion, Version
from notifier.list_editing import ListPreview, list_draft, list_rows, member_rows, members_draft
from notifier.schedule.edit import EditError, file_hash, remove_file, write_atomic
from notifier.schedule.model import Schedule

log = logging.getLogger(__name__)

# How long after a console save its file may still hold the old text (the version is recorded
# just before the write; the write takes milliseconds): no "edited outside" is recorded then.
SAVE_SETTLE_SECONDS = 5.0


class EditorHost(Protocol):
    """What editing needs of the App, which owns the running config."""

    settings: Settings
    config_errors: list[str]

    @property
    def console(self) -> ConsoleStore: ...

    @property
    def schedule(self) -> Schedule: ...

    def clock(self) -> float: ...

    def now(self) -> datetime: ...

    def reload_now(self) -> Awaitable[bool]: ...

    def reload_off_loop(self) -> Awaitable[bool]: ...


def _digest(d: Draft) -> str:
    """The hash of the file a draft starts from ("" when there is no file yet)."""
    return "" if d.new_file else file_hash(d.before)


class Editor:
    """The console's editing use cases, one at a time (a lock: two saves never interleave)."""

    def __init__(self, app: EditorHost) -> None:
        self.app = app
        self._edit_lock = asyncio.Lock()

    def event_source(self, event_id: str) -> tuple[Path, dict[str, Any]]:
        """The file an event lives in and its mapping as written there (EditError if gone)."""
        return current_event(self.app.schedule, event_id)

    async def preview_edit(
        self,
        old_id: str | None,
        new: Mapping[str, Any] | None,
        *,
        file: str | None = None,
    ) -> EditPreview:
        """What saving would do: the check's verdict, the sends and how they change."""
        schedule, now = self.app.schedule, self.app.now()
        return await asyncio.to_thread(
            quick_preview, self.app.settings, schedule, old_id, new, file=file, now=now
        )

    async def save_event(
        self,
        old_id: str | None,
        new: Mapping[str, Any] | None,
        *,
        base: str | None,
        who: Who,
        file: str | None = None,
    ) -> Draft:
        """Create (old_id None), change or delete (new None) an event in its file, record the
        version and reload. Raises EditConflict when the event changed since `base` (its YAML
        when the form was loaded), EditRefused when the check or the reload refuses the change
        (the file and the history are then as they were), EditError when the file cannot
        take it."""
        async with self._edit_lock:
            schedule = self.app.schedule

            def prepare() -> Draft:
                d = draft(self.app.settings, schedule, old_id, new, file=file)
                check_conflict(d, base)
                return d

            d = await asyncio.to_thread(prepare)
            action = "create" if old_id is None else "delete" if new is None else "edit"
            await self._commit(d, action=action, event_id=old_id or d.new_id or "", who=who)
            return d

    def _audience_draft(
        self, name: str, members: list[dict[str, str]] | None, content: str | bytes | None
    ) -> Draft:
        if members is not None:
            return members_draft(self.app.settings, self.app.schedule, name, members)
        assert content is not None
        return list_draft(self.app.settings, self.app.schedule, name, content)

    async def preview_audience(
        self,
        name: str,
        *,
        members: list[dict[str, str]] | None = None,
        content: str | bytes | None = None,
    ) -> ListPreview:
        """An audience's new members (typed, or an uploaded list replacing its file: a CSV's
        text or a workbook's bytes): the rows kept, the bad rows, and check's verdict;
        nothing is written."""
        now = self.app.now()

        def run() -> ListPreview:
            d = self._audience_draft(name, members, content)
            if members is not None:
                rows, bad = member_rows(members)
            else:
                rows, bad = list_rows(self.app.schedule, name, d)
            _, errors, _ = check_draft(self.app.settings, d, now=now)
            return ListPreview(d, rows, bad, errors)

        return await asyncio.to_thread(run)

    async def save_audience(
        self,
        name: str,
        *,
        members: list[dict[str, str]] | None = None,
        content: str | bytes | None = None,
        base: str,
        who: Who,
    ) -> Draft:
        """Save an audience's members or replace its CSV list, as a version, then reload.
        `base`: the file's hash when the page was made (EditConflict if it changed)."""
        async with self._edit_lock:
            d = await asyncio.to_thread(self._audience_draft, name, members, content)
            if _digest(d) != base:
                file = relative(self.app.settings.schedules_dir, d.path)
                known = await self.app.console.version_with_hash(file, base)
                raise EditConflict(name, known.content if known else "", d.before)
            await self._commit(d, action="audience", event_id="", who=who, note="")
            return d

    async def preview_revert(self, version_id: int) -> tuple[Version, EditPreview]:
        """A version and what restoring its text would do (EditError if it cannot be)."""
        v = await self._version(version_id)
        schedule, now = self.app.schedule, self.app.now()

        def run() -> EditPreview:
            d = revert_draft(self.app.settings, self.app.settings.schedules_dir / v.file, v.content)
            return preview_draft(self.app.settings, schedule, d, now=now)

        return v, await asyncio.to_thread(run)

    async def revert(self, version_id: int, *, base: str, who: Who) -> tuple[Version, Draft]:
        """Make the version's file say the version's text again, as a new version. `base`:
        the file's hash when the preview was shown; EditConflict if it changed since."""
        async with self._edit_lock:
            v = await self._version(version_id)
            path = self.app.settings.schedules_dir / v.file
            d = await asyncio.to_thread(revert_draft, self.app.settings, path, v.content)
            if _digest(d) != base:
                known = await self.app.console.version_with_hash(v.file, base)
                raise EditConflict(v.file, known.content if known else "", d.before)
            await self._commit(d, action="revert", event_id="", who=who, note=str(v.id))
            return v, d

    async def _version(self, version_id: int) -> Version:
        v = await self.app.console.version(version_id)
        if v is None:
            raise EditError(f"no version {version_id}")
        if not v.hash:
            raise EditError(f"version {version_id} is the file's removal: nothing to restore")
        return v

    async def _commit(
        self, d: Draft, *, action: str, event_id: str, who: Who, note: str = ""
    ) -> None:
        """Check the draft, record it as a version, write it and reload; all taken back if
        the check or the reload refuses it."""
        directory, now = self.app.settings.schedules_dir, self.app.now()
        _, errors, _ = await asyncio.to_thread(check_draft, self.app.settings, d, now=now)
        if errors:
            raise EditRefused(errors)
        name = relative(directory, d.path)
        latest = await self.app.console.latest_versions()
        if latest.get(name, (0, ""))[1] != _digest(d):
            await self.notice_outside_edits()  # a hand edit first, so the history is whole
            latest = await self.app.console.latest_versions()
        seq = latest.get(name, (0, ""))[0] + 1
        version = NewVersion(
            file=name,
            action=action,
            event_id=event_id,
            events=changed_events(d.before, d.after),
            role=who.role,
            client=who.client + (f" (from version {note})" if note else ""),
            at=self.app.clock(),
            hash=file_hash(d.after),
            content=d.after,
            diff=d.diff,
        )
        # Recorded before the file is written: a reload here or on another instance then
        # finds the new text already known, not an edit "outside the console".
        vid = await self.app.console.add_version(version, seq=seq)
        if vid is None:
            raise EditRefused([f"{d.path}: saved by someone else at this moment; try again"])
        try:
            await asyncio.to_thread(write_atomic, directory, d.path, d.written)
        except BaseException:
            await self.app.console.remove_version(vid)
            raise
        if not await self.app.reload_now():
            errors = list(self.app.config_errors)
            if d.new_file:
                remove_file(directory, d.path)
            else:
                write_atomic(directory, d.path, d.restored)
            await self.app.console.remove_version(vid)
            await self.app.reload_off_loop()
            raise EditRefused(errors)
        log.info(
            "schedule saved from the console",
            extra={"action": f"schedule_{action}", "event": event_id, "file": name},
        )

    async def history(
        self, *, file: str | None = None, event: str | None = None, limit: int = 200
    ) -> list[Version]:
        return await self.app.console.versions(file=file, event=event, limit=limit)

    async def version(self, version_id: int) -> Version | None:
        return await self.app.console.version(version_id)

    async def notice_outside_edits(self) -> int:
        """Record each schedule file whose text is not its last version's as "edited outside
        the console", with the diff (a file seen for the first time: its first version). Run
        at start and after each reload; two instances record one change once."""
        directory = self.app.settings.schedules_dir
        latest = await self.app.console.latest_versions()

        def read() -> dict[str, str]:
            out: dict[str, str] = {}
            for path in schedule_files(directory):
                try:
                    out[relative(directory, path)] = path.read_text(encoding="utf-8")
                except (OSError, UnicodeError):
                    continue  # the loader reports it
            return out

        texts = await asyncio.to_thread(read)
        # A save (here or on another instance) records its version just before it writes the
        # file: a file that differs from a version this recent is left for the next reload.
        settling = await self.app.console.recent_saves(since=self.app.clock() - SAVE_SETTLE_SECONDS)
        gone = {name: "" for name, (_, known) in latest.items() if known and name not in texts}
        recorded = 0
        for name, text in {**texts, **gone}.items():
            digest = file_hash(text) if name in texts else ""
            seq, known = latest.get(name, (0, None))
            if known == digest or name in settling:
                continue
            before = ""
            if known:
                previous = await self.app.console.version_with_hash(name, known)
                before = previous.content if previous else ""
            first = known is None
            version = NewVersion(
                file=name,
                action="initial" if first else "outside",
                event_id="",
                events=changed_events(before, text),
                role=OUTSIDE.role,
                client="",
                at=self.app.clock(),
                hash=digest,
                content=text,
                diff="" if first else unified_diff(before, text, name),
            )
            if await self.app.console.add_version(version, seq=seq + 1) is not None:
                recorded += 1
                if not first:
                    log.info(
                        "schedule file edited outside the console",
                        extra={"action": "schedule_outside_edit", "file": name},
                    )
        return recorded

    async def notice_outside_edits_logged(self) -> None:
        try:
            await self.notice_outside_edits()
        except StoreError as exc:  # the next reload tries again
            log.warning(
                "hand edits not recorded: the database is unavailable",
                extra={"action": "schedule_versions_failed", "error": str(exc)},
            )
