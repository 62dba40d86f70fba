"""Hydra configuration files; a package only so they ship inside the wheel."""
