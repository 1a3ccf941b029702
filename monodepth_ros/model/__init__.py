"""The semantic-conditioned depth network (shared by training, export and the torch engine).

Importing this package does not import torch; ``network`` and ``checkpoint`` do.
"""
