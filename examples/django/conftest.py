import os
import sys
from pathlib import Path

import django

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
django.setup()
