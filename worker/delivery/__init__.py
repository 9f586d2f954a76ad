"""Delivering a due letter: claim, compose, transmit over a Sender, record the outcome."""
