"""A real IMAP server for tests: Debian's Dovecot (`dovecot-imapd`, installed by scripts/test-deps)
on a loopback port, with a temporary mail store and one passwd-file user.

Run as root here, Dovecot wants its login processes under an unprivileged user (`dovenull`)
and refuses uid 0 for a mail user: the store belongs to the `dovecot` user, and the directory
is world-readable so that the login processes can reach their sockets. No SSL: loopback only.
"""

from __future__ import annotations

import imaplib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DOVECOT = "/usr/sbin/dovecot"
START_SECONDS = 10.0  # Dovecot starts in well under a second; a loaded machine gets more


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


CONFIG = """\
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_login_user = dovenull
default_internal_user = dovecot
default_internal_group = dovecot
first_valid_uid = {uid}
first_valid_gid = {gid}
mail_location = maildir:{root}/home/%u/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = 0
  }}
}}
service submission-login {{
  inet_listener submission {{
    port = 0
  }}
}}
"""


class ImapServer:
    """`with ImapServer(user, password) as server:` Dovecot on 127.0.0.1:`server.port`."""

    def __init__(self, user: str, password: str) -> None:
        self.user, self.password = user, password
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="notifier-imap-"))
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ImapServer:
        owner = pwd.getpwnam("dovecot")
        os.chmod(self.root, 0o755)
        (self.root / "home").mkdir()
        os.chown(self.root / "home", owner.pw_uid, owner.pw_gid)
        (self.root / "passwd").write_text(f"{self.user}:{{PLAIN}}{self.password}\n")
        os.chmod(self.root / "passwd", 0o644)
        conf = self.root / "dovecot.conf"
        conf.write_text(
            CONFIG.format(root=self.root, uid=owner.pw_uid, gid=owner.pw_gid, port=self.port)
        )
        self._proc = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                with self.connect():
                    break
            except (OSError, imaplib.IMAP4.error):
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    self.__exit__()
                    raise RuntimeError(f"dovecot did not start: {self.log()}") from None
                time.sleep(0.05)
        return self

    def connect(self) -> imaplib.IMAP4:
        imap = imaplib.IMAP4("127.0.0.1", self.port, timeout=5)
        imap.login(self.user, self.password)
        return imap

    def append(self, raw: bytes, folder: str = "INBOX") -> None:
        with self.connect() as imap:
            typ, data = imap.append(folder, None, None, raw)
            assert typ == "OK", data

    def listing(self, folder: str) -> list[tuple[str, str]]:
        """(Message-ID, flags) of each message in `folder`, without changing a flag."""
        out = []
        with self.connect() as imap:
            typ, _ = imap.select(f'"{folder}"', readonly=True)
            if typ != "OK":
                return []
            typ, data = imap.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
            for item in data:
                if isinstance(item, tuple):
                    meta, header = item
                    flags = meta.decode().partition("FLAGS (")[2].partition(")")[0]
                    mid = header.decode().partition(":")[2].strip()
                    out.append((mid, flags))
        return out

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        shutil.rmtree(self.root, ignore_errors=True)
