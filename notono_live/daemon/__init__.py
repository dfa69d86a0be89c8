"""`notono-live serve`: the daemon process (cli.py), its inference worker (worker.py), and a child-process helper (process.py)."""
