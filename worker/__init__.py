"""Thankly: CRM events in, well-timed personal thank-you letters out."""
