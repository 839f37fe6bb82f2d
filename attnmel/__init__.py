"""attnmel: a reproduction of "Melanoma Recognition via Visual Attention" (Yan, Kawahara, Hamarneh, IPMI 2019).

Submodules, one concern each: ``models`` (AttnMel-CNN and baselines), ``losses`` (focal loss, Dice attention
regulariser), ``data`` (ISIC 2016/2017 and PH2 readers, the synthetic set, transforms, cache), ``config`` and
``trainer`` (the training protocol), ``metrics``, ``attention_eval`` and ``saliency`` (evaluation), ``plots``,
``book`` (running the chapters) and ``cli`` (the ``attnmel`` command). Import them explicitly, e.g.
``from attnmel import models``: importing ``attnmel`` itself stays cheap.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("attnmel")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
