"""Data made by the package itself: seeded synthetic microscopy (``data.synthetic``)."""
