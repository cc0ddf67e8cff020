"""The `cardinal` command line: sub-commands over the same engine functions the GUI calls."""
