"""Everything that talks to a My Number Card: APDUs, the JPKI client, transports, the virtual card, the CLI.

Never reads the text AP, never retries a PIN, never sends a PIN anywhere but the card.
"""
