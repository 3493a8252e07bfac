"""Pacing and retries: the retry policy, rate limiters, the retry budget and circuit breaker."""
