"""The console in a real browser: Debian's Chromium driven by Playwright, against a real
service (App, aiohttp, delivery worker) on a real SQLite file and a real SMTP server.

No browser is a failure, not a skip: the console is untested without one. Screenshots of each
section at 1280x800 and 390x844 are kept under var/screenshots/.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from notifier.ledger.models import State
from notifier.service import App
from tests.conftest import ROOT, workbook_bytes
from tests.console_fixtures import (
    ADMIN_TOKEN,
    EDITOR_TOKEN,
    NOW,
    STAFF,
    UNSUBSCRIBED,
    VIEWER_TOKEN,
    Console,
    console_settings,
    hook_secret_env,
    start_console,
)
from tests.console_server import ConsoleServer
from tests.smtp_server import SmtpServer
from tests.waiting import wait_until

__all__ = ["hook_secret_env"]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = ROOT / "var" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
WAIT_SECONDS = 10.0

# Each section: its path and texts the test calendar must make it show.
SECTIONS: dict[str, tuple[str, list[str]]] = {
    "overview": (
        "/",
        ["接下来的 10 次发送", "全民国家安全教育日", "2026-04-03 09:00", "官方数据", "暂定"],
    ),
    "calendar": ("/calendar", ["2026年4月", "知识产权宣传周", "全民国家安全教育日", "清明节"]),
    "events": (
        "/events",
        ["每年4月15日", "每年农历正月初一", "每季度末月第三个星期四", "每年4月20日至26日"],
    ),
    "event": (
        "/events/security-day",
        ["4月4日至6日清明节放假，提前至4月3日", "【提醒】全民国家安全教育日", "法治处"],
    ),
    "deliveries": ("/deliveries", ["投递记录", "dead", "sent", "筛选"]),
    "delivery": ("/deliveries/{dead}", ["550 5.1.1 mailbox unavailable", "raw body of seed/dead"]),
    "audiences": ("/audiences", ["enterprises", "line 3", UNSUBSCRIBED, "staff"]),
    "config": ("/config", ["配置有效", "清明节", "/hooks/visit-request", "审计日志"]),
    "holidays": ("/config/holidays", ["导入放假安排", "通知全文", "预览"]),
}
NAV_LABELS = ["概览", "日历", "事件", "投递记录", "受众", "配置"]


# Module scope, not session: Playwright's sync API keeps its event loop marked running in the
# main thread until it stops, and every pytest-asyncio test after it would then fail ("cannot
# be called from a running event loop"). All browser tests live in this module, so this is
# still one Chromium for all of them.
@pytest.fixture(scope="module")
def playwright_() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright_: Playwright) -> Iterator[Browser]:
    """One Chromium for all the browser tests. Missing: the tests fail, loudly."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"no browser at {CHROMIUM}: install Debian's chromium package"
            " (apt-get install -y chromium fonts-wqy-zenhei); the console tests need it"
        )
    browser = playwright_.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture
def console(
    tmp_path: Path, smtp_server: Callable[..., SmtpServer], hook_secret_env: None
) -> Iterator[Console]:
    running = start_console(tmp_path, smtp_server())
    yield running
    running.server.stop()


@pytest.fixture(scope="module")
def shared_console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """One service for the tests that only read (sections, sign-in page, calendar)."""
    running = start_console(tmp_path_factory.mktemp("shared-console"), None, worker=False)
    yield running
    running.server.stop()


@pytest.fixture
def idle_console(tmp_path: Path, hook_secret_env: None) -> Iterator[Console]:
    """No delivery worker: what an action did to a row stays visible."""
    running = start_console(tmp_path, None, worker=False)
    yield running
    running.server.stop()


class Errors:
    """Console errors and uncaught page errors of one page."""

    def __init__(self, page: Page) -> None:
        self.items: list[str] = []
        page.on("console", lambda m: self.items.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.items.append(str(e)))


def new_page(browser: Browser, viewport: dict[str, int] = DESKTOP) -> tuple[BrowserContext, Page]:
    context = browser.new_context(viewport=viewport, locale="zh-CN")  # type: ignore[arg-type]
    context.set_default_timeout(WAIT_SECONDS * 1000)
    return context, context.new_page()


def sign_in(page: Page, console: Console, token: str) -> None:
    page.goto(console.url + "/")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_selector("nav[aria-label]")


def no_sideways_scroll(page: Page) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def section_url(console: Console, name: str) -> str:
    return console.url + SECTIONS[name][0].format(**console.ids)


@pytest.mark.parametrize("name", list(SECTIONS))
def test_each_section_loads_clean_shows_the_calendar_and_fits_a_phone(
    browser: Browser, shared_console: Console, name: str
) -> None:
    console = shared_console
    context, page = new_page(browser)
    try:
        errors = Errors(page)
        sign_in(page, console, ADMIN_TOKEN)
        page.goto(section_url(console, name))
        body = page.inner_text("body")
        for text in SECTIONS[name][1]:
            assert text in body, f"{name}: {text!r} not shown"
        assert page.evaluate("document.documentElement.lang") == "zh-CN"
        if name == "event":  # the HTML body, in its sandboxed frame, styles and all
            frame = page.frame_locator("iframe.html").locator("body")
            assert "法治处：全民国家安全教育日" in frame.inner_text()
            assert page.locator("iframe.html").get_attribute("sandbox") == ""
        labels = page.locator("header nav a").all_inner_texts()
        assert [label.split()[0] for label in labels] == NAV_LABELS
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}-1280x800.png"), full_page=True)
        page.set_viewport_size(PHONE)  # type: ignore[arg-type]
        page.reload()
        if name == "event":  # let the frame load before the picture is taken
            assert "法治处" in page.frame_locator("iframe.html").locator("body").inner_text()
        assert no_sideways_scroll(page), f"{name}: scrolls sideways at 390 px"
        page.screenshot(path=str(SHOTS / f"{name}-390x844.png"), full_page=True)
        assert errors.items == []
    finally:
        context.close()


def test_signed_out_every_section_shows_the_sign_in_page(
    browser: Browser, shared_console: Console
) -> None:
    console = shared_console
    context, page = new_page(browser, PHONE)
    try:
        errors = Errors(page)
        for name in SECTIONS:
            page.goto(section_url(console, name))
            assert page.locator("input#token[type=password]").is_visible(), name
            assert "登录" in page.title()
            assert page.locator("nav[aria-label]").count() == 0
            assert no_sideways_scroll(page)
        page.screenshot(path=str(SHOTS / "signin-390x844.png"))
        assert errors.items == []
    finally:
        context.close()


def test_a_wrong_token_stays_on_the_sign_in_page_and_is_audited(
    browser: Browser, idle_console: Console
) -> None:
    console = idle_console
    context, page = new_page(browser)
    try:
        page.goto(console.url + "/events")
        page.fill("#token", "wrong")
        page.click("button[type=submit]")
        assert "令牌错误" in page.inner_text("[role=alert]")
        sign_in(page, console, ADMIN_TOKEN)
        page.goto(console.url + "/audit")
        body = page.inner_text("table.audit")
        assert "sign_in_failed" in body and "sign_in" in body and "127.0.0.1" in body
    finally:
        context.close()


def test_the_calendar_moves_by_month_and_a_click_on_a_day_lists_its_sends(
    browser: Browser, shared_console: Console
) -> None:
    console = shared_console
    context, page = new_page(browser)
    try:
        errors = Errors(page)
        sign_in(page, console, ADMIN_TOKEN)
        page.goto(console.url + "/calendar")
        assert page.locator(".day.today").get_attribute("data-day") == "2026-04-01"
        # The publicity week is drawn across its seven days, and send days are marked.
        assert page.locator(".day[data-day='2026-04-20'] .span-start").count() == 1
        assert page.locator(".day[data-day='2026-04-23'] .span-mid").count() == 1
        assert page.locator(".day[data-day='2026-04-26'] .span-end").count() == 1
        assert page.locator(".day[data-day='2026-04-03'] .sendmark").count() == 1
        assert page.locator(".day[data-day='2026-04-05'] .sendmark").count() == 0
        page.click(".day[data-day='2026-04-03']")
        day = page.inner_text("#day")
        assert "2026年4月3日的发送" in day and "全民国家安全教育日" in day and "09:00" in day
        assert "清明节放假，提前至4月3日" in day
        page.click("a[rel=next]")
        assert "2026年5月" in page.inner_text(".monthnav")
        assert page.locator(".day[data-day='2026-05-01'] .span-start").count() == 1  # 民法典宣传月
        page.click("nav.years a:text('2027')")
        assert "2027年5月" in page.inner_text(".monthnav")
        assert errors.items == []
    finally:
        context.close()


def test_send_now_shows_the_audience_size_and_reaches_the_smtp_server(
    browser: Browser, console: Console
) -> None:
    assert console.smtp is not None
    context, page = new_page(browser)
    try:
        errors = Errors(page)
        sign_in(page, console, ADMIN_TOKEN)
        page.goto(console.url + "/events/security-day")
        page.click("text=立即发送 Send now…")
        assert page.inner_text(".audience-size") == "2"
        page.click("button.danger")
        assert "已创建 2 条发送" in page.inner_text(".notice")
        wait_until(
            lambda: len(console.smtp.sink.messages) >= 2,
            within=WAIT_SECONDS,
            what="two messages at the SMTP server",
        )  # type: ignore[union-attr]
        got = sorted(m["To"].addresses[0].addr_spec for m in console.smtp.sink.messages)
        assert got == STAFF
        page.goto(console.url + "/audit")
        assert "send_now" in page.inner_text("table.audit")
        assert errors.items == []
    finally:
        context.close()


def test_retry_moves_a_dead_row_back_to_pending_and_resend_makes_a_new_row(
    browser: Browser, idle_console: Console
) -> None:
    console = idle_console
    context, page = new_page(browser)
    try:
        errors = Errors(page)
        sign_in(page, console, ADMIN_TOKEN)
        page.goto(console.url + f"/deliveries/{console.ids['dead']}")
        page.click("text=重试 Retry")
        assert "已重新排队" in page.inner_text(".notice")
        assert page.inner_text("h1 .state") == "pending"

        async def state_of(app: App) -> State | None:
            got = await app.store.get(console.ids["dead"])
            return None if got is None else got.state

        assert console.server.call(state_of) is State.PENDING
        assert "retry" in page.inner_text("ul.history")
        # The sent row has no retry; a dead one resent gets a new pending row.
        page.goto(console.url + f"/deliveries/{console.ids['sent']}")
        assert page.locator("text=重试 Retry").count() == 0
        assert errors.items == []
    finally:
        context.close()


def test_a_post_without_the_csrf_token_gets_403(browser: Browser, idle_console: Console) -> None:
    console = idle_console
    context, page = new_page(browser)
    try:
        sign_in(page, console, ADMIN_TOKEN)
        dead = console.ids["dead"]
        for path, data in [
            ("/events/security-day/send", {}),
            (f"/deliveries/{dead}/retry", {}),
            (f"/deliveries/{dead}/resend", {}),
            ("/audiences/resubscribe", {"email": UNSUBSCRIBED}),
            ("/signout", {}),
        ]:
            resp = page.request.post(console.url + path, form=data)
            assert resp.status == 403, path
            assert resp.headers["content-type"].startswith("text/html"), path
            assert "CSRF" in resp.text()
        # Nothing happened: the row is still dead and the session still works.
        page.goto(console.url + f"/deliveries/{dead}")
        assert page.inner_text("h1 .state") == "dead"
    finally:
        context.close()


def test_a_viewer_sees_no_action_buttons_and_cannot_act(
    browser: Browser, idle_console: Console
) -> None:
    console = idle_console
    context, page = new_page(browser)
    try:
        errors = Errors(page)
        sign_in(page, console, VIEWER_TOKEN)
        assert "查看者" in page.inner_text(".role")
        page.goto(console.url + "/events/security-day")
        assert "【提醒】全民国家安全教育日" in page.inner_text(".preview")
        assert page.locator("text=立即发送").count() == 0
        page.goto(console.url + f"/deliveries/{console.ids['dead']}")
        assert page.locator("text=重试 Retry").count() == 0
        page.goto(console.url + "/audiences")
        assert page.locator("text=恢复订阅").count() == 0
        csrf = page.locator("form.signout input[name=csrf]").get_attribute("value")
        assert csrf
        for path, data in [
            ("/events/security-day/send", {"csrf": csrf}),
            (f"/deliveries/{console.ids['dead']}/retry", {"csrf": csrf}),
            ("/audiences/resubscribe", {"csrf": csrf, "email": UNSUBSCRIBED}),
        ]:
            resp = page.request.post(console.url + path, form=data)
            assert resp.status == 403, path
            assert "查看者不能执行操作" in resp.text()
        page.goto(console.url + f"/deliveries/{console.ids['dead']}")
        assert page.inner_text("h1 .state") == "dead"
        assert errors.items == []
    finally:
        context.close()


def test_re_subscribe_is_audited(browser: Browser, idle_console: Console) -> None:
    console = idle_console
    context, page = new_page(browser)
    try:
        sign_in(page, console, ADMIN_TOKEN)
        page.goto(console.url + "/audiences")
        page.click("text=恢复订阅 Re-subscribe")
        assert "已恢复订阅" in page.inner_text(".notice")
        assert UNSUBSCRIBED not in page.inner_text("table.unsubscribes")
        page.goto(console.url + "/audit")
        assert f"email:{UNSUBSCRIBED}" in page.inner_text("table.audit")
    finally:
        context.close()


def test_sign_out_ends_the_session_even_for_a_copied_cookie(
    browser: Browser, idle_console: Console
) -> None:
    console = idle_console
    context, page = new_page(browser)
    try:
        sign_in(page, console, ADMIN_TOKEN)
        cookies = context.cookies()
        (session,) = [c for c in cookies if c["name"] == "notifier_session"]
        assert session["httpOnly"] is True
        assert session["sameSite"] == "Strict"
        page.click("text=退出 Sign out")
        assert page.locator("input#token").is_visible()
        # The old cookie, put back, opens nothing: the session row is gone.
        context.add_cookies([session])  # type: ignore[list-item]
        page.goto(console.url + "/deliveries")
        assert page.locator("input#token").is_visible()
    finally:
        context.close()


def test_a_first_run_without_an_admin_token_prints_a_link_that_signs_one_browser_in_once(
    browser: Browser,
    tmp_path: Path,
    hook_secret_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 17: a first run without NOTIFIER_ADMIN_TOKEN showed a sign-in page nobody could
    use. The start prints a one-time link; opened in a browser, it signs that browser in as
    admin; opened again (another browser, a forwarded copy), it is refused."""
    settings = console_settings(tmp_path, None, admin_token=None, viewer_token=None)
    server = ConsoleServer(settings, clock=time.time, worker=False).start()
    first, page = new_page(browser)
    second, other = new_page(browser)
    try:
        printed = capsys.readouterr().out
        match = re.search(r"http://127\.0\.0\.1:\d+/signin/once\?token=\S+", printed)
        assert match, printed
        errors = Errors(page)
        page.goto(server.url + "/calendar")
        assert "一次性登录链接" in page.inner_text("section.signin")
        page.goto(match.group(0))
        page.wait_for_selector("nav[aria-label]")
        assert page.url == server.url + "/"
        assert "管理员" in page.inner_text(".role")
        page.goto(server.url + "/events/security-day")
        assert page.locator("text=立即发送").count() > 0  # an admin: it can act
        page.goto(server.url + "/audit")
        assert "one-time link" in page.inner_text("table.audit")
        page.screenshot(path=str(SHOTS / "signin-link-1280x800.png"))
        other.goto(match.group(0))
        assert "链接无效" in other.inner_text("main")
        assert other.locator("nav[aria-label]").count() == 0
        other.goto(server.url + "/")
        assert other.locator("nav[aria-label]").count() == 0  # still signed out
        assert errors.items == []
    finally:
        first.close()
        second.close()
        server.stop()


def test_staff_paste_the_holiday_notice_see_what_moves_and_save_it(
    browser: Browser, idle_console: Console
) -> None:
    console = idle_console
    notice = (ROOT / "tests" / "fixtures" / "notices" / "2027-made-up.txt").read_text("utf-8")
    context, page = new_page(browser, PHONE)
    try:
        errors = Errors(page)
        sign_in(page, console, ADMIN_TOKEN)
        page.goto(console.url + "/config")
        page.click("a.import-link")
        # Copied with the news page around it: fits the form only as multipart (3 bytes a
        # character, not 9 urlencoded).
        junk = "相关阅读：各地迎新春文化活动精彩纷呈，铁路部门增开临时旅客列车。\n" * 60
        page.fill("textarea#notice", "来源：新华网\n" + notice + "\n" + junk)
        page.click("text=预览 Preview")
        assert page.inner_text(".moved-count") == "1"
        moved = page.inner_text("table.moved")
        assert "春节" in moved and "2027-01-29" in moved and "2027-01-31" in moved
        assert no_sideways_scroll(page)
        page.click("text=保存并载入 Save and load")
        assert "已导入并载入 2027 年放假安排" in page.inner_text(".notice")
        assert "2027年 · 配置表 config table" in page.inner_text("body")
        assert "import_holidays" in page.inner_text("table.audit")
        assert errors.items == []
    finally:
        context.close()


# --- editing events (issue 22) ---

LECTURES = """\
# 法治处的讲座安排（手写，请保留本注释）
events:
  # 每年一次的宪法讲座
  - id: lecture
    title: 宪法讲座
    date: "9·10"   # 教师节当天 / on Teachers' Day
    reminders:
      - before: 5 days
        # 提前一周改为提前五天
        replaces: before-1w
"""


@pytest.fixture
def lectures_console(tmp_path: Path, hook_secret_env: None) -> Iterator[Console]:
    """An idle console whose schedules hold a hand-written file with comments."""
    settings = console_settings(tmp_path)
    (settings.schedules_dir / "lectures.yaml").write_text(LECTURES, encoding="utf-8")
    server = ConsoleServer(settings, clock=lambda: NOW, worker=False)
    server.start()
    yield Console(server, None, {})
    server.stop()


def test_staff_create_an_event_see_the_holiday_move_before_saving_then_save_it(
    browser: Browser, lectures_console: Console
) -> None:
    console = lectures_console
    context, page = new_page(browser)
    try:
        errors = Errors(page)
        sign_in(page, console, ADMIN_TOKEN)
        page.goto(console.url + "/events")
        page.get_by_role("link", name="新建事件").click()
        page.get_by_label("编号 id").fill("law-lecture")
        page.get_by_label("标题 title").fill("普法讲座")
        page.get_by_label("日期 date").fill("4月6日")
        page.locator("#r0_kind").select_option("on")
        page.locator("#r0_value").fill("start")
        page.get_by_role("button", name="预览").click()
        preview = page.locator("section.edit-preview").inner_text()
        # 04-06 is in the 清明 holiday: the send moves to 04-03, shown before saving.
        assert "2026-04-03 09:00" in preview
        assert "4月4日至6日清明节放假，提前至4月3日" in preview
        assert "检查通过" in preview and "新增" in preview
        assert not (console.server.settings.schedules_dir / "console.yaml").exists()
        page.get_by_role("button", name="保存").click()
        page.wait_for_url(re.compile(r"/events/law-lecture\?notice=saved"))
        assert "已保存" in page.inner_text("body")
        assert "law-lecture" in (console.server.settings.schedules_dir / "console.yaml").read_text(
            encoding="utf-8"
        )
        assert errors.items == []
    finally:
        context.close()


def test_editing_in_the_browser_keeps_the_files_comments(
    browser: Browser, lectures_console: Console
) -> None:
    console = lectures_console
    path = console.server.settings.schedules_dir / "lectures.yaml"
    context, page = new_page(browser)
    try:
        sign_in(page, console, ADMIN_TOKEN)
        page.goto(console.url + "/events/lecture")
        page.get_by_role("link", name="编辑").click()
        assert page.get_by_label("日期 date").input_value() == "9·10"
        page.get_by_label("标题 title").fill("宪法专题讲座")
        page.get_by_role("button", name="预览").click()
        assert "+title: 宪法专题讲座" in (page.locator("pre.diff").text_content() or "")
        page.get_by_role("button", name="保存").click()
        page.wait_for_url(re.compile(r"/events/lecture\?notice=saved"))
        assert "宪法专题讲座" in page.inner_text("h1")
        kept = LECTURES.replace("title: 宪法讲座", "title: 宪法专题讲座")
        assert path.read_text(encoding="utf-8") == kept
    finally:
        context.close()


def test_the_second_of_two_people_editing_one_event_is_refused_with_what_changed(
    browser: Browser, lectures_console: Console
) -> None:
    console = lectures_console
    first, page1 = new_page(browser)
    second, page2 = new_page(browser)
    try:
        for page in (page1, page2):
            sign_in(page, console, ADMIN_TOKEN)
            page.goto(console.url + "/events/lecture/edit")
        page1.get_by_label("日期 date").fill("9·11")
        page1.get_by_role("button", name="保存").click()
        page1.wait_for_load_state()
        assert "notice=saved" in page1.url, page1.inner_text("body")
        page2.get_by_label("标题 title").fill("另一个标题")
        page2.get_by_role("button", name="保存").click()
        body = page2.inner_text("body")
        assert "未保存：事件已被修改" in body
        assert "-date: 9·10" in body and "+date: 9·11" in body
        text = (console.server.settings.schedules_dir / "lectures.yaml").read_text(encoding="utf-8")
        assert '"9·11"' in text and "另一个标题" not in text
    finally:
        first.close()
        second.close()


def test_a_viewer_sees_no_edit_buttons_and_an_editor_edits(
    browser: Browser, lectures_console: Console
) -> None:
    console = lectures_console
    context, page = new_page(browser)
    try:
        sign_in(page, console, VIEWER_TOKEN)
        page.goto(console.url + "/events")
        assert page.get_by_role("link", name="新建事件").count() == 0
        page.goto(console.url + "/events/lecture")
        assert page.get_by_role("link", name="编辑").count() == 0
        assert page.get_by_role("link", name="删除").count() == 0
    finally:
        context.close()
    context, page = new_page(browser)
    try:
        sign_in(page, console, EDITOR_TOKEN)
        assert "编辑者 editor" in page.inner_text("header")
        page.goto(console.url + "/events/lecture")
        page.get_by_role("link", name="删除").click()
        assert "取消" in page.locator("table.changes").inner_text()
        page.get_by_role("button", name="删除").click()
        page.wait_for_url(re.compile(r"/events\?notice=deleted"))
        assert "宪法讲座" not in page.inner_text("main")
        page.goto(console.url + "/audit")
        assert "编辑者不能查看审计日志" in page.inner_text("body")
    finally:
        context.close()


def test_staff_revert_a_version_from_the_history_after_seeing_the_preview(
    browser: Browser, lectures_console: Console
) -> None:
    console = lectures_console
    path = console.server.settings.schedules_dir / "lectures.yaml"
    path.write_text(LECTURES.replace('"9·10"', '"9·12"'), encoding="utf-8")  # by hand
    assert console.server.call(lambda app: app.reload_now())
    context, page = new_page(browser)
    try:
        errors = Errors(page)
        sign_in(page, console, EDITOR_TOKEN)
        page.goto(console.url + "/events/lecture")
        page.get_by_role("link", name="历史").click()
        rows = page.locator("table.history tbody tr")
        assert "在控制台之外编辑" in rows.nth(0).inner_text()
        assert "首次记录" in rows.nth(1).inner_text()
        rows.nth(1).get_by_role("link", name="查看").click()
        page.get_by_role("link", name="恢复此版本").click()
        changes = page.locator("table.changes").inner_text()
        assert "改期" in changes and "2026-09-07 09:00" in changes and "2026-09-04 09:00" in changes
        assert path.read_text(encoding="utf-8") != LECTURES  # nothing written by a preview
        page.get_by_role("button", name="保存").click()
        page.wait_for_url(re.compile(r"/history\?file=lectures.yaml"))
        assert "已恢复" in page.inner_text("main")
        assert path.read_text(encoding="utf-8") == LECTURES
        assert "恢复 reverted" in page.locator("table.history tbody tr").nth(0).inner_text()
        assert errors.items == []
    finally:
        context.close()


def test_an_editor_uploads_a_list_sees_its_bad_rows_and_replaces_the_old_one(
    browser: Browser, lectures_console: Console
) -> None:
    console = lectures_console
    path = console.server.settings.schedules_dir / "enterprises.csv"
    listing = "email,name,org\nnew@corp.example.com,丁公司,丁\nbroken,戊公司,戊\n"
    context, page = new_page(browser)
    try:
        errors = Errors(page)
        sign_in(page, console, EDITOR_TOKEN)
        page.goto(console.url + "/audiences")
        page.get_by_role("link", name="上传名单").click()
        page.get_by_label("名单文件 file").set_input_files(
            files=[{"name": "名单.csv", "mimeType": "text/csv", "buffer": listing.encode("gbk")}]
        )
        page.get_by_role("button", name="预览").click()
        section = page.locator("section.list-preview").inner_text()
        assert "丁公司" in section and "line 3" in section
        assert "new@corp.example.com" not in path.read_text(encoding="utf-8")
        page.get_by_role("button", name="保存").click()
        page.wait_for_url(re.compile(r"/audiences\?notice=audience-saved"))
        assert path.read_text(encoding="utf-8") == listing
        assert errors.items == []
    finally:
        context.close()


def test_an_editor_uploads_a_workbook_sees_its_excel_rows_and_replaces_the_xlsx_file(
    browser: Browser, tmp_path: Path, hook_secret_env: None
) -> None:
    settings = console_settings(tmp_path)
    schedules = settings.schedules_dir
    header = [["2026年企业名单"], ["单位名称", "邮箱", "联系人"]]
    (schedules / "units.xlsx").write_bytes(
        workbook_bytes([*header, ["甲公司", "jia@corp.example.com", "张三"]])
    )
    main = schedules / "main.yaml"
    text = main.read_text(encoding="utf-8").replace(
        "audiences:\n", "audiences:\n  units:\n    xlsx: units.xlsx\n", 1
    )
    main.write_text(text, encoding="utf-8")
    upload = workbook_bytes(
        [*header, ["丙公司", "bing@corp.example.com", "王五"], ["丁公司", "不是地址", "赵六"]]
    )
    server = ConsoleServer(settings, clock=lambda: NOW, worker=False)
    server.start()
    context, page = new_page(browser)
    try:
        console = Console(server, None, {})
        errors = Errors(page)
        sign_in(page, console, EDITOR_TOKEN)
        page.goto(console.url + "/audiences/units/edit")
        page.get_by_label("名单文件 file").set_input_files(
            files=[{"name": "企业名单.xlsx", "mimeType": XLSX_TYPE, "buffer": upload}]
        )
        page.get_by_role("button", name="预览").click()
        section = page.locator("section.list-preview").inner_text()
        assert "丙公司" in section and "row 4:" in section and "[column 邮箱]" in section
        assert (schedules / "units.xlsx").read_bytes() != upload
        page.get_by_role("button", name="保存").click()
        page.wait_for_url(re.compile(r"/audiences\?notice=audience-saved"))
        assert (schedules / "units.xlsx").read_bytes() == upload
        assert errors.items == []
    finally:
        context.close()
        server.stop()


XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
