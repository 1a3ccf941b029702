"""Fleets of recordings: eval-bag and infer-bag over many bags, on Ray or in one process.

``runner`` runs one task per bag (the bag's frames stay in order in that task) through the
existing command's own ``run``, so every option of eval-bag and infer-bag works the same on a
fleet; ``bags`` turns paths, globs and manifest files into the fleet; ``eval_fleet`` and
``infer_fleet`` are the two commands; ``report`` is the fleet's aggregate of eval-bag reports.
Ray is imported only when a fleet runs on it (``pip install monodepth_ros[fleet]``).
"""
