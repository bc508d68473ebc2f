"""Teach a from-scratch NumPy Transformer a tiny translation: English number words -> Spanish.

    python examples/numbers_demo.py

"three thousand four hundred twenty-one" -> "tres mil cuatrocientos veintiuno", word by
word, 0 ... 999 999. Translation in miniature: two words become one ("twenty-one" ->
"veintiuno"), a word appears from nowhere ("thirty-two" -> "treinta y dos"), forms depend
on their context ("one hundred" -> "cien" but "one hundred five" -> "ciento cinco";
"twenty-one thousand" -> "veintiún mil"). The 1,000 held-out numbers are never seen in
training. Trains until 99% of them come out exactly right; prints the loss curve,
samples, the wall time and ``exact match: NN.N%``. ``--out runs/numbers`` keeps the
checkpoint for ``scratchformer decode`` and ``scratchformer attention``.
"""

from copy_task_demo import run

if __name__ == "__main__":
    run("numbers", "translate English number words into Spanish")
