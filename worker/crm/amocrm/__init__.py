"""amoCRM (Kommo): lead-status webhooks in (`source.py`), API v4 with a long-lived token
(`api.py`), notes on the lead out (`writeback.py`)."""
