"""`python -m imgexp.eval` runs the imgexp-eval command."""

from imgexp.eval.run import main

main()
