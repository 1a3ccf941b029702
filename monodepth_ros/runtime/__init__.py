"""The one depth pipeline (node, offline tools and evaluator), CameraInfo pairing, projection."""
