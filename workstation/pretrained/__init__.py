"""Pretrained models: which ones the app knows (``catalog``) and where their weights are on
this machine, with the offline bundles that carry them (``weights``).

A package of its own below ``experts`` and ``explain``, since both find weights the same
way: the vision backbones and the VLM share one catalogue, cache lookup and bundle format.
"""
