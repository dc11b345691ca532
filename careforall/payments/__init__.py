"""Payment providers: the interface, the built-in simulation and its webhooks."""
