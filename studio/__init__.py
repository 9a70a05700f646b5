"""MusicRFM Studio runtime: loading MusicGen, recipes, steering, decoding and generation; the web page in studio/ui."""
