"""LibriMix (Libri2Mix / Libri3Mix) as a corpus of the recipe: an existing folder, indexed (see prepare.py)."""
