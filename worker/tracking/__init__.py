"""Opens, clicks and unsubscribes: signed tokens, rewritten links, recorded hits."""
