"""Checks of the course's own measuring, run on a GPU machine (not part of any lab)."""
