/* The Fusion runtime: builds views, pipes and keys from the config, starts the main API
 * listener and one listener per receiver port, routes requests, and sweeps sessions. */
#include "fusion/fusion.h"

#include "common/fsutil.h"
#include "common/json.h"
#include "common/log.h"
#include "fusion/journal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

bool fu_key_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char diff = la != lb;
    for (size_t i = 0; i < lb; i++)
        diff |= (unsigned char)(a[i % (la ? la : 1)] ^ b[i]);
    return !diff && la == lb;
}

const struct fu_push_key *fu_fusion_push_key(struct fu_fusion *f, const struct fu_listener *l,
                                             const char *key)
{
    const struct fu_push_key *hit = NULL;
    for (size_t i = 0; i < f->nkeys; i++) {
        const struct fu_push_key *k = &f->keys[i];
        if (!l->main_api && k->port != l->port)
            continue;
        if (fu_key_equal(key, k->key))
            hit = k; /* no early exit: timing does not tell which key matched */
    }
    return hit;
}

static void route(void *ctx, struct fu_http_req *req, struct fu_http_resp *resp)
{
    struct fu_listener *l = ctx;
    const char *p = req->path;
    if (!strncmp(p, "/api/v1/pipe/", 13) || !strcmp(p, "/api/v1/pipe")) {
        fu_api_pipe(l, req, resp);
    } else if (l->main_api && !strncmp(p, "/api/v1/views/", 14)) {
        fu_api_views(l->f, req, resp);
    } else if (l->main_api && !strncmp(p, "/api/v1/management/", 19)) {
        fu_api_mgmt(l->f, req, resp);
    } else if (l->main_api && !strcmp(p, "/health")) {
        fu_buf_puts(&resp->body, "{\"status\":\"ok\"}");
    } else if (l->main_api && !strcmp(p, "/ready")) {
        /* Listening means the config is loaded and every listener is bound. */
        fu_buf_puts(&resp->body, "{\"status\":\"ready\"}");
    } else if (!strcmp(p, "/")) {
        fu_buf_puts(&resp->body, "{\"message\":\"Welcome to Fusion Storage Engine Ingest API\"}");
    } else {
        fu_http_error(resp, 404, "Not Found");
    }
}

static void *sweeper_main(void *arg)
{
    struct fu_fusion *f = arg;
    pthread_setname_np(pthread_self(), "fu-sweeper");
    while (!f->stopping) {
        fu_sessions_sweep(f);
        /* The views' timers: suspect deadlines and the tombstone TTL. */
        struct timespec wall;
        clock_gettime(CLOCK_REALTIME, &wall);
        for (size_t i = 0; i < f->nviews; i++)
            fu_view_tick(&f->views[i], (double)wall.tv_sec + wall.tv_nsec / 1e9);
        nanosleep(&(struct timespec){0, 200 * 1000 * 1000}, NULL);
    }
    return NULL;
}

/* Snapshots every `snapshot.interval_sec` (when the journal grew) and after every
 * `snapshot.journal_mb` of journal, one view at a time, off the request threads. */
static void *snapshotter_main(void *arg)
{
    struct fu_fusion *f = arg;
    pthread_setname_np(pthread_self(), "fu-snapshot");
    pthread_mutex_lock(&f->snap_mu);
    while (!f->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&f->snap_cv, &f->snap_mu, &ts);
        if (f->stopping)
            break;
        pthread_mutex_unlock(&f->snap_mu);
        for (size_t i = 0; i < f->nviews && !f->stopping; i++)
            if (fu_view_snapshot_due(&f->views[i], (uint64_t)f->snap_journal_bytes,
                                     f->snap_interval))
                fu_view_snapshot(&f->views[i], NULL);
        pthread_mutex_lock(&f->snap_mu);
    }
    pthread_mutex_unlock(&f->snap_mu);
    return NULL;
}

static int add_listener(struct fu_fusion *f, const char *host, int64_t port,
                        const char *receiver_id, bool main_api, char *err, size_t errlen)
{
    for (size_t i = 0; i < f->nlisteners; i++)
        if (f->listeners[i].port == port) {
            /* A receiver on the main port shares the main listener, as in v1. */
            return 0;
        }
    struct fu_listener *l = &f->listeners[f->nlisteners];
    memset(l, 0, sizeof(*l));
    l->f = f;
    l->port = (int)port;
    l->main_api = main_api;
    l->receiver_id = receiver_id ? strdup(receiver_id) : NULL;
    char name[160];
    snprintf(name, sizeof(name), "%s%s", main_api ? "api" : "receiver ",
             main_api ? "" : receiver_id);
    struct fu_http_opts o = {.host = host,
                             .port = (int)port,
                             .max_body = f->max_body,
                             .threads = 8,
                             .idle_timeout = 60,
                             .name = name};
    int rc = fu_http_start(&l->http, &o, route, l, err, errlen);
    if (rc < 0) {
        free(l->receiver_id);
        return rc;
    }
    f->nlisteners++;
    fu_info("%s listening on %s:%d", name, host, fu_http_port(l->http));
    return 0;
}

static char *dup_or_empty(const char *s)
{
    return strdup(s ? s : "");
}

/* The view's data directory, $FUSTOR_HOME/data/views/<view>: its journal is replayed, so
 * the view answers at once with what Fusion had acknowledged before it stopped. */
static int open_storage(struct fu_fusion *f, const struct fu_config *cfg, struct fu_view *v,
                        char *err, size_t errlen)
{
    const struct fu_cfg_fusion *c = &cfg->fusion;
    char sub[300];
    snprintf(sub, sizeof(sub), "data/views/%s", v->id);
    char *dir = fu_path_join(cfg->home, sub);
    if (!dir)
        return -ENOMEM;
    int mode = !strcmp(c->journal_fsync, "always") ? FU_FSYNC_ALWAYS
               : !strcmp(c->journal_fsync, "off")  ? FU_FSYNC_OFF
                                                   : FU_FSYNC_BATCH;
    bool damaged = false;
    double t0 = fu_mono_now();
    int rc = fu_view_open_storage(v, dir, mode, c->journal_group_commit_ms / 1000.0,
                                  (int)c->snapshot_keep, &damaged);
    if (rc < 0) {
        snprintf(err, errlen, "view %s: cannot open its journal in %s: %s", v->id, dir,
                 strerror(-rc));
    } else if (v->restored) {
        fu_info("view %s: restored from %s: snapshot at position %llu, then %llu journal "
                "records replayed, in %.2f s: %llu entries",
                v->id, dir, (unsigned long long)v->snap_pos, (unsigned long long)v->replayed,
                fu_mono_now() - t0, (unsigned long long)fu_tree_count(&v->tree));
    }
    if (rc == 0 && damaged) {
        fu_warn("view %s: its journal was damaged; the view holds what was journaled before the "
                "damage, under a new incarnation: its pipes' leaders reconcile it with a full "
                "audit when they connect",
                v->id);
    }
    (void)f;
    free(dir);
    return rc;
}

int fu_fusion_start(struct fu_fusion **out, const struct fu_config *cfg, char *err, size_t errlen)
{
    const struct fu_cfg_fusion *c = &cfg->fusion;
    struct fu_fusion *f = calloc(1, sizeof(*f));
    if (!f)
        return -ENOMEM;
    pthread_mutex_init(&f->mu, NULL);
    pthread_mutex_init(&f->snap_mu, NULL);
    f->max_body = (size_t)c->max_body_bytes;
    if (c->management_api_key && !(f->management_key = strdup(c->management_api_key)))
        goto oom;

    f->views = calloc(c->views.n ? c->views.n : 1, sizeof(*f->views));
    f->pipes = calloc(c->pipes.n ? c->pipes.n : 1, sizeof(*f->pipes));
    f->listeners = calloc(c->receivers.n + 1, sizeof(*f->listeners));
    if (!f->views || !f->pipes || !f->listeners)
        goto oom;
    for (size_t i = 0; i < c->views.n; i++) {
        const struct fu_cfg_view *cv = FU_CFG_AT(&c->views, struct fu_cfg_view, i);
        if (cv->disabled)
            continue;
        struct fu_view *v = &f->views[f->nviews];
        if (fu_view_init(v, cv->it.id, cv->hot_file_threshold, cv->tombstone_ttl_seconds) < 0)
            goto oom;
        f->nviews++;
        if (c->journal_enabled && open_storage(f, cfg, v, err, errlen) < 0) {
            fu_fusion_stop(f);
            return -EIO;
        }
        v->driver = dup_or_empty(cv->driver);
        v->max_tree_items = cv->max_tree_items;
        for (size_t k = 0; k < cv->api_keys.n; k++)
            fu_strv_push(&v->read_keys, cv->api_keys.v[k]);
    }
    for (size_t i = 0; i < c->pipes.n; i++) {
        const struct fu_cfg_fpipe *cp = FU_CFG_AT(&c->pipes, struct fu_cfg_fpipe, i);
        if (!fu_config_pipe_active(cfg, &cp->it))
            continue;
        struct fu_pipe_rt *p = &f->pipes[f->npipes++];
        p->id = strdup(cp->it.id);
        p->receiver_id = strdup(cp->receiver.id);
        p->allow_concurrent_push = cp->allow_concurrent_push;
        p->session_timeout = cp->session_timeout_seconds;
        p->audit_interval = cp->audit_interval_sec;
        p->sentinel_interval = cp->sentinel_interval_sec;
        p->views = calloc(cp->views.n, sizeof(*p->views));
        if (!p->id || !p->receiver_id || !p->views)
            goto oom;
        for (size_t k = 0; k < cp->views.n; k++) {
            struct fu_view *v = fu_fusion_view(f, cp->views.v[k].id);
            if (v)
                p->views[p->nviews++] = v;
        }
    }
    size_t nkeys = 0;
    for (size_t i = 0; i < c->receivers.n; i++)
        nkeys += FU_CFG_AT(&c->receivers, struct fu_cfg_receiver, i)->api_keys.n;
    f->keys = calloc(nkeys ? nkeys : 1, sizeof(*f->keys));
    if (!f->keys)
        goto oom;
    for (size_t i = 0; i < c->receivers.n; i++) {
        const struct fu_cfg_receiver *r = FU_CFG_AT(&c->receivers, struct fu_cfg_receiver, i);
        if (r->disabled)
            continue;
        for (size_t k = 0; k < r->api_keys.n; k++) {
            const struct fu_cfg_api_key *a = FU_CFG_AT(&r->api_keys, struct fu_cfg_api_key, k);
            struct fu_pipe_rt *p = fu_fusion_pipe(f, a->pipe_id.id);
            /* A key opens its pipe only on the receiver that pipe is bound to. */
            if (!p || strcmp(p->receiver_id, r->it.id))
                continue;
            struct fu_push_key *pk = &f->keys[f->nkeys++];
            pk->key = strdup(a->key);
            pk->receiver_id = strdup(r->it.id);
            pk->pipe = p;
            pk->port = (int)r->port;
        }
    }

    int rc = add_listener(f, c->host, c->port, NULL, true, err, errlen);
    for (size_t i = 0; rc == 0 && i < c->receivers.n; i++) {
        const struct fu_cfg_receiver *r = FU_CFG_AT(&c->receivers, struct fu_cfg_receiver, i);
        bool used = false;
        for (size_t k = 0; k < f->npipes; k++)
            used |= !strcmp(f->pipes[k].receiver_id, r->it.id);
        if (!r->disabled && used)
            rc = add_listener(f, r->bind_host, r->port, r->it.id, false, err, errlen);
    }
    if (rc < 0) {
        fu_fusion_stop(f);
        return rc;
    }
    if (pthread_create(&f->sweeper, NULL, sweeper_main, f) == 0)
        f->sweeper_running = true;
    if (c->journal_enabled) {
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&f->snap_cv, &ca);
        pthread_condattr_destroy(&ca);
        f->snap_interval = c->snapshot_interval_sec;
        f->snap_journal_bytes = (double)c->snapshot_journal_mb * 1024 * 1024;
        if (pthread_create(&f->snapshotter, NULL, snapshotter_main, f) == 0)
            f->snapshotter_running = true;
    }
    *out = f;
    return 0;
oom:
    snprintf(err, errlen, "out of memory building the Fusion runtime");
    fu_fusion_stop(f);
    return -ENOMEM;
}

void fu_fusion_stop(struct fu_fusion *f)
{
    if (!f)
        return;
    f->stopping = true;
    for (size_t i = 0; i < f->nlisteners; i++) {
        fu_http_stop(f->listeners[i].http);
        free(f->listeners[i].receiver_id);
    }
    if (f->sweeper_running)
        pthread_join(f->sweeper, NULL);
    if (f->snapshotter_running) {
        pthread_mutex_lock(&f->snap_mu);
        pthread_cond_broadcast(&f->snap_cv);
        pthread_mutex_unlock(&f->snap_mu);
        pthread_join(f->snapshotter, NULL);
        pthread_cond_destroy(&f->snap_cv);
        /* A clean stop leaves a snapshot: the next start has no journal to replay. */
        for (size_t i = 0; i < f->nviews; i++)
            if (fu_view_unsnapshotted(&f->views[i]))
                fu_view_snapshot(&f->views[i], NULL);
    }
    pthread_mutex_destroy(&f->snap_mu);
    pthread_mutex_lock(&f->mu);
    while (f->nsessions)
        fu_session_close_locked(f, f->sessions[f->nsessions - 1]);
    fu_jobs_free(f);
    pthread_mutex_unlock(&f->mu);
    free(f->sessions);
    for (size_t i = 0; i < f->nkeys; i++) {
        free(f->keys[i].key);
        free(f->keys[i].receiver_id);
    }
    free(f->keys);
    free(f->management_key);
    for (size_t i = 0; i < f->npipes; i++) {
        free(f->pipes[i].id);
        free(f->pipes[i].receiver_id);
        free(f->pipes[i].views);
    }
    free(f->pipes);
    for (size_t i = 0; i < f->nviews; i++)
        fu_view_free(&f->views[i]);
    free(f->views);
    free(f->listeners);
    pthread_mutex_destroy(&f->mu);
    free(f);
}
