"""Dataset builders: DEAM, PMEmo and VGMIDI releases (read in their official layouts) and the synthetic PDMER generator,
each written as a Hub-ready folder that `datasets.load_dataset(folder, config)` loads. The format contract
is `schema.py`; `dsaml prepare` is the command-line front end."""

from dsaml.datasets_scripts.common.report import DropReport
from dsaml.datasets_scripts.common.schema import AVERAGE_ANNOTATOR, COLUMNS, annotator_split_name, arrow_schema
from dsaml.datasets_scripts.deam.deam import build_deam
from dsaml.datasets_scripts.pmemo.pmemo import build_pmemo
from dsaml.datasets_scripts.synthetic.synthetic import GENERATOR_VERSION, PRESETS, build_synthetic
from dsaml.datasets_scripts.vgmidi.vgmidi import build_vgmidi
from dsaml.errors import DatasetBuildError

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
