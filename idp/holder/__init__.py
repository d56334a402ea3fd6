"""The cardholder's side: pages, sessions, cookies, and sealed references."""
