"""`python -m imgexp.compare` runs the imgexp-compare command."""

from imgexp.compare.run import main

main()
