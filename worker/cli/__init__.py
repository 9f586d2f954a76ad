"""The `thankly` command: one module per command group."""
