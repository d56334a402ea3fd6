"""MyKey IDs: certificate serial (keyed hash) to MyKey ID, pairwise subjects, consent and access history."""
