"""A tiny MusicGen that knows music, trained here from scratch on SynTheory renders: its codec first (codec.py), on
the clips of data.py, judged by an outside transcriber (probes/transcribe.py). `python -m probes tiny-model`."""
