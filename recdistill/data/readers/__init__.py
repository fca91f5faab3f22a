"""Dataset readers, one module per dataset, each defining a `DatasetReader` (see `base.py`);
`registry.py` finds them, so a new dataset is one file here plus one YAML in configs/dataset/."""
