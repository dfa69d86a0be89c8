"""The OSC side of the daemon: the protocol table, the server, a client, and `notono-live send`."""
