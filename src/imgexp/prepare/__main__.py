"""`python -m imgexp.prepare` runs the imgexp-prepare command."""

from imgexp.prepare.run import main

main()
