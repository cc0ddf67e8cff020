"""Sorting new images into classes: drop them, press a number or drag onto a class, save into the dataset."""

from cardinal.gui.sorting.window import SortWindow

__all__ = ["SortWindow"]
