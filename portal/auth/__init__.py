"""Log-in with password and mandatory TOTP, sessions, throttling."""
