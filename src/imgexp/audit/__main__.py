"""`python -m imgexp.audit` runs the imgexp-audit command."""

from imgexp.audit.run import main

main()
