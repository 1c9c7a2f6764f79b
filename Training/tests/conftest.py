"""Puts Training/ on sys.path (so `import rin` works as in the scripts) and keeps torch on one thread."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
torch.set_num_threads(1)
