"""`python -m imgexp.train` runs the imgexp-train command."""

from imgexp.train.run import main

main()
