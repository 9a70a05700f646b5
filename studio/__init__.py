"""MusicRFM Studio runtime: model loading, steering, generation and the web UI."""
