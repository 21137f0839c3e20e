"""What a send becomes: templates, MIME, tokens, ledger rows, the outbox, admin notices."""
