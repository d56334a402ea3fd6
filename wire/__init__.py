"""Reading bytes that come from outside the platform: one bounded way to decode each format.

Every entry point that takes JSON from a client, a feed, a file or another server decodes it here, so that a
hostile shape (nesting a few thousand levels deep, a number of a million digits) is bad input with the entry
point's own documented error, never a crash of the process that read it.
"""
