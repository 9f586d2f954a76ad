"""Admin operations on letters and events: find, replay, cancel, send now, the numbers."""
