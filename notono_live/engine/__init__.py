"""The engine: operations on sounds (engine.py), versions on disk (store.py), rendered files (render.py)."""
