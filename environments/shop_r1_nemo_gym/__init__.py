"""Shop-R1 as a NeMo Gym resources server (``app.py``) and its dataset rows (``data.py``)."""
