#!/usr/bin/env bash
# Reproduces the shipped weights (weights/shapes) from scratch (launch/train.sh with configs/shapes.py):
#   bash launch/train_shapes.sh [WORKDIR] [OUT] [VARIANT]     (defaults: workdirs/shapes, weights/shapes, none)
# VARIANT is appended to every stage's config, e.g. `copy` (configs/shapes.py RECIPES: the paper's regime):
#   bash launch/train_shapes.sh workdirs/shapes_copy weights/shapes_copy copy
exec bash "$(dirname "$0")/train.sh" configs/shapes.py "${1:-workdirs/shapes}" "${2:-weights/shapes}" "${3:-}"
