"""Dataset builders: DEAM, PMEmo and VGMIDI releases (read in their official layouts) and the synthetic PDMER generator,
each written as a Hub-ready folder that `datasets.load_dataset(folder, config)` loads. The format contract
is `schema.py`; `dsaml prepare` is the command-line front end."""

from .deam import build_deam
from .pmemo import build_pmemo
from .report import DatasetBuildError, DropReport
from .schema import AVERAGE_ANNOTATOR, COLUMNS, annotator_split_name, arrow_schema
from .synthetic import GENERATOR_VERSION, PRESETS, build_synthetic
from .vgmidi import build_vgmidi

BUILDERS = {"deam": build_deam, "pmemo": build_pmemo, "synthetic": build_synthetic, "vgmidi": build_vgmidi}

__all__ = [
    "AVERAGE_ANNOTATOR",
    "BUILDERS",
    "COLUMNS",
    "DatasetBuildError",
    "DropReport",
    "GENERATOR_VERSION",
    "PRESETS",
    "annotator_split_name",
    "arrow_schema",
    "build_deam",
    "build_pmemo",
    "build_synthetic",
    "build_vgmidi",
]
