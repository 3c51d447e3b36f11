"""One module per official file format; importing a module registers its datasets in `DATASETS`."""
