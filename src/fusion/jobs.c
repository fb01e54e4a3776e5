/* On-demand scan jobs (Fustor v1 §2.10, §3.13): a query with on_demand_scan=true queues a
 * `scan` command for every session of the pipes feeding the view, delivered in their next
 * heartbeat reply; each agent answers with a job_complete batch. A job completes when every
 * asked session that is still alive has answered; it is forgotten an hour after completing,
 * or a day after starting if it never does. */
#include "fusion/fusion.h"

#include "common/log.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define JOB_KEEP_DONE 3600.0
#define JOB_KEEP_STUCK 86400.0

static bool has(const struct fu_strv *v, const char *s)
{
    for (size_t i = 0; i < v->n; i++)
        if (!strcmp(v->v[i], s))
            return true;
    return false;
}

static void job_free(struct fu_job *j)
{
    free(j->path);
    fu_strv_free(&j->expected);
    fu_strv_free(&j->done);
    free(j);
}

/* Complete when no asked session that is still alive is missing an answer. */
static void check_done(struct fu_fusion *f, struct fu_job *j, double now)
{
    if (j->completed_at > 0)
        return;
    for (size_t i = 0; i < j->expected.n; i++)
        if (!has(&j->done, j->expected.v[i]) && fu_session_find_locked(f, j->expected.v[i]))
            return;
    j->completed_at = now;
    fu_info("job %s (scan of %s in view %s) completed", j->id, j->path, j->view->id);
}

/* 32 random bits from the kernel; without them (never in practice), the monotonic clock's
 * nanoseconds mixed with a counter. */
static uint32_t random32(void)
{
    uint32_t v;
    if (getrandom(&v, sizeof(v), GRND_NONBLOCK) == (ssize_t)sizeof(v))
        return v;
    static _Atomic uint32_t calls;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ((uint32_t)ts.tv_nsec ^ (uint32_t)ts.tv_sec) * 2654435761u + ++calls;
}

static bool job_id_used(const struct fu_fusion *f, const char *id)
{
    for (size_t i = 0; i < f->njobs; i++)
        if (!strcmp(f->jobs[i]->id, id))
            return true;
    return false;
}

struct fu_job *fu_job_start_locked(struct fu_fusion *f, struct fu_view *v, const char *path,
                                   double now)
{
    struct fu_job *j = calloc(1, sizeof(*j));
    struct fu_job **jobs = j ? realloc(f->jobs, (f->njobs + 1) * sizeof(*jobs)) : NULL;
    if (!jobs) {
        free(j);
        return NULL;
    }
    f->jobs = jobs;
    do /* unique among the jobs kept, and unlike another process's (rand() was the same) */
        snprintf(j->id, sizeof(j->id), "%08x", (unsigned)random32());
    while (job_id_used(f, j->id));
    j->view = v;
    j->path = strdup(path);
    j->created_at = now;
    struct fu_buf cmd = FU_BUF_INIT;
    struct fu_jw w;
    fu_jw_init(&w, &cmd);
    fu_jw_obj_begin(&w);
    fu_jw_ckey(&w, "type");
    fu_jw_cstr(&w, "scan");
    fu_jw_ckey(&w, "path");
    fu_jw_cstr(&w, path);
    fu_jw_ckey(&w, "recursive");
    fu_jw_bool(&w, true);
    fu_jw_ckey(&w, "job_id");
    fu_jw_cstr(&w, j->id);
    fu_jw_ckey(&w, "created_at");
    fu_jw_double(&w, now);
    fu_jw_obj_end(&w);
    for (size_t i = 0; i < f->nsessions; i++) {
        struct fu_session *s = f->sessions[i];
        if (!fu_pipe_feeds(s->pipe, v))
            continue;
        fu_strv_push(&s->commands, fu_buf_str(&cmd)); /* the whole view: leader and followers */
        fu_strv_push(&j->expected, s->id);
    }
    fu_buf_free(&cmd);
    f->jobs[f->njobs++] = j;
    fu_info("job %s: scan of %s in view %s sent to %zu session(s)", j->id, path, v->id,
            j->expected.n);
    check_done(f, j, now);
    return j;
}

void fu_job_report_locked(struct fu_fusion *f, const char *job_id, const char *session_id,
                          double now)
{
    for (size_t i = 0; i < f->njobs; i++) {
        struct fu_job *j = f->jobs[i];
        if (strcmp(j->id, job_id) || !has(&j->expected, session_id))
            continue;
        if (!has(&j->done, session_id))
            fu_strv_push(&j->done, session_id);
        check_done(f, j, now);
    }
}

void fu_jobs_sweep_locked(struct fu_fusion *f, double now)
{
    for (size_t i = 0; i < f->njobs;) {
        struct fu_job *j = f->jobs[i];
        check_done(f, j, now);
        bool forget = (j->completed_at > 0 && now - j->completed_at > JOB_KEEP_DONE) ||
                      now - j->created_at > JOB_KEEP_STUCK;
        if (forget) {
            job_free(j);
            f->jobs[i] = f->jobs[--f->njobs];
            continue;
        }
        i++;
    }
}

void fu_jobs_drop_view_locked(struct fu_fusion *f, const struct fu_view *v)
{
    for (size_t i = 0; i < f->njobs;) {
        if (f->jobs[i]->view == v) {
            job_free(f->jobs[i]);
            f->jobs[i] = f->jobs[--f->njobs];
            continue;
        }
        i++;
    }
}

void fu_job_json(struct fu_fusion *f, const struct fu_job *j, struct fu_jw *w)
{
    (void)f;
    size_t total = j->expected.n, done = j->done.n;
    fu_jw_obj_begin(w);
    fu_jw_ckey(w, "job_id");
    fu_jw_cstr(w, j->id);
    fu_jw_ckey(w, "view_id");
    fu_jw_cstr(w, j->view->id);
    fu_jw_ckey(w, "path");
    fu_jw_cstr(w, j->path);
    fu_jw_ckey(w, "status");
    fu_jw_cstr(w, j->completed_at > 0 ? "COMPLETED" : "RUNNING");
    fu_jw_ckey(w, "progress");
    fu_jw_obj_begin(w);
    fu_jw_ckey(w, "completed_pipes");
    fu_jw_uint(w, done);
    fu_jw_ckey(w, "total_pipes");
    fu_jw_uint(w, total);
    fu_jw_ckey(w, "percentage");
    fu_jw_double(w, total ? 100.0 * (double)done / (double)total : 100.0);
    fu_jw_obj_end(w);
    fu_jw_ckey(w, "created_at");
    fu_jw_double(w, j->created_at);
    fu_jw_ckey(w, "completed_at");
    if (j->completed_at > 0)
        fu_jw_double(w, j->completed_at);
    else
        fu_jw_null(w);
    fu_jw_obj_end(w);
}

void fu_jobs_free(struct fu_fusion *f)
{
    for (size_t i = 0; i < f->njobs; i++)
        job_free(f->jobs[i]);
    free(f->jobs);
    f->jobs = NULL;
    f->njobs = 0;
}
