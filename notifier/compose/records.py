"""The delivery log written as a record (台账) an office keeps: XLSX or CSV, Chinese headers
with English beside, times in the configured zone, formula injection neutralised.

Both writers take rows in batches and hand back bytes as they go: the CSV is encoded batch by
batch; the XLSX is written by xlsxwriter in constant-memory mode to a temporary file, then
read back in chunks. Neither holds the whole record in memory.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import os
import re
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from email.header import decode_header, make_header
from email.utils import unquote
from typing import Literal, Protocol

from notifier.keys import EMAIL
from notifier.ledger.database import Database
from notifier.ledger.export import ExportRow, export_rows
from notifier.ledger.models import DeliveryFilter

Format = Literal["xlsx", "csv"]
FORMATS: tuple[Format, ...] = ("xlsx", "csv")
CONTENT_TYPES: Mapping[Format, str] = {
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "csv": "text/csv; charset=utf-8",
}
COLUMNS = (
    "事项 Event",
    "提醒 Reminder",
    "计划发送时间 Planned",
    "实际发送时间 Sent",
    "收件人 Recipient",
    "单位/名称 Name",
    "渠道 Channel",
    "状态 State",
    "尝试次数 Attempts",
    "最后错误 Last error",
    "Message-ID",
)
STATE_WORDS: Mapping[str, str] = {
    "pending": "待发送 pending",
    "sending": "发送中 sending",
    "sent": "已发送 sent",
    "failed": "失败 failed",
    "dead": "放弃 dead",
    "missed": "错过 missed",
    "skipped": "已退订跳过 skipped",
}
# A cell beginning with one of these is a formula to Excel, WPS and LibreOffice (OWASP's
# list: tab and CR start one too after a paste): it gets a leading apostrophe.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# Read back the XLSX in chunks of this size to stream it.
_CHUNK = 1 << 16
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_OUR_WORD = re.compile(r"=\?utf-8\?b\?([A-Za-z0-9+/=]*)\?=", re.IGNORECASE)
_OUR_WORDS = re.compile(r"(?:=\?utf-8\?b\?[A-Za-z0-9+/=]*\?=\s*)+", re.IGNORECASE)
_TO = re.compile(r"^To:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.MULTILINE | re.IGNORECASE)


def neutralise(value: str) -> str:
    """`value`, never read as a formula: a leading '=', '+', '-' or '@' gets an apostrophe."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def recipient_name(head: str) -> str:
    """The display name in the To header of a stored message's head ("" when none)."""
    match = _TO.search(head.partition("\r\n\r\n")[0])
    if match is None:
        return ""
    value = re.sub(r"\r?\n[ \t]", " ", match.group(1)).strip()
    # The display name is what precedes the final <address> (parseaddr would re-read a
    # decoded name with quotes or commas in it as several tokens).
    display = value.rpartition("<")[0].strip() if value.endswith(">") else ""
    if display.startswith('"') and display.endswith('"') and len(display) > 1:
        return unquote(display)
    words = _OUR_WORDS.fullmatch(display)
    if words is not None:
        # The words `message.encode_words` writes: decoded here at 1/20 of the stdlib's cost
        # (100,000 rows spent most of their export time in `email.header`).
        try:
            data = b"".join(base64.b64decode(w) for w in _OUR_WORD.findall(display))
            return data.decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            pass
    try:
        return str(make_header(decode_header(display)))
    except (ValueError, LookupError):
        return display


@dataclass(frozen=True, slots=True)
class RecordRow:
    event: str
    reminder: str
    planned: datetime
    sent: datetime | None
    recipient: str
    name: str
    channel: str
    state: str
    attempts: int
    error: str
    message_id: str


def record_row(
    row: ExportRow,
    *,
    tz: tzinfo,
    titles: Mapping[str, str],
    labels: Mapping[tuple[str, str], str],
) -> RecordRow:
    """One ledger row as the record shows it: the event's title and the reminder's words
    while the schedule still has them (else their ids), local naive times."""
    # To the second: a record's reader needs no more, and Excel shows no more.
    planned = datetime.fromtimestamp(row.due_at, tz).replace(tzinfo=None, microsecond=0)
    sent = None if row.sent_at is None else datetime.fromtimestamp(row.sent_at, tz)
    return RecordRow(
        event=titles.get(row.event_id, row.event_id),
        reminder=labels.get((row.event_id, row.reminder_id), row.reminder_id),
        planned=planned,
        sent=None if sent is None else sent.replace(tzinfo=None, microsecond=0),
        recipient=row.recipient,
        name=recipient_name(row.head) if row.channel == EMAIL else "",
        channel="邮件 email" if row.channel == EMAIL else row.channel,
        state=STATE_WORDS.get(row.state, row.state),
        attempts=row.attempts,
        error=row.last_error or "",
        message_id=row.message_id,
    )


class RecordWriter(Protocol):
    def add(self, rows: Sequence[RecordRow]) -> bytes:
        """Write rows; the bytes ready to go out now (b"" when they come at the end)."""

    def seal(self) -> None:
        """Write what is held back (the XLSX's zip); slow, so called off the event loop."""

    def finish(self) -> Iterator[bytes]:
        """The rest of the file, in chunks."""

    def close(self) -> None:
        """Drop what is left (a temporary file), finished or not."""


def _cells(r: RecordRow) -> list[str | int]:
    """The CSV cells: text neutralised, times formatted, attempts a number."""
    return [
        neutralise(r.event),
        neutralise(r.reminder),
        r.planned.strftime(TIME_FORMAT),
        r.sent.strftime(TIME_FORMAT) if r.sent else "",
        *(neutralise(v) for v in (r.recipient, r.name, r.channel, r.state)),
        r.attempts,
        neutralise(r.error),
        neutralise(r.message_id),
    ]


class CsvRecord:
    """UTF-8 with a BOM, so that Excel on a Chinese Windows opens it without mojibake."""

    def __init__(self) -> None:
        self._started = False

    def _encode(self, rows: Sequence[Sequence[str | int]]) -> bytes:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\r\n").writerows(rows)
        return buffer.getvalue().encode("utf-8")

    def _head(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        return "\ufeff".encode() + self._encode([COLUMNS])

    def add(self, rows: Sequence[RecordRow]) -> bytes:
        return self._head() + self._encode([_cells(r) for r in rows])

    def seal(self) -> None:
        pass

    def finish(self) -> Iterator[bytes]:
        head = self._head()
        if head:
            yield head

    def close(self) -> None:
        pass


class XlsxRecord:
    """One sheet, 投递记录, header frozen, times as Excel date-times in the configured zone."""

    def __init__(self) -> None:
        import xlsxwriter  # imported here: only an XLSX export needs it

        handle, self._path = tempfile.mkstemp(prefix="notifier-export-", suffix=".xlsx")
        os.close(handle)
        # constant_memory: each row is flushed to a temporary file once the next begins, and
        # strings are written inline (no shared-string table growing with the rows).
        self._book = xlsxwriter.Workbook(self._path, {"constant_memory": True})
        self._sheet = self._book.add_worksheet("投递记录")
        self._time = self._book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
        bold = self._book.add_format({"bold": True})
        for col, title in enumerate(COLUMNS):
            self._sheet.write_string(0, col, title, bold)
        for col, width in enumerate((24, 14, 20, 20, 30, 28, 12, 16, 8, 40, 44)):
            self._sheet.set_column(col, col, width)
        self._sheet.freeze_panes(1, 0)
        self._row = 1
        self._closed = False

    def add(self, rows: Sequence[RecordRow]) -> bytes:
        sheet = self._sheet
        for r in rows:
            n = self._row
            sheet.write_string(n, 0, neutralise(r.event))
            sheet.write_string(n, 1, neutralise(r.reminder))
            sheet.write_datetime(n, 2, r.planned, self._time)
            if r.sent is not None:
                sheet.write_datetime(n, 3, r.sent, self._time)
            for col, value in enumerate((r.recipient, r.name, r.channel, r.state), start=4):
                sheet.write_string(n, col, neutralise(value))
            sheet.write_number(n, 8, r.attempts)
            sheet.write_string(n, 9, neutralise(r.error))
            sheet.write_string(n, 10, neutralise(r.message_id))
            self._row += 1
        return b""

    def seal(self) -> None:
        if not self._closed:
            self._closed = True
            self._book.close()

    def finish(self) -> Iterator[bytes]:
        self.seal()
        with open(self._path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                yield chunk

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self._book.close()
            except Exception:
                pass
        try:
            os.unlink(self._path)
        except FileNotFoundError:
            pass


def record_writer(fmt: Format) -> RecordWriter:
    return XlsxRecord() if fmt == "xlsx" else CsvRecord()


class DeliveryRecord:
    """One export: the ledger's rows the filters select, streamed through a writer. Made by
    the App's `delivery_record` (which checks the filters), iterated by the edge."""

    def __init__(
        self,
        db: Database,
        filters: DeliveryFilter,
        fmt: Format,
        *,
        tz: tzinfo,
        titles: Mapping[str, str],
        labels: Mapping[tuple[str, str], str],
        keep: Callable[[ExportRow], bool] | None = None,
        stamp: str = "",
    ) -> None:
        self.db, self.filters, self.fmt = db, filters, fmt
        self.tz, self.titles, self.labels, self.keep = tz, titles, labels, keep
        self.content_type = CONTENT_TYPES[fmt]
        self.filename = f"notifier-deliveries{'-' + stamp if stamp else ''}.{fmt}"
        self.rows = 0

    def _write(self, writer: RecordWriter, batch: Sequence[ExportRow]) -> bytes:
        rows = [
            record_row(r, tz=self.tz, titles=self.titles, labels=self.labels)
            for r in batch
            if self.keep is None or self.keep(r)
        ]
        self.rows += len(rows)
        return writer.add(rows)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The file's bytes, batch by batch. The XLSX is written off the event loop."""
        writer = record_writer(self.fmt)
        try:
            async for batch in export_rows(self.db, self.filters):
                # Off the event loop: 1,000 rows take some 40 ms to turn into cells.
                data = await asyncio.to_thread(self._write, writer, batch)
                if data:
                    yield data
            if self.fmt == "xlsx":
                await asyncio.to_thread(writer.seal)  # the zip is written here
            for chunk in writer.finish():
                yield chunk
        finally:
            writer.close()
