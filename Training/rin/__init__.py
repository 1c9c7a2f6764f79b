"""PyTorch reference implementation of RIN for rind (see ../README.md).

Scripts in Training/ import it as `import rin` (Python puts the script's directory on sys.path);
elsewhere, put Training/ on PYTHONPATH.
"""

from .checkpoint import ConfigError, RINConfig, load_checkpoint, save_checkpoint
from .model import RIN, patchify, time_features, unpatchify

__all__ = ["RIN", "RINConfig", "ConfigError", "load_checkpoint", "save_checkpoint", "patchify",
           "unpatchify", "time_features"]
