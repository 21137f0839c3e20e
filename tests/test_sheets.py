"""Audiences from the office's own files: Excel workbooks with Chinese headers, CSV saved by
Excel on a Chinese Windows (GBK), bad rows reported where Excel shows them."""

from __future__ import annotations

import re
import zipfile
from datetime import date, datetime
from pathlib import Path

import pytest
from openpyxl import Workbook

from notifier.errors import ConfigError
from notifier.schedule.load import load_schedule
from notifier.schedule.sheets import cell_text
from tests.conftest import write_schedule

HEADERS = ["单位名称", "联系人", "邮箱", "电话", "截止日期"]


def write_workbook(path: Path, rows: list[list[object]], title: str = "企业名单") -> Path:
    """An .xlsx as an office keeps it: a title row above the header, Chinese headers, phone
    numbers that Excel made numbers, a date cell."""
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = title
    sheet.append(["2026年APEC商务旅行卡说明会邀请名单"])
    sheet.append(HEADERS)
    for row in rows:
        sheet.append(row)
    workbook.save(path)
    return path


def schedule_with(tmp_path: Path, audience: str) -> Path:
    return write_schedule(
        tmp_path,
        f"""\
        audiences:
          enterprises: {audience}
        events: []
        """,
    )


ENTERPRISES = [
    ["星海贸易有限公司", "张三", "zhang@xinghai.example.com", 13800138000, date(2026, 5, 20)],
    ["鹭岛科技有限公司", "李四", "li@ludao.example.com", 13900139000, datetime(2026, 5, 21, 0, 0)],
]


def test_an_excel_workbook_with_chinese_headers_is_an_audience_with_its_columns_as_fields(
    tmp_path: Path,
) -> None:
    write_workbook(tmp_path / "企业.xlsx", ENTERPRISES)
    schedule_with(tmp_path, "{xlsx: 企业.xlsx, external: true}")
    audience = load_schedule(tmp_path).audiences["enterprises"]
    assert audience.size == 2
    first = next(audience.recipients())
    assert (first.email, first.name) == ("zhang@xinghai.example.com", "星海贸易有限公司")
    ctx = first.context()
    # Phone numbers stay digits (not 1.38e10 nor 13800138000.0); dates are dates.
    assert ctx["电话"] == "13800138000"
    assert ctx["截止日期"] == "2026-05-20"
    assert ctx["联系人"] == "张三"


def test_a_workbook_cell_is_read_as_its_value_not_its_formula(tmp_path: Path) -> None:
    path = write_workbook(
        tmp_path / "f.xlsx", [["甲公司", "王五", '=LOWER("WANG@JIA.EXAMPLE.COM")']]
    )
    # openpyxl writes no cached value; Excel does. Put one in as Excel would.
    with zipfile.ZipFile(path) as old:
        parts = {name: old.read(name) for name in old.namelist()}
    sheet = parts["xl/worksheets/sheet1.xml"].decode()
    sheet = re.sub(
        r'<c r="C3">(<f>[^<]*</f>)<v ?/>', r'<c r="C3" t="str">\1<v>wang@jia.example.com</v>', sheet
    )
    assert "wang@jia.example.com</v>" in sheet
    parts["xl/worksheets/sheet1.xml"] = sheet.encode()
    with zipfile.ZipFile(path, "w") as new:
        for name, data in parts.items():
            new.writestr(name, data)
    schedule_with(tmp_path, "{xlsx: f.xlsx}")
    [recipient] = load_schedule(tmp_path).audiences["enterprises"].recipients()
    assert recipient.email == "wang@jia.example.com"


def test_a_gbk_csv_as_excel_on_a_chinese_windows_saves_it_is_read(tmp_path: Path) -> None:
    text = (
        "单位名称,联系人,邮箱,电话\r\n"
        "星海贸易有限公司,张三,zhang@xinghai.example.com,13800138000\r\n"
    )
    (tmp_path / "企业.csv").write_bytes(text.encode("gbk"))
    schedule_with(tmp_path, "{csv: 企业.csv}")
    [recipient] = load_schedule(tmp_path).audiences["enterprises"].recipients()
    assert (recipient.email, recipient.name) == ("zhang@xinghai.example.com", "星海贸易有限公司")
    assert recipient.context()["联系人"] == "张三"


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030"])
def test_a_csv_in_utf8_with_or_without_bom_or_gb18030_is_read(
    tmp_path: Path, encoding: str
) -> None:
    # 㐀 (U+3400) is in GB18030 but not in GBK.
    text = "邮箱,姓名\nzhang@example.com,张㐀\n"
    (tmp_path / "a.csv").write_bytes(text.encode(encoding))
    schedule_with(tmp_path, "{csv: a.csv}")
    [recipient] = load_schedule(tmp_path).audiences["enterprises"].recipients()
    assert recipient.name == "张㐀"


def test_a_csv_in_no_known_encoding_is_an_error_naming_the_file_and_the_byte(
    tmp_path: Path,
) -> None:
    # 0xFF starts no character in UTF-8 nor in GB18030.
    (tmp_path / "a.csv").write_bytes(b"email,name\r\na@example.com,\xff\xff\r\n")
    schedule_with(tmp_path, "{csv: a.csv}")
    with pytest.raises(ConfigError) as raised:
        load_schedule(tmp_path)
    text = str(raised.value)
    assert str(tmp_path / "a.csv") in text
    assert "not UTF-8 (byte 0xff at offset 26, line 2)" in text
    assert "not GB18030/GBK (byte 0xff at offset 26, line 2)" in text


def test_bad_rows_are_reported_at_excels_row_with_the_column_and_the_good_rows_kept(
    tmp_path: Path,
) -> None:
    rows: list[list[object]] = [
        ["甲公司", "张三", "jia@example.com", 1, None],  # row 3
        ["乙公司", "李四", "not-an-address", 2, None],  # row 4
        [None, None, None, None, None],  # row 5: empty
        ["丙公司\n分公司", "王五", "bing@example.com", 3, None],  # row 6
        ["丁公司", "赵六", "JIA@example.com", 4, None],  # row 7: again, another case
        ["戊公司", "钱七", "wu@example.com", 5, None],  # row 8
    ]
    path = write_workbook(tmp_path / "list.xlsx", rows)
    schedule_with(tmp_path, "{xlsx: list.xlsx}")
    schedule = load_schedule(tmp_path)
    audience = schedule.audiences["enterprises"]
    assert [r.email for r in audience.recipients()] == ["jia@example.com", "wu@example.com"]
    assert audience.size == 2
    warnings = [w.removeprefix(f"{path}: ") for w in schedule.warnings]
    assert len(warnings) == 3, warnings
    assert warnings[0].startswith("row 4: 'not-an-address' is not a valid email address")
    assert "[column 邮箱]" in warnings[0]
    assert warnings[1].startswith("row 6: name '丙公司\\n分公司' contains a line break")
    assert "[column 单位名称]" in warnings[1]
    assert warnings[2].startswith("row 7: JIA@example.com appears again (first at row 3)")


def test_an_address_twice_in_a_csv_is_one_recipient(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("email\na@example.com\nb@example.com\nA@Example.com\n")
    schedule_with(tmp_path, "{csv: a.csv}")
    schedule = load_schedule(tmp_path)
    assert [r.email for r in schedule.audiences["enterprises"].recipients()] == [
        "a@example.com",
        "b@example.com",
    ]
    assert any(
        "line 4: A@Example.com appears again (first at line 2)" in w for w in schedule.warnings
    )


@pytest.mark.parametrize(
    "text",
    [
        "邮箱,电子邮件\nwins@example.com,loses@example.com\n",
        "电子邮件,邮箱\nloses@example.com,wins@example.com\n",  # the list's order, not the file's
        "E-mail,邮件地址\nwins@example.com,loses@example.com\n",
    ],
)
def test_the_first_listed_email_header_wins_when_several_are_present(
    tmp_path: Path, text: str
) -> None:
    (tmp_path / "a.csv").write_text(text, encoding="utf-8")
    schedule_with(tmp_path, "{csv: a.csv}")
    [recipient] = load_schedule(tmp_path).audiences["enterprises"].recipients()
    assert recipient.email == "wins@example.com"


def test_name_priority_unit_name_over_contact(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("联系人,邮箱,单位名称\n张三,a@example.com,星海贸易\n")
    schedule_with(tmp_path, "{csv: a.csv}")
    [recipient] = load_schedule(tmp_path).audiences["enterprises"].recipients()
    assert recipient.name == "星海贸易"
    assert recipient.context()["联系人"] == "张三"


def test_an_explicit_column_mapping_picks_the_offices_own_headers(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(
        "企业名称,联系邮箱,邮箱\n星海贸易,right@example.com,wrong@example.com\n"
    )
    schedule_with(tmp_path, "{csv: a.csv, columns: {email: 联系邮箱, name: 企业名称}}")
    [recipient] = load_schedule(tmp_path).audiences["enterprises"].recipients()
    assert (recipient.email, recipient.name) == ("right@example.com", "星海贸易")


def test_a_mapped_column_that_is_not_there_is_an_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("企业名称,邮箱\n星海贸易,a@example.com\n")
    schedule_with(tmp_path, "{csv: a.csv, columns: {email: 联系邮箱}}")
    with pytest.raises(ConfigError) as raised:
        load_schedule(tmp_path)
    assert (
        f"audiences.enterprises.csv: {tmp_path / 'a.csv'}: "
        "the header row must have an email column (联系邮箱)"
    ) in str(raised.value)


def test_a_sheet_is_chosen_by_name_and_an_unknown_one_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "book.xlsx"
    workbook = Workbook()
    first = workbook.active
    assert first is not None
    first.title = "说明"
    first.append(["本表为邀请名单"])
    second = workbook.create_sheet("高校")
    second.append(["名称", "电子邮箱"])
    second.append(["厦门某大学", "gj@univ.example.edu.cn"])
    workbook.save(path)
    schedule_with(tmp_path, "{xlsx: book.xlsx, sheet: 高校}")
    [recipient] = load_schedule(tmp_path).audiences["enterprises"].recipients()
    assert (recipient.email, recipient.name) == ("gj@univ.example.edu.cn", "厦门某大学")
    schedule_with(tmp_path, "{xlsx: book.xlsx, sheet: 企业}")
    with pytest.raises(ConfigError) as raised:
        load_schedule(tmp_path)
    assert "no sheet '企业'; the workbook has 说明, 高校" in str(raised.value)


def test_a_workbook_under_csv_is_pointed_at_the_xlsx_key(tmp_path: Path) -> None:
    write_workbook(tmp_path / "企业.xlsx", ENTERPRISES)
    schedule_with(tmp_path, "{csv: 企业.xlsx}")
    with pytest.raises(ConfigError) as raised:
        load_schedule(tmp_path)
    assert "is an Excel workbook: write xlsx: 企业.xlsx" in str(raised.value)


def test_a_broken_workbook_is_an_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "x.xlsx").write_bytes(b"not a zip")
    schedule_with(tmp_path, "{xlsx: x.xlsx}")
    with pytest.raises(ConfigError) as raised:
        load_schedule(tmp_path)
    assert f"{tmp_path / 'x.xlsx'}: not a readable .xlsx workbook" in str(raised.value)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (13800138000, "13800138000"),
        (13800138000.0, "13800138000"),
        (1.5, "1.5"),
        (date(2026, 5, 20), "2026-05-20"),
        (datetime(2026, 5, 20, 9, 30), "2026-05-20 09:30"),
        (None, ""),
        (True, "TRUE"),
    ],
)
def test_a_cell_reads_as_excel_shows_it(value: object, text: str) -> None:
    assert cell_text(value) == text


def test_a_table_placed_lower_and_to_the_right_keeps_excels_row_numbers(tmp_path: Path) -> None:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet["C4"], sheet["D4"] = "名称", "邮箱"
    sheet["C5"], sheet["D5"] = "甲", "jia@example.com"
    sheet["C6"], sheet["D6"] = "乙", "bad"
    workbook.save(tmp_path / "b.xlsx")
    schedule_with(tmp_path, "{xlsx: b.xlsx}")
    schedule = load_schedule(tmp_path)
    assert [r.name for r in schedule.audiences["enterprises"].recipients()] == ["甲"]
    assert any(": row 6: 'bad' is not a valid" in w for w in schedule.warnings), schedule.warnings
