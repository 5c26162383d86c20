"""`python -m imgexp.export` runs the imgexp-export command."""

from imgexp.export.run import main

main()
