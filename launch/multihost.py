r"""Runs a tcts_jax command on every worker of a TPU VM slice, or on several GPU hosts (launch/README.md).

  python launch/multihost.py tpu create  --name=tcts --zone=us-central2-b --accelerator=v4-32
  python launch/multihost.py tpu install --name=tcts --zone=us-central2-b --repo=https://github.com/ORG/tcts-jax
  python launch/multihost.py tpu run     --name=tcts --zone=us-central2-b -- \
      python -m tcts_jax.train --config=configs/shapes.py:generator --workdir=/mnt/shared/gen
  python launch/multihost.py tpu delete  --name=tcts --zone=us-central2-b
  python launch/multihost.py gpu run --hosts=gpu0,gpu1 --dir=~/tcts-jax -- python -m tcts_jax.train ...

`tpu run` adds `--distributed` (JAX finds its peers on a TPU VM); `gpu run` adds `--coordinator_address` (the
first host), `--num_processes` and `--process_id`, over ssh, one process per host seeing all its GPUs. With
one host `gpu run` runs the command here. Every subcommand takes `--dry-run`: print the exact commands, one
per line, and run nothing. The workdir must be a directory every worker shares (NFS, a gcsfuse mount):
the processes write one checkpoint together.
"""

import argparse
import shlex
import subprocess
import sys

# The TPU VM runtime image; the project's requirements then install JAX for TPU.
TPU_RUNTIME = 'tpu-ubuntu2204-base'
COORDINATOR_PORT = 8476


def tpu_commands(args) -> list[list[str]]:
  where = [args.name, f'--zone={args.zone}']
  if args.project:
    where.append(f'--project={args.project}')
  tpu = ['gcloud', 'compute', 'tpus', 'tpu-vm']
  if args.action == 'create':
    return [tpu + ['create', *where, f'--accelerator-type={args.accelerator}', f'--version={args.version}']]
  if args.action == 'delete':
    return [tpu + ['delete', *where, '--quiet']]
  if args.action == 'install':
    remote = (
      f'git clone {shlex.quote(args.repo)} tcts-jax && cd tcts-jax && git checkout {shlex.quote(args.ref)} && '
      "pip install -r requirements.txt -e . 'jax[tpu]'"
    )
  else:
    remote = f'cd tcts-jax && {shlex.join(command_of(args) + ["--distributed"])}'
  return [tpu + ['ssh', *where, '--worker=all', f'--command={remote}']]


def gpu_commands(args) -> list[list[str]]:
  hosts = [h for h in args.hosts.split(',') if h]
  command = command_of(args)
  if len(hosts) == 1:
    return [command]
  coordinator = f'{hosts[0]}:{args.port}'
  out = []
  for i, host in enumerate(hosts):
    flags = [f'--coordinator_address={coordinator}', f'--num_processes={len(hosts)}', f'--process_id={i}']
    out.append(['ssh', host, f'cd {args.dir} && {shlex.join(command + flags)}'])
  return out


def command_of(args) -> list[str]:
  if not args.command:
    raise SystemExit('error: give the command to run after --, e.g. -- python -m tcts_jax.train --config=...')
  return args.command


def parse(argv):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  kinds = parser.add_subparsers(dest='kind', required=True)
  tpu = kinds.add_parser('tpu', help='a TPU VM (slice) through gcloud')
  tpu.add_argument('action', choices=['create', 'install', 'run', 'delete'])
  tpu.add_argument('--name', required=True)
  tpu.add_argument('--zone', required=True)
  tpu.add_argument('--project', default=None)
  tpu.add_argument('--accelerator', default='v4-8', help='TPU type for create, e.g. v4-32, v5litepod-16')
  tpu.add_argument('--version', default=TPU_RUNTIME, help='TPU VM runtime for create')
  tpu.add_argument('--repo', default=None, help='git URL of this project, for install')
  tpu.add_argument('--ref', default='main', help='branch, tag or commit to install')
  gpu = kinds.add_parser('gpu', help='one process per GPU host over ssh')
  gpu.add_argument('action', choices=['run'])
  gpu.add_argument('--hosts', required=True, help='comma-separated; the first one coordinates')
  gpu.add_argument('--dir', default='~/tcts-jax', help="the project's directory on every host")
  gpu.add_argument('--port', type=int, default=COORDINATOR_PORT, help="coordinator's port on the first host")
  for p in (tpu, gpu):
    p.add_argument('--dry-run', action='store_true', help='print the commands, run nothing')
  # Everything after `--` is the command to run, untouched by argparse.
  split = argv.index('--') if '--' in argv else len(argv)
  args = parser.parse_args(argv[:split])
  args.command = argv[split + 1 :]
  if args.kind == 'tpu' and args.action == 'install' and not args.repo:
    parser.error('tpu install needs --repo')
  if args.kind == 'tpu' and args.action != 'run' and args.command:
    parser.error(f'tpu {args.action} takes no command')
  return args


def main(argv=None):
  args = parse(sys.argv[1:] if argv is None else argv)
  commands = tpu_commands(args) if args.kind == 'tpu' else gpu_commands(args)
  if args.dry_run:
    for c in commands:
      print(shlex.join(c))
    return
  procs = [subprocess.Popen(c) for c in commands]  # every host at once: they wait for each other
  codes = [p.wait() for p in procs]
  if any(codes):
    raise SystemExit(f'error: exit codes {codes} for {[shlex.join(c)[:80] for c in commands]}')


if __name__ == '__main__':
  main()
