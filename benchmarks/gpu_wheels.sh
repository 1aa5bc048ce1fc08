#!/usr/bin/env bash
# Wheels for benchmarks/bench_gpu.py on a GPU machine that has PyTorch, transformers, accelerate,
# pandas and pyarrow but not the rest of LFP Explorer's requirements, and no network (the project's
# lent H100/H200 machines: Python 3.12, x86-64). Run here, where pip reaches PyPI. The packages come
# in two folders of under 64 MiB each, since one call to such a machine carries at most 64 MiB:
#   .whl-a: spaCy and blis (the VADER reward's tokenizer);
#   .whl-b: everything else the pipeline imports (trl, datasets, duckdb, vaderSentiment, spaCy's
#           smaller dependencies).
# Both folders are ignored by git (*.whl). docs/benchmarks.md ("Scale") gives the two device commands.
set -euo pipefail
cd "$(dirname "$0")/.."
download() {
  local folder=$1; shift
  mkdir -p "$folder"
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d "$folder" "$@"
}
download .whl-a spacy==3.8.18 blis==1.3.4
download .whl-b trl==1.16.0 datasets==5.2.0 duckdb==2.0.0 vaderSentiment==3.3.2 dill==0.4.1 multiprocess==0.70.19 \
  annotated-types==0.8.0 catalogue==2.0.10 cloudpathlib==0.26.0 confection==1.3.4 cymem==2.0.16 murmurhash==1.0.16 \
  preshed==3.0.15 pydantic==2.14.4 pydantic-core==2.50.5 smart-open==9.0.2 spacy-legacy==3.0.12 \
  spacy-loggers==1.0.5 srsly==2.5.6 thinc==8.3.14 typing-inspection==0.4.5 wasabi==1.1.3 weasel==1.0.1
du -sh .whl-a .whl-b
