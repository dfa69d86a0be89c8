"""Evaluation: pitch checks (`pitch`), the family classifier, figures and `notono-live eval` (`report`)."""
