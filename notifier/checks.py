"""Load the schedule and prove every template renders, before anything is sent.

`notifier check`, the service's start and every hot reload go through `load_config`: a
missing template or variable is found here, not at 09:00 on the day. What a config can cost
is bounded on the way (file sizes, YAML aliases, error text: see `notifier.constants`), and
templates render in Jinja's sandbox, so `check` is safe to run on files from anyone.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from urllib.parse import urlsplit

from pydantic import SecretStr

from notifier.channels.registry import missing_variables
from notifier.compose.admin_notices import ADMIN_TEMPLATES, check_admin_templates
from notifier.compose.context import CHAT_RECIPIENT, reminder_context, template_context
from notifier.compose.rendering import Renderer
from notifier.config import Settings, read_hook_secrets, read_secret
from notifier.dates.workdays import OFFICIAL_DATA, YearSource, statutory_holidays, year_source
from notifier.errors import ConfigError, RenderError
from notifier.schedule.files import bounded_errors
from notifier.schedule.load import load_schedule
from notifier.schedule.model import ChannelSpec, Schedule
from notifier.schedule.planner import PlannedSend, next_occurrence, plan
from notifier.schedule.recipients import Recipient
from notifier.secret_checks import secret_problems, webhook_key_problems

SAMPLE_RECIPIENT = Recipient("someone@example.com", "示例收件人", {})
SAMPLE_UNSUBSCRIBE = "http://127.0.0.1:8080/unsubscribe?token=check"
# Years ahead that `check` inspects for missing official workday data.
HOLIDAY_HORIZON = timedelta(days=400)


def load_config(settings: Settings, *, now: datetime) -> tuple[Schedule, Renderer, list[str]]:
    """Schedule, renderer and warnings; ConfigError lists every problem found (at most
    MAX_CONFIG_ERRORS of them, each line bounded)."""
    try:
        return _load_config(settings, now=now)
    except ConfigError as exc:
        raise ConfigError(bounded_errors(exc.errors)) from None


def _load_config(settings: Settings, *, now: datetime) -> tuple[Schedule, Renderer, list[str]]:
    schedule = load_schedule(settings.schedules_dir)
    renderer = Renderer(settings.templates_dir)
    errors: list[str] = []
    warnings = list(schedule.warnings)
    used = schedule.templates_used()
    for name in sorted(set(ADMIN_TEMPLATES) - used if schedule.admins else ()):
        warnings.extend(renderer.invisible_characters(name))  # checked in full further on
    for name in sorted(used):
        if not renderer.exists(name):
            errors.append(
                f"{settings.templates_dir / name}: template not found "
                "(needs subject.txt and body.txt)"
            )
            continue
        errors.extend(renderer.unknown_variables(name))
        warnings.extend(renderer.invisible_characters(name))
    errors.extend(channel_problems(schedule, warnings))
    errors.extend(attachment_problems(schedule, settings.max_attachments_bytes, warnings))
    if errors:
        raise ConfigError(errors)

    # Render each reminder once with a real-looking context: catches a missing `vars` key,
    # a filter applied to the wrong type, a subject that spans lines.
    today = now.astimezone(settings.tz).date()
    for event in schedule.events.values():
        occ = next_occurrence(event, today)
        if occ is None:
            warnings.append(f"{event.source}: event '{event.id}' has no future occurrence")
            continue
        for reminder in event.reminders:
            audience = schedule.audiences[reminder.audience]
            recipient = next(iter(audience.recipients()), SAMPLE_RECIPIENT)
            ctx = template_context(
                org=settings.org_name,
                event=event,
                occurrence=occ,
                reminder=reminder_context(reminder, reminder.id, today),
                send_date=today,
                recipient=recipient,
                unsubscribe_url=SAMPLE_UNSUBSCRIBE if audience.external else None,
            )
            try:
                renderer.render(reminder.template, ctx)
                # chat.md too, where the template has one, as a chat group would get it.
                renderer.render_chat(
                    reminder.template, {**ctx, "recipient": CHAT_RECIPIENT.context()}
                )
            except RenderError as exc:
                errors.append(f"{event.source}: event '{event.id}' reminder '{reminder.id}': {exc}")
    if errors:
        raise ConfigError(errors)

    warnings.extend(workday_warnings(schedule, today))
    horizon_end = now + HOLIDAY_HORIZON
    sends = plan(schedule, now, horizon_end, settings.tz)
    days = [p.send_date for p in sends]
    # This year's gap is said loudly above, once.
    for year in sorted(schedule.calendar.missing_years(days) - {today.year}):
        warnings.append(
            f"no official workday data for {year}: workdays fall back to Monday-Friday "
            "less the statutory holidays (元旦, 春节, 清明, 劳动节, 端午, 中秋, 国庆) "
            f'until a `holidays: {{"{year}": ...}}` table is added to schedules/ '
            f"(年度放假安排未知，请补充 holidays 表)"
        )
    warnings.extend(provisional_summary(sends))
    errors.extend(check_admin_templates(settings, schedule, renderer, now=now))
    if errors:
        raise ConfigError(errors)
    return schedule, renderer, warnings


def workday_sources(schedule: Schedule, today: date) -> list[YearSource]:
    """Where each year's workdays come from: last year to next, and every year with a table."""
    years = {today.year - 1, today.year, today.year + 1} | set(schedule.holiday_files)
    return [year_source(y, schedule.calendar, schedule.holiday_files) for y in sorted(years)]


def workday_warnings(schedule: Schedule, today: date) -> list[str]:
    """This year without data (the installed package predates its notice, and no table gives
    it), and tables of years without installed data that leave out a statutory holiday or
    work one."""
    calendar = schedule.calendar
    out: list[str] = []
    if not calendar.has_official_data(today.year):
        out.append(
            f"本年度放假安排未知 NO WORKDAY DATA FOR {today.year}: the installed {OFFICIAL_DATA} "
            f"knows no day of {today.year} (it predates the notice for {today.year}) and no "
            f"`holidays:` table gives it, so every workday of {today.year} is a guess: "
            "Monday-Friday less the statutory holidays, without the notice's bridge days and "
            "make-up workdays (调休). Upgrade chinese-calendar, or import the notice: "
            f"`notifier holidays import 通知.txt --write schedules/holidays-{today.year}.yaml` "
            "(请升级 chinese-calendar 或导入国务院通知)"
        )
    for year, days in sorted(calendar.tables.items()):
        if year_source(year, calendar).kind == "official":
            continue  # the installed data keeps what the table leaves out
        where = f"{schedule.holiday_files.get(year, 'schedules')}: holidays.{year}"
        law = statutory_holidays(year)
        missing: dict[str, list[date]] = {}
        for day, name in law.items():
            if day not in days:
                missing.setdefault(name, []).append(day)
        if missing:
            named = "; ".join(f"{name} {_days_in_words(ds)}" for name, ds in missing.items())
            out.append(
                f"{where}: the table lists no day of {named} (表中缺少这些法定节假日): they "
                "stay days off by law, date by date, but the bridge days and make-up workdays "
                f"around them are unknown: import the notice for {year} "
                "(`notifier holidays import`)"
            )
        for day, name in law.items():
            if days.get(day) is True:
                out.append(
                    f"{where}: {day} ({name}) is a statutory holiday, but the table makes it a "
                    "workday (法定节假日被列为上班日)"
                )
    return out


def _days_in_words(days: Sequence[date]) -> str:
    if len(days) > 1 and (days[-1] - days[0]).days == len(days) - 1:
        return f"{days[0]}..{days[-1]}"
    return ", ".join(d.isoformat() for d in days)


def provisional_summary(sends: Sequence[PlannedSend]) -> list[str]:
    """One line: how many sends of the horizon are provisional (暂定), and on which years."""
    provisional = [p for p in sends if p.provisional]
    if not provisional:
        return []
    years = sorted({year for p in provisional for year in p.unknown_years})
    return [
        f"{len(provisional)} of {len(sends)} planned sends in the next "
        f"{HOLIDAY_HORIZON.days} days are provisional (暂定): their days depend on workday data "
        f"for {', '.join(map(str, years))}, not yet known; they may move when the State "
        "Council's notice is imported (`notifier holidays import`)"
    ]


def load_hook_secrets(settings: Settings, schedule: Schedule) -> dict[str, SecretStr]:
    """The hook secrets the schedule names, by variable, read now (at start, at reload).

    ConfigError names every secret, setting or hook variable, that is still a published
    placeholder (such a service would accept requests signed by anyone who read the docs),
    or too short to be one (`secret_checks`).
    """
    secrets = read_hook_secrets(sorted({h.secret_env for h in schedule.hooks.values()}))
    problems = secret_problems(settings, secrets)
    if problems:
        raise ConfigError(problems)
    return secrets


def channel_problems(schedule: Schedule, warnings: list[str]) -> list[str]:
    """Unset variables: an error for a channel a reminder or `admins:` sends to, a warning
    for one unused.

    An unused channel is an example, or one being set up: it must not stop the service.
    """
    names = {
        name
        for event in schedule.events.values()
        for r in event.reminders
        for name in r.all_audiences
    } | set(schedule.admins)
    used = {schedule.audiences[n].chat or schedule.audiences[n].mail_channel for n in names}
    errors: list[str] = []
    for cid, spec in sorted(schedule.channels.items()):
        # What is wrong with a value that is set, without showing it (it holds the key).
        errors.extend(f"{spec.source}: channels.{cid}: {p}" for p in bad_values(spec))
        missing = missing_variables(spec)
        if not missing:
            continue
        line = f"{spec.source}: channels.{cid}: variable {', '.join(missing)} is not set"
        if cid in used:
            errors.append(line)
        else:
            warnings.append(f"{line} (channel unused: 未被任何受众引用)")
    return errors


def bad_values(spec: ChannelSpec) -> list[str]:
    """Problems with a channel's (set) variables, named, never shown."""
    problems: list[str] = []
    if spec.smtp is not None:
        return problems  # a host, a user name, a password: nothing to check without a login
    url = read_secret(spec.url_env)
    if url is not None:
        parts = urlsplit(url.get_secret_value().strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            problems.append(f"variable {spec.url_env} does not hold an http(s) URL")
    secret = read_secret(spec.secret_env) if spec.secret_env else None
    if spec.type == "webhook" and spec.secret_env:
        # The outbound webhook signs with a Standard Webhooks key: the same floors as a hook's.
        problems += [
            f"variable {p}" for p in webhook_key_problems(spec.secret_env, secret, rotation=False)
        ]
    return problems


def sent_size(size: int) -> int:
    """A file's bytes in a message: base64 in 76-character lines with CRLF."""
    encoded = (size + 2) // 3 * 4
    return encoded + (encoded + 75) // 76 * 2


def attachment_problems(schedule: Schedule, limit: int, warnings: list[str]) -> list[str]:
    """Each reminder's attachments over `limit` as sent (an error naming the files), and a
    note for each chat group that gets the text without them (robots carry no files)."""
    errors: list[str] = []
    for event in schedule.events.values():
        for reminder in event.reminders:
            if not reminder.attachments:
                continue
            total = sum(sent_size(a.size) for a in reminder.attachments)
            if total > limit:
                files = ", ".join(f"{a.path} ({a.size:,} bytes)" for a in reminder.attachments)
                errors.append(
                    f"{event.source}: event '{event.id}' reminder '{reminder.id}': attachments "
                    f"come to {total:,} bytes as sent, over NOTIFIER_MAX_ATTACHMENTS_BYTES="
                    f"{limit:,} (附件总大小超过限制): {files}"
                )
            for name in reminder.all_audiences:
                chat = schedule.audiences[name].chat
                if chat is not None:
                    warnings.append(
                        f"{event.source}: event '{event.id}' reminder '{reminder.id}': chat "
                        f"group '{name}' gets the text without the attachments (群机器人不能发送"
                        "附件，群里只收到文字)"
                    )
    return errors
