"""Building and sending email: one Sender interface, chosen by THANKLY_SMTP_URL."""
