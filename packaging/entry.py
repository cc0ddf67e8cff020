"""Entry point of the frozen app (both the windowed `Cardinal` and the console `cardinal-cli`)."""

import multiprocessing
import sys

from cardinal.gui.launch import main

if __name__ == "__main__":
    # Makes DataLoader worker processes safe in a frozen app (spawned children re-enter here).
    multiprocessing.freeze_support()
    sys.exit(main())
