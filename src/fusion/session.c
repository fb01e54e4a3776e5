/* Sessions and leadership. Each pipe has at most one leader: the oldest live session of the
 * pipe. Leadership is per pipe rather than per view so that in aggregation mode (several
 * pipes, i.e. several storages, into one view) every storage still gets its snapshot and
 * audit; for a view fed by one pipe it is the same as v1's per-view leader. Every change of
 * leader increases the pipe's epoch (the fencing token). */
#include "fusion/fusion.h"

#include "common/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double fu_mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

struct fu_pipe_rt *fu_fusion_pipe(struct fu_fusion *f, const char *id)
{
    for (size_t i = 0; i < f->npipes; i++)
        if (!strcmp(f->pipes[i]->id, id))
            return f->pipes[i];
    return NULL;
}

struct fu_view *fu_fusion_view(struct fu_fusion *f, const char *id)
{
    for (size_t i = 0; i < f->nviews; i++)
        if (!strcmp(f->views[i]->id, id))
            return f->views[i];
    return NULL;
}

struct fu_session *fu_session_find_locked(struct fu_fusion *f, const char *id)
{
    for (size_t i = 0; i < f->nsessions; i++)
        if (!strcmp(f->sessions[i]->id, id))
            return f->sessions[i];
    return NULL;
}

static void elect_locked(struct fu_fusion *f, struct fu_pipe_rt *p)
{
    if (p->leader[0])
        return;
    for (size_t i = 0; i < f->nsessions; i++) {
        struct fu_session *s = f->sessions[i];
        if (s->pipe == p) {
            snprintf(p->leader, sizeof(p->leader), "%s", s->id);
            p->epoch++;
            p->snapshot_complete = false;
            fu_info("pipe %s: session %s (%s) leads, epoch %llu", p->id, s->id, s->task_id,
                    (unsigned long long)p->epoch);
            return;
        }
    }
}

int fu_session_add_locked(struct fu_fusion *f, struct fu_session *s)
{
    if (f->nsessions == f->cap_sessions) {
        size_t cap = f->cap_sessions ? f->cap_sessions * 2 : 16;
        struct fu_session **v = realloc(f->sessions, cap * sizeof(*v));
        if (!v)
            return -1;
        f->sessions = v;
        f->cap_sessions = cap;
    }
    f->sessions[f->nsessions++] = s; /* creation order: the oldest comes first */
    s->pipe->sessions_created++;
    elect_locked(f, s->pipe);
    return 0;
}

static void session_free(struct fu_session *s)
{
    free(s->task_id);
    free(s->agent_id);
    free(s->source_uri);
    free(s->client_ip);
    free(s->agent_status);
    free(s->reported_config);
    free(s->reported_config_file);
    fu_strv_free(&s->commands);
    free(s);
}

void fu_session_close_locked(struct fu_fusion *f, struct fu_session *s)
{
    for (size_t i = 0; i < f->nsessions; i++) {
        if (f->sessions[i] != s)
            continue;
        memmove(&f->sessions[i], &f->sessions[i + 1],
                (f->nsessions - i - 1) * sizeof(f->sessions[0]));
        f->nsessions--;
        break;
    }
    struct fu_pipe_rt *p = s->pipe;
    p->sessions_closed++;
    if (fu_session_leads(s)) {
        p->leader[0] = '\0';
        elect_locked(f, p);
    }
    session_free(s);
}

void fu_sessions_sweep(struct fu_fusion *f)
{
    double now = fu_mono_now();
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    pthread_mutex_lock(&f->mu);
    for (size_t i = 0; i < f->nsessions;) {
        struct fu_session *s = f->sessions[i];
        if (now - s->last_activity > s->timeout) {
            fu_info("pipe %s: session %s (%s) expired after %.1f s without a heartbeat",
                    s->pipe->id, s->id, s->task_id, now - s->last_activity);
            fu_session_close_locked(f, s);
            continue; /* the array shifted */
        }
        i++;
    }
    fu_jobs_sweep_locked(f, (double)wall.tv_sec + wall.tv_nsec / 1e9);
    pthread_mutex_unlock(&f->mu);
}
