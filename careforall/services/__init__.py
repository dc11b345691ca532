"""Services: one transaction each, writing their events to the outbox."""
