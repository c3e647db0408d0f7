# Executes every (model, experiment) of pipeline.yaml with papermill; `make book` runs this.
# A page is re-run when what produced it changed (its source, the library, its parameters, the
# weights), not when file times say so: a page's stamp is dated to the epoch while the digest stored
# in the page matches, and to now when it does not (ccs.pipeline.stamps). A fresh clone runs nothing.
# A job runs one model's stale pages; its output is a "done" file standing for them: Snakemake deletes
# a job's outputs before running it, and the pages must survive an interrupted run (`ccs run` replaces
# each atomically as soon as it is done).
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
from ccs.pipeline import schedule

ROOT = pipeline.ROOT
# the process `ccs run` must end with: this Snakemake (set here, before it starts any job, so that a
# job's shell started just before this one died still hands down the right pid, not init's)
os.environ["CCS_PARENT_PID"] = str(os.getpid())
if workflow.is_main_process:  # not in the jobs a cluster executor starts
    if note := pipeline.clear_stale_lock():
        print(note, file=sys.stderr)
STAMPS = pipeline.stamps(pipeline.runs())  # (model, experiment) -> (its page's stamp, whether it is stale)
MODELS = list(dict.fromkeys(model for model, _ in STAMPS))
# A model's stale pages run in one job, one after the other in book order and in one kernel
# (`ccs run MODEL EXPERIMENT...`): they share the kernel's imports (about 9 s of CPU a page) and the
# model's conditions through the cache (the same evaluation images, sets and draws), so a page reuses
# what the one before it computed. The jobs of different models run side by side, the cores shared
# among them. The job's input is every page's stamp (`freshness.stamps` dates a current page's to the
# epoch), so it runs when one of them is stale, and then runs only the stale ones.
PAGES = {m: [str(stamp.relative_to(ROOT)) for (model, _), (stamp, _) in STAMPS.items() if model == m] for m in MODELS}
SOURCES = {m: sorted({f"notebooks/{e}.py" for model, e in STAMPS if model == m}) for m in MODELS}
STALE = {m: " ".join(e for (model, e), (_, stale) in STAMPS.items() if model == m and stale) for m in MODELS}
# A ready job's priority: the stale work of its pages, by the heads it analyses (ccs.pipeline.schedule),
# so that the jobs end together instead of one running alone at the end.
WORK = schedule.work_left({key: stale for key, (_, stale) in STAMPS.items()}, schedule.analysed_heads(MODELS))


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
    input: [str(pipeline.done_file(m).relative_to(ROOT)) for m in MODELS]


rule pages:
    input:
        stamps=lambda w: PAGES[w.model],
        sources=lambda w: ancient(SOURCES[w.model]),
    output: touch(".snakemake/ccs-stamps/{model}.done")
    # The cache folders written in place are locked all the same (ccs.decompose.exclusive).
    threads: page_threads()
    priority: lambda w: WORK[w.model]
    params: pages=lambda w: STALE[w.model]
    # exec: `ccs run` is the job's process itself (the child of this Snakemake, CCS_PARENT_PID); a job
    # forced with nothing stale (`snakemake -F`) has nothing to run
    shell: "[ -z '{params.pages}' ] || OMP_NUM_THREADS={threads} exec ccs run --exit-with-parent {wildcards.model} {params.pages}"
