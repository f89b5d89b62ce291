"""How sure a match is: calibration (distance -> false-match rate), evaluation on labelled
photos, and reading labelled data sets."""
