#!/usr/bin/env bash
# Reproduces the shipped shape-scenes weights (weights/scenes) from scratch (launch/train.sh with configs/scenes.py):
#   bash launch/train_scenes.sh [WORKDIR] [OUT]     (defaults: workdirs/scenes, weights/scenes)
exec bash "$(dirname "$0")/train.sh" configs/scenes.py "${1:-workdirs/scenes}" "${2:-weights/scenes}"
