"""Letters: which exist, rendering in the recipient's locale, the MIME message, previews."""
