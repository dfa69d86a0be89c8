"""NOTONO Live: neural instrument sounds, generated and inpainted from inside Ableton Live."""
__version__ = "0.1.0"
