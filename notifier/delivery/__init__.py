"""From the ledger to the wire: claim, queue, lanes, group commit, pacing."""
