"""The review queue: likely label errors one by one, with Keep, Move and Exclude, undo, and Retrain."""

from cardinal.gui.review.window import ReviewWindow

__all__ = ["ReviewWindow"]
