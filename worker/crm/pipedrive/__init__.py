"""Pipedrive: webhooks in (source.py), activities and notes out (writeback.py)."""
