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
# A model's pages that run go one after the other, in book order: they share the model's conditions
# through the cache (the same evaluation images, sets and draws), so a page reuses what the one before
# it computed instead of computing it beside it. Pages of different models run side by side, the cores
# shared among them. The edge joins only pages that run anyway (a stale page waits for its model's
# previous stale page; `freshness.stamp` dates a current page's stamp to the epoch), so it never makes
# a current page run. (`ancient` edges between all pages would not do: Snakemake then skips the check
# of the stamps of the pages after one that runs.)
STALE = {key: os.stat(stamp).st_mtime != 0 for key, (stamp, _) in FILES.items()}  # (a current page's is dated to the epoch)
BEFORE, last, MODELS = {}, {}, {model for model, _ in FILES}
for (model, experiment), (stamp, done) in FILES.items():
    if STALE[model, experiment]:
        if model in last:
            BEFORE[model, experiment] = last[model]
        last[model] = done
# A ready page's priority: the stale work left in its model's chain from it on (ccs.pipeline.schedule),
# so that the chains end together instead of one running alone at the end.
LEFT = pipeline.work_left(STALE)


def page_threads():
    """The cores of the run shared among the models' pages running side by side (1 on 2 cores with 4
    models: two pages at a time, one thread each; measured in benchmarks/README.md); 2 a page where a
    cluster executor gives no core count."""
    from snakemake.exceptions import WorkflowError

    try:
        cores = workflow.cores
    except WorkflowError:
        return 2
    return max(1, cores // len(MODELS))


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
        after=lambda w: BEFORE.get((w.model, w.experiment), []),
    output: touch(".snakemake/ccs-stamps/{model}/{experiment}.done")
    # Never two pages of one model at once (`BEFORE`): side by side they computed the same conditions
    # twice (the 29 jobs at half the pace). The cache folders written in place are locked all the same
    # (ccs.decompose.exclusive).
    threads: page_threads()
    priority: lambda w: LEFT[w.model, w.experiment]
    # exec: `ccs run` is the job's process itself (the child of this Snakemake, CCS_PARENT_PID)
    shell: "OMP_NUM_THREADS={threads} exec ccs run --exit-with-parent {wildcards.model} {wildcards.experiment}"
