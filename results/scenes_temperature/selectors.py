"""The retrained selector against the shipped one on the same rows, captions and seeds (selector.sh, last step).

Step 2 (run.sh) sampled TCTS+FAS with the shipped selector, step 3 (selector.sh) with the selector retrained on
the setting's draws; their images are paired (same captions and seeds), and the rows that use no selector must
come out identical in both. Prints a markdown table of object accuracy, A - B with the eval job's paired bootstrap.

  python results/scenes_temperature/selectors.py RUN_WORKDIR SELECTOR_WORKDIR   # the two eval workdirs
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / 'scenes'))
from fresh_captions import alignment, difference

SETTING = '_guidance_scale_0.0_temperature_0.5_'  # how the job names the rows' files
ROWS = ('tcts_fas@4', 'tcts_fas@8', 'uniform@4', 'uniform@8', 'random_revoke@4', 'random_revoke@8')


def main(run_workdir: Path, selector_workdir: Path) -> None:
  print('| row | selector.sh − run.sh, object acc. |\n|---|---|')
  for row in ROWS:
    new, old = (alignment(w, row + SETTING) for w in (selector_workdir, run_workdir))
    print(f'| {row} | {difference(new, old, slice(None))} |')


if __name__ == '__main__':
  main(Path(sys.argv[1]), Path(sys.argv[2]))
