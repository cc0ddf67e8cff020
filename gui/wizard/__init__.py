"""The fine-tune wizard: folder -> dataset report -> settings -> training -> results."""

from cardinal.gui.wizard.wizard import FineTuneWizard

__all__ = ["FineTuneWizard"]
