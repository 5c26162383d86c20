"""`python -m imgexp.app` runs the imgexp-app command."""

from imgexp.app.run import main

main()
