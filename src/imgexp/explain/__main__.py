"""`python -m imgexp.explain` runs the imgexp-explain command."""

from imgexp.explain.run import main

main()
