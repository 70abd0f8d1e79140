"""matteralign: how far do scientific foundation models agree about matter?

Run many models over the same samples, extract their internal representations, and
measure, test and show their alignment (CKNNA, CKA, distance correlation, intrinsic
dimension, information imbalance, probes). Heavy packages are imported lazily; this
module imports nothing heavy.
"""

from __future__ import annotations

from .errors import MatterAlignError

__version__ = "0.1.0"
__all__ = ["MatterAlignError", "__version__"]
