"""convoso-async."""
