"""From webhook to canonical event: verify, store in the inbox, ingest."""
