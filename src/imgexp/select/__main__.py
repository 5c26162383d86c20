"""`python -m imgexp.select` runs the imgexp-select command."""

from imgexp.select.run import main

main()
