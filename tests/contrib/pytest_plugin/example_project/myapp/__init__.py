"""A small application as a user would write it: sign-ups that send a welcome email."""
