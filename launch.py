#!/usr/bin/env python3
"""MusicRFM Studio entry point: `python launch.py` runs the studio; `python launch.py generate ...` renders headless.

Also the Hugging Face Space's app_file.
"""

import sys

from studio.cli import main

if __name__ == "__main__":
    sys.exit(main())
