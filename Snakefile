# Executes every (model, experiment) of pipeline.yaml with papermill; `make book` runs this.
# A page is re-run when what produced it changed (its source, the library, its parameters, the
# weights), not when file times say so: a page's stamp is dated to the epoch while the digest stored
# in the page matches, and to now when it does not (ccs.pipeline.stamp). A fresh clone runs nothing.
# The rule's output is a "done" file standing for the page: Snakemake deletes a job's outputs before
# running it, and the page must survive an interrupted run (`ccs run` replaces it atomically).
# On a cluster: `snakemake --executor slurm --jobs 20 --default-resources slurm_partition=gpu`
# (needs the snakemake-executor-plugin-slurm package).
from ccs import pipeline

ROOT = pipeline.ROOT
FILES = {(r.model, r.experiment): [str(p.relative_to(ROOT)) for p in pipeline.stamp(r)] for r in pipeline.runs()}
if not pipeline.TOC.is_file() or pipeline.TOC.read_text() != pipeline.toc_text():
    pipeline.write_toc()  # the table of contents follows pipeline.yaml (by content, like the pages)
from ccs import paper_tables

paper_tables.write()  # the paper-vs-runs page (pipeline.yaml's paper_tables, if any) follows paper.yaml and the
# pages' JSON, by content like the table of contents: now, and again once the pages have run


onsuccess:
    paper_tables.write()


rule all:
    input: [done for _, done in FILES.values()]


rule notebook:
    input:
        stamp=lambda w: FILES[w.model, w.experiment][0],
        source=ancient("notebooks/{experiment}.py"),
    output: touch(".snakemake/ccs-stamps/{model}/{experiment}.done")
    threads: 2
    shell: "ccs run {wildcards.model} {wildcards.experiment}"
