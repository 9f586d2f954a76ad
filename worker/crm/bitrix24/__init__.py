"""Bitrix24: outbound-webhook events in (`source.py`), the REST API through an incoming
webhook (`api.py`), timeline comments out (`writeback.py`)."""
