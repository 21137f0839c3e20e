"""The bounce mailbox: read bounces over IMAP and learn from them (parse, mailbox)."""
