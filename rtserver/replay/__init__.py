"""The session replay tool: ``rtserver replay record`` (a recording proxy), ``run`` (play a recording's client side
against a server, compare, and load-test with copies) and ``diff`` (what changed between two recordings). The
format is ``rtprotocol.recording``; ``turns.py`` reads turns out of a recording, the same way for all three."""
