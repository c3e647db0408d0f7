# Executes every (model, experiment) of pipeline.yaml with papermill; `make book` runs this.
# A page is re-run when what produced it changed (its source, the library, its parameters, the
# weights), not when file times say so: a page's stamp is dated to the epoch while the digest stored
# in the page matches, and to now when it does not (ccs.pipeline.stamp). A fresh clone runs nothing.
# The rule's output is a "done" file standing for the page: Snakemake deletes a job's outputs before
# running it, and the page must survive an interrupted run (`ccs run` replaces it atomically).
# On a cluster: `snakemake --executor slurm --jobs 20 --default-resources slurm_partition=gpu`
# (needs the snakemake-executor-plugin-slurm package); tests/test_pipeline.py runs it through the
# cluster-generic executor.
# Nothing outlives the run: `ccs run --exit-with-parent` ends (its kernel with it, the page as it was)
# when the Snakemake that started it dies, even by SIGKILL, and even before `ccs run` has finished
# starting (the Snakefile hands it the pid of that Snakemake, CCS_PARENT_PID: ccs.lifeline). Under
# `make book`, Snakemake itself ends with make: the Makefile starts it through ccs.lifeline, with
# SIGKILL (Snakemake takes SIGTERM as "finish the running jobs first", which would go on writing pages
# after make has gone; its `ccs run` children stop cleanly on their own). A lock left by a killed run
# is cleared by the next one.
import os
import sys

from ccs import pipeline

ROOT = pipeline.ROOT
# the process `ccs run` must end with: this Snakemake (set here, before it starts any job, so that a
# job's shell started just before this one died still hands down the right pid, not init's)
os.environ["CCS_PARENT_PID"] = str(os.getpid())
if workflow.is_main_process:  # not in the jobs a cluster executor starts
    if note := pipeline.clear_stale_lock():
        print(note, file=sys.stderr)
FILES = {(r.model, r.experiment): [str(p.relative_to(ROOT)) for p in pipeline.stamp(r)] for r in pipeline.runs()}
from ccs import paper_tables, replication

if workflow.is_main_process:  # once, not again in every job of a cluster run
    if not pipeline.TOC.is_file() or pipeline.TOC.read_text() != pipeline.toc_text():
        pipeline.write_toc()  # the table of contents follows pipeline.yaml (by content, like the pages)
    paper_tables.write()  # the paper-vs-runs page (pipeline.yaml's paper_tables, if any) follows paper.yaml
    # and the pages' JSON, by content like the table of contents: now, and again once the pages have run
    replication.write()  # the replication page (pipeline.yaml's replication) follows the pages' JSON alike


onstart:
    pipeline.record_lock_owner()  # this run holds Snakemake's lock now


onsuccess:
    paper_tables.write()
    replication.write()
    pipeline.forget_lock_owner()


onerror:
    pipeline.forget_lock_owner()


rule all:
    input: [done for _, done in FILES.values()]


rule notebook:
    input:
        stamp=lambda w: FILES[w.model, w.experiment][0],
        source=ancient("notebooks/{experiment}.py"),
    output: touch(".snakemake/ccs-stamps/{model}/{experiment}.done")
    # Two threads a page, so that on 2 cores the pages run one after the other: a page reuses the
    # embeddings of the conditions that the model's earlier pages computed (the same evaluation
    # images, sets and draws). Measured: side by side with one thread each, the 29 jobs went at half
    # the pace, each page computing what the other was computing at the same time. With more cores
    # pages do run side by side; the cache folders written in place are locked (ccs.decompose.exclusive).
    threads: 2
    # exec: `ccs run` is the job's process itself (the child of this Snakemake, CCS_PARENT_PID)
    shell: "OMP_NUM_THREADS={threads} exec ccs run --exit-with-parent {wildcards.model} {wildcards.experiment}"
