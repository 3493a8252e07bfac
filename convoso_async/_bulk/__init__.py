"""The bulk engine: a bounded executor over keys, the ledger that accounts for every row, and
the campaign status changes built on them."""
