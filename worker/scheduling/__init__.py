"""The scheduler: claiming due letters and stranded work, and the loop that does it."""
