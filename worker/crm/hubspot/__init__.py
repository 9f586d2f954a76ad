"""HubSpot: deal-stage webhooks in (`source.py`), enriched through the CRM API (`api.py`)."""
