"""`python -m imgexp.predict` runs the imgexp-predict command."""

from imgexp.predict.run import main

main()
