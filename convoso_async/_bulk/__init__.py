"""The bulk engine: a bounded executor over keys, and the accounting of status changes."""
