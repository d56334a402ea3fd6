"""The revocation rules: resident-register events, the policy table, and the applier that turns events into
status changes."""
