"""What the platform tells its operators about itself: log hygiene (and, later, metrics)."""
