# Executes every (model, experiment) of pipeline.yaml with papermill; `make book` runs this.
# On a cluster: `snakemake --executor slurm --jobs 20 --default-resources slurm_partition=gpu`
# (needs the snakemake-executor-plugin-slurm package).
from pathlib import Path

from ccs import pipeline

RUNS = {(r.model, r.experiment): r for r in pipeline.runs()}
LIB = sorted(str(p) for p in Path("lib/ccs").rglob("*.py"))


rule all:
    input:
        "_toc.yml",
        [str(r.notebook.relative_to(pipeline.ROOT)) for r in RUNS.values()],


rule toc:
    input: "pipeline.yaml"
    output: "_toc.yml"
    shell: "ccs toc"


rule notebook:
    input:
        source="notebooks/{experiment}.py",
        lib=LIB,
    output: "book/runs/{model}/{experiment}.ipynb"
    threads: 2
    shell: "ccs run {wildcards.model} {wildcards.experiment}"
