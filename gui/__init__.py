"""Cardinal's PySide6 desktop app: views, widgets, wizard and the workers that run engine calls."""
