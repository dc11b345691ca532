"""The outbox: events committed with their state change, delivered at least once."""
