"""The domain: states, money, events and errors, free of I/O."""
