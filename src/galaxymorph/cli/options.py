"""Help texts shared by several commands, so the same option reads the same everywhere."""

CATALOGUE_HELP = ("A catalogue (id_str, file_loc) naming the images of galaxies predicted or embedded from shards, "
                  "which carry no file_loc: for the grid and the CSV.")
