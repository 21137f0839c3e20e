"""Bounces as real servers write them (Postfix, Exim, Microsoft Exchange, a Chinese hosted
provider's plain-text notice), an unrelated message and an out-of-office reply. Each takes the
returned message's Message-ID (`mid`) and recipient (`to`), and the bounce mailbox (`box`)."""

from __future__ import annotations

import base64

POSTFIX = """\
Return-Path: <>
Delivered-To: {box}
Date: Wed, 17 Mar 2027 09:00:05 +0800 (CST)
From: MAILER-DAEMON@mx.fao.example.com (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: {box}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
	boundary="B8A2E1C0.1710000000/mx.fao.example.com"
Message-Id: <20270317010005.B8A2E1C0@mx.fao.example.com>

This is a MIME-encapsulated message.

--B8A2E1C0.1710000000/mx.fao.example.com
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.fao.example.com.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

<{to}>: host mx.trade.example.com[203.0.113.5] said: 550 5.1.1
    <{to}>: Recipient address rejected: User unknown in virtual
    mailbox table (in reply to RCPT TO command)

--B8A2E1C0.1710000000/mx.fao.example.com
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.fao.example.com
X-Postfix-Queue-ID: B8A2E1C0
Arrival-Date: Wed, 17 Mar 2027 09:00:04 +0800 (CST)

Final-Recipient: rfc822; {to}
Original-Recipient: rfc822;{to}
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.trade.example.com
Diagnostic-Code: smtp; 550 5.1.1 <{to}>: Recipient address rejected: User
    unknown in virtual mailbox table

--B8A2E1C0.1710000000/mx.fao.example.com
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

From: =?utf-8?b?5biC5aSW5Yqe?= <{box}>
To: {to}
Subject: =?utf-8?b?44CQ5o+Q6YaS44CR?=
Message-ID: {mid}
X-Notifier-Id: {our}
Date: Wed, 17 Mar 2027 09:00:00 +0800

--B8A2E1C0.1710000000/mx.fao.example.com--
"""

EXIM = """\
Return-path: <>
Envelope-to: {box}
From: Mail Delivery System <Mailer-Daemon@mail.fao.example.com>
To: {box}
Subject: Mail delivery failed: returning message to sender
Message-Id: <E1qZ-0001aB-Cd@mail.fao.example.com>
Date: Wed, 17 Mar 2027 09:00:06 +0800

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  {to}
    host mx.trade.example.com [203.0.113.6]
    SMTP error from remote mail server after RCPT TO:<{to}>:
    550 5.1.1 <{to}>: no such user here

------ This is a copy of the message, including all the headers. ------

Return-path: <{box}>
Received: from notifier by mail.fao.example.com with esmtpsa
Message-ID: {mid}
X-Notifier-Id: {our}
From: {box}
To: {to}
Subject: reminder

body
"""

EXCHANGE = """\
From: Microsoft Outlook <postmaster@corp.example.com>
To: {box}
Date: Wed, 17 Mar 2027 01:00:07 +0000
Content-Type: multipart/report; report-type=delivery-status;
	boundary="bd3e51a2-9ab8-44a4-b8f2-5de1b6b3a5d7"
X-MS-Exchange-Message-Is-Ndr:
Content-Language: en-US
Message-ID: <8b7a0a1e-ndr@corp.example.com>
Subject: Undeliverable: reminder
Auto-Submitted: auto-replied
MIME-Version: 1.0

--bd3e51a2-9ab8-44a4-b8f2-5de1b6b3a5d7
Content-Type: text/plain; charset="us-ascii"
Content-Transfer-Encoding: quoted-printable

Your message to {to} couldn't be delivered.
{to} wasn't found at corp.example.com.

Remote Server returned '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipien=
t not found by SMTP address lookup'

--bd3e51a2-9ab8-44a4-b8f2-5de1b6b3a5d7
Content-Type: message/delivery-status

Reporting-MTA: dns;EX01.corp.example.com
Received-From-MTA: dns;mail.fao.example.com
Arrival-Date: Wed, 17 Mar 2027 01:00:06 +0000

Final-Recipient: rfc822;{to}
Action: failed
Status: 5.1.10
Diagnostic-Code: smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by
 SMTP address lookup

--bd3e51a2-9ab8-44a4-b8f2-5de1b6b3a5d7
Content-Type: message/rfc822

Received: from mail.fao.example.com by EX01.corp.example.com
From: {box}
To: {to}
Subject: reminder
Message-ID: {mid}
X-Notifier-Id: {our}
MIME-Version: 1.0
Content-Type: text/plain; charset="utf-8"

body

--bd3e51a2-9ab8-44a4-b8f2-5de1b6b3a5d7--
"""

_CN_TEXT = """\
您好，您发送的邮件投递失败，已被退回。

原邮件信息：
  收件人：{to}
  主　题：【提醒】APEC商务旅行卡政策解读会
退信原因：收件人地址不存在（550 Mailbox not found or access denied）
建议解决方案：请核实收件人地址是否正确。

----- 原邮件头 -----
Message-ID: {mid}
X-Notifier-Id: {our}
"""

CHINESE = """\
From: =?utf-8?b?57O757uf6YCA5L+h?= <postmaster@exmail.example.com>
To: {box}
Subject: =?utf-8?b?57O757uf6YCA5L+hIOmCruS7tuaKlemAkuWksei0pQ==?=
Date: Wed, 17 Mar 2027 09:00:08 +0800
Message-ID: <tencent-bounce-20270317@exmail.example.com>
MIME-Version: 1.0
Content-Type: text/plain; charset="utf-8"
Content-Transfer-Encoding: base64

{cn_body}
"""

UNRELATED = """\
From: =?utf-8?b?5byg5LiJ?= <zhangsan@trade.example.com>
To: {box}
Subject: =?utf-8?b?5YWz5LqO5pS/562W6Kej6K+75Lya55qE6Zeu6aKY?=
Date: Wed, 17 Mar 2027 10:00:00 +0800
Message-ID: <question-1@trade.example.com>
In-Reply-To: {mid}
MIME-Version: 1.0
Content-Type: text/plain; charset="utf-8"

请问解读会可以线上参加吗？
"""

OUT_OF_OFFICE = """\
From: Li Si <lisi@trade.example.com>
To: {box}
Subject: Automatic reply: reminder
Auto-Submitted: auto-replied
X-Auto-Response-Suppress: All
Date: Wed, 17 Mar 2027 09:00:09 +0800
Message-ID: <ooo-1@trade.example.com>
In-Reply-To: {mid}
MIME-Version: 1.0
Content-Type: text/plain; charset="utf-8"

I am out of the office until 20 March and will not be able to deliver your message.
我休假至3月20日。
"""


def render(template: str, *, mid: str, to: str, box: str) -> bytes:
    """A sample for the returned message `mid` sent to `to`, as the mailbox `box` gets it."""
    our = mid.strip("<>").partition("@")[0]
    cn_body = base64.encodebytes(_CN_TEXT.format(to=to, mid=mid, our=our).encode()).decode()
    text = template.format(mid=mid, to=to, box=box, our=our, cn_body=cn_body)
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")
