"""Named values, each with the reason it is what it is."""

from __future__ import annotations

from datetime import time, timedelta

# A send whose time passed while the service was down is still worth sending this long after;
# later than that, a "tomorrow is the deadline" reminder would mislead, so it is recorded missed.
DEFAULT_GRACE = timedelta(hours=24)

# Rows are rendered and committed this long before their send time, so that at the send time
# the worker only has to claim and transmit (a 09:00 reminder to a bureau lands at 09:00).
# A reload after this point does not change the prepared rows: the ledger is the truth.
DEFAULT_PREPARE_AHEAD = timedelta(minutes=5)

# How far ahead the timer keeps jobs; a daily re-plan extends it, and so does every reload.
PLAN_HORIZON = timedelta(days=2)

# A claim not renewed in this long is taken to belong to a dead worker and is taken again. A
# live worker renews the leases of the rows it holds every third of it (LEASE_RENEW_FRACTION),
# so a slow send may take minutes while a killed instance's rows go out again within about
# this long plus a poll (issue 11: the last within 30 s of a SIGKILL).
DEFAULT_LEASE_SECONDS = 15.0
LEASE_RENEW_FRACTION = 1 / 3
# How often an idle worker asks SQLite whether another process committed (`PRAGMA
# data_version`, microseconds each): rows enqueued by `notifier send` beside `notifier run`
# start going out within this, not within the poll interval.
OUTSIDE_COMMITS_POLL_SECONDS = 0.1
# Rows a worker holds per lane (up to NOTIFIER_DELIVERY__BATCH_SIZE): it claims again at half,
# so each claim fetches about this many per lane. 4 -> 8 halved the claims per message on
# PostgreSQL (BENCHMARKS.md, issue 23); held rows are leased and renewed, so more is cheap.
CLAIM_ROWS_PER_LANE = 8
# The longest an SMTP message waits, body sent, for its lane's last outcome to be committed
# before its final dot (channels/smtp_wire.py). Past it the connection is closed unsent and the
# message is sent again after the commit. Well under the shortest lease renewal (5 s of 15).
READY_HOLD_SECONDS = 5.0
# Below this the renewals (one transaction each) would come faster than a slow disk commits.
MIN_LEASE_SECONDS = 0.5

# After a database error (PostgreSQL restarting, SQLite locked past its busy timeout, a full
# disk) the worker, the recorder and the planner wait and try again: exponential backoff with
# full jitter from the base up to the cap, so a long outage costs a try every few seconds and
# the service resumes within that long of the database's return. The service never gives up.
DB_RETRY_BASE_SECONDS = 0.2
DB_RETRY_CAP_SECONDS = 5.0
# /readyz and a webhook answered 503 during such an outage tell clients to retry after this.
DB_RETRY_AFTER_SECONDS = 5

# Webhook bodies larger than this are refused with 413 before they are read.
DEFAULT_MAX_BODY_BYTES = 256 * 1024

# Standard Webhooks: timestamps further than this from our clock are replays or bad clocks.
WEBHOOK_TOLERANCE_SECONDS = 300

# Default window of `notifier upcoming` and /api/upcoming.
UPCOMING_DAYS = 60

# What one reload may cost (issue 17: a 600-byte YAML "alias bomb" took 14 s, 1.6 GB and a
# 312 MB error message). A config file (a schedule YAML, a template file) larger than this is
# refused: the shipped ones are under 5 KB, and 1 MiB of YAML (11,000 events) takes 2.3-2.5 s
# to load and validate on the 2-core machine. CSV audiences are data, not config: unbounded.
MAX_CONFIG_FILE_BYTES = 1024 * 1024
# YAML aliases (`*name`) per file: reusing a reminders block across a few dozen events needs
# far fewer. Counted as the uses of anchored values in the file's node graph.
MAX_YAML_ALIASES = 100
# How much aliases may add to a file, counted as characters of text plus one per value, as if
# each alias were written out in full. Reusing a 20-line block 100 times adds about 40,000;
# nine levels of nine aliases (the bomb) add billions.
MAX_YAML_ALIAS_GROWTH = 100_000
# A raw value quoted in an error message is cut to this many characters (then "…"), and one
# error line to ERROR_LINE_CHARS: the message goes to logs, admins' mail and /api/config.
ERROR_VALUE_CHARS = 200
ERROR_LINE_CHARS = 1000
# A refused config lists at most this many problems (then how many more): nobody reads past
# them, and a 1 MiB file of 200,000 bad events must not become a 30 MB email.
MAX_CONFIG_ERRORS = 200

# Rows rendered and committed in one transaction when an audience is large, and rows per
# `executemany` inside it (one value for both: the store used to split each 2,000-row chunk
# into two 1,000-row calls for no gain). Large enough to amortise the commit and the round
# trip, small enough to keep memory flat (about 2 MB of rendered messages) and far below
# SQLite's variable limit (parameters are per row with executemany).
ENQUEUE_CHUNK = 2000

# The longest run of days off a workday shift (`previous`/`next`) may have to cross: the
# Spring Festival block with its weekends is 9-10 days; 30 leaves room for unusual override
# tables. The planner widens its windows by the same slack (it used to take 14, too little
# for a shift allowed to reach 30 days).
SHIFT_SLACK_DAYS = 30

# The admins' daily digest of failed deliveries goes out after this local time, when offices
# open: the day before is complete, and someone is there to act on it.
DEFAULT_DIGEST_AT = time(8, 0)

# Reminder ids used for sends that no configured reminder describes.
MANUAL_REMINDER = "manual"
HOOK_REMINDER = "hook"

# /metrics counts the ledger by state at most once in this many seconds (the count scans the
# deliveries table); Prometheus scrapes every 15-60 s, so one scraper always sees fresh counts.
METRICS_COUNTS_TTL = 5.0
# The chat worker holds at most this many claimed rows of one paced robot, and claims one only
# when the robot's pace has room (delivery/fairness.py): a robot's backlog stays in the ledger,
# visible to other instances, instead of in this worker's claim and lanes. One is enough: the
# next row is claimed while the pace's gap runs out (3 s at 20 a minute; a claim takes ms).
PACED_HOLD = 1
# The pace's room is awaited this much past its computed time: its bucket drains in floats,
# and a wake-up a hair early would find it still full and wait a whole gap more.
PACE_ROUNDING_SECONDS = 0.001
# A lane that survives a cancel (a cancellation swallowed by a library) is cancelled again
# after this long: stopping lanes must end even then (delivery._cancel_all).
LANE_CANCEL_RETRY_SECONDS = 0.2
