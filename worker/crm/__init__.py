"""Telling the CRM what happened: an outbox of activities and one adapter per CRM."""
