"""Teach a from-scratch NumPy Transformer to normalize dates, character by character.

    python examples/dates_demo.py

"Friday, 27 November 2026", "27th of November 2026", "2026.11.27", "Nov 27, 2026" ... all
become "2026-11-27". Twelve formats, years 1900-2099; the held-out dates are never seen
in training in *any* format, so the model must really parse month names and ordinal
words. Trains until 98% of 1,000 held-out dates come out exactly right; prints the loss
curve, samples, the wall time and ``exact match: NN.N%``.
"""

from copy_task_demo import run

if __name__ == "__main__":
    run("dates", "turn dates as people write them into ISO 8601")
