"""The one exception type of the SynTheory package."""


class SynTheoryError(Exception):
    """A SynTheory concept, option, renderer or dataset problem; the message says what to do."""


INSTALL_HINT = "install it with: apt-get install fluidsynth timgm6mb-soundfont"
