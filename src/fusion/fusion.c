/* The Fusion runtime: builds views, pipes and keys from the config, starts the main API
 * listener and one listener per receiver port, routes requests, and sweeps sessions. */
#include "fusion/fusion.h"

#include "common/clock.h"
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
    struct fu_fusion *f = l->f;
    pthread_rwlock_rdlock(&f->shape); /* a reload waits for the requests under way */
    if (!strncmp(p, "/api/v1/pipe/", 13) || !strcmp(p, "/api/v1/pipe")) {
        fu_api_pipe(l, req, resp);
    } else if (l->main_api && !strncmp(p, "/api/v1/views/", 14)) {
        fu_api_views(f, req, resp);
    } else if (l->main_api && !strncmp(p, "/api/v1/management/", 19)) {
        fu_api_mgmt(f, req, resp);
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
    pthread_rwlock_unlock(&f->shape);
}

static void *sweeper_main(void *arg)
{
    struct fu_fusion *f = arg;
    pthread_setname_np(pthread_self(), "fu-sweeper");
    while (!f->stopping) {
        pthread_rwlock_rdlock(&f->shape);
        fu_sessions_sweep(f);
        /* The views' timers: suspect deadlines and the tombstone TTL. */
        struct timespec wall;
        clock_gettime(CLOCK_REALTIME, &wall);
        for (size_t i = 0; i < f->nviews; i++)
            fu_view_tick(f->views[i], (double)wall.tv_sec + wall.tv_nsec / 1e9);
        pthread_rwlock_unlock(&f->shape);
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
        struct timespec ts = fu_mono_deadline(1);
        pthread_cond_timedwait(&f->snap_cv, &f->snap_mu, &ts);
        if (f->stopping)
            break;
        pthread_mutex_unlock(&f->snap_mu);
        pthread_rwlock_rdlock(&f->shape);
        for (size_t i = 0; i < f->nviews && !f->stopping; i++)
            if (fu_view_snapshot_due(f->views[i], (uint64_t)f->snap_journal_bytes,
                                     f->snap_interval))
                fu_view_snapshot(f->views[i], NULL);
        pthread_rwlock_unlock(&f->shape);
        pthread_mutex_lock(&f->snap_mu);
    }
    pthread_mutex_unlock(&f->snap_mu);
    return NULL;
}

/* ------------------------------------------------------------ listeners */

static struct fu_listener *listener_start(struct fu_fusion *f, const char *host, int64_t port,
                                          const char *receiver_id, bool main_api, size_t max_body,
                                          char *err, size_t errlen)
{
    struct fu_listener *l = calloc(1, sizeof(*l));
    if (!l || (receiver_id && !(l->receiver_id = strdup(receiver_id)))) {
        free(l);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    l->f = f;
    l->port = (int)port;
    l->main_api = main_api;
    char name[160];
    snprintf(name, sizeof(name), "%s%s", main_api ? "api" : "receiver ",
             main_api ? "" : receiver_id);
    struct fu_http_opts o = {.host = host,
                             .port = (int)port,
                             .max_body = max_body,
                             .threads = 8,
                             .idle_timeout = 60,
                             .name = name};
    if (fu_http_start(&l->http, &o, route, l, err, errlen) < 0) {
        free(l->receiver_id);
        free(l);
        return NULL;
    }
    fu_info("%s listening on %s:%d", name, host, fu_http_port(l->http));
    return l;
}

static void listener_stop(struct fu_listener *l)
{
    fu_http_stop(l->http);
    free(l->receiver_id);
    free(l);
}

static struct fu_listener *listener_on(struct fu_listener **v, size_t n, int64_t port)
{
    for (size_t i = 0; i < n; i++)
        if (v[i]->port == port)
            return v[i];
    return NULL;
}

/* Whether an active pipe of cfg is bound to receiver `id`. */
static bool receiver_used(const struct fu_config *cfg, const char *id)
{
    const struct fu_cfg_fusion *c = &cfg->fusion;
    for (size_t i = 0; i < c->pipes.n; i++) {
        const struct fu_cfg_fpipe *cp = FU_CFG_AT(&c->pipes, struct fu_cfg_fpipe, i);
        if (fu_config_pipe_active(cfg, &cp->it) && !strcmp(cp->receiver.id, id))
            return true;
    }
    return false;
}

/* ------------------------------------------------------------ views */

static char *dup_or_empty(const char *s)
{
    return strdup(s ? s : "");
}

/* The view's data directory, $FUSTOR_HOME/data/views/<view>: its journal is replayed, so
 * the view answers at once with what Fusion had acknowledged before it stopped. */
static int open_storage(struct fu_fusion *f, struct fu_view *v, char *err, size_t errlen)
{
    char sub[300];
    snprintf(sub, sizeof(sub), "data/views/%s", v->id);
    char *dir = fu_path_join(f->home, sub);
    if (!dir)
        return -ENOMEM;
    bool damaged = false;
    double t0 = fu_mono_now();
    int rc = fu_view_open_storage(v, dir, f->fsync_mode, f->group_commit, f->snap_keep, &damaged);
    if (rc == -EBUSY) {
        snprintf(err, errlen, "view %s: its data directory %s is in use by another Fusion", v->id,
                 dir);
    } else if (rc < 0) {
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
    free(dir);
    return rc;
}

static void view_destroy(struct fu_view *v)
{
    fu_view_free(v);
    free(v);
}

/* A view of the config, its storage opened. NULL on failure, with a message in err. */
static struct fu_view *view_create(struct fu_fusion *f, const struct fu_cfg_view *cv, char *err,
                                   size_t errlen)
{
    struct fu_view *v = calloc(1, sizeof(*v));
    if (!v || fu_view_init(v, cv->it.id, cv->hot_file_threshold, cv->tombstone_ttl_seconds) < 0) {
        free(v);
        snprintf(err, errlen, "view %s: out of memory", cv->it.id);
        return NULL;
    }
    v->driver = dup_or_empty(cv->driver);
    v->max_tree_items = cv->max_tree_items;
    for (size_t k = 0; k < cv->api_keys.n; k++)
        fu_strv_push(&v->read_keys, cv->api_keys.v[k]);
    if (!v->driver || v->read_keys.n != cv->api_keys.n) {
        snprintf(err, errlen, "view %s: out of memory", cv->it.id);
        view_destroy(v);
        return NULL;
    }
    if (f->journal_enabled && open_storage(f, v, err, errlen) < 0) {
        view_destroy(v);
        return NULL;
    }
    return v;
}

static bool strv_equal(const struct fu_strv *a, const struct fu_strv *b)
{
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->v[i], b->v[i]))
            return false;
    return true;
}

/* A reload's new settings for a view that stays (shape held for writing). */
static void view_update(struct fu_view *v, const struct fu_cfg_view *cv)
{
    if (strcmp(v->driver, cv->driver ? cv->driver : ""))
        fu_warn("reload: view %s: a new driver (%s) takes effect at the next restart", v->id,
                cv->driver ? cv->driver : "");
    struct fu_strv keys = {0};
    for (size_t k = 0; k < cv->api_keys.n; k++)
        fu_strv_push(&keys, cv->api_keys.v[k]);
    if (keys.n == cv->api_keys.n && !strv_equal(&keys, &v->read_keys)) {
        fu_info("reload: view %s: its API keys changed (%zu now)", v->id, keys.n);
        fu_strv_free(&v->read_keys);
        v->read_keys = keys;
    } else {
        fu_strv_free(&keys);
    }
    if (v->max_tree_items != cv->max_tree_items) {
        fu_info("reload: view %s: max_tree_items %lld -> %lld", v->id, (long long)v->max_tree_items,
                (long long)cv->max_tree_items);
        v->max_tree_items = cv->max_tree_items;
    }
    fu_view_write_lock(v);
    if (v->fs.hot != cv->hot_file_threshold || v->fs.tomb_ttl != cv->tombstone_ttl_seconds)
        fu_info("reload: view %s: hot_file_threshold %g -> %g s, tombstone_ttl_seconds %g -> "
                "%g s",
                v->id, v->fs.hot, cv->hot_file_threshold, v->fs.tomb_ttl,
                cv->tombstone_ttl_seconds);
    v->fs.hot = cv->hot_file_threshold;
    v->fs.tomb_ttl = cv->tombstone_ttl_seconds;
    pthread_rwlock_unlock(&v->lock);
}

/* ------------------------------------------------------------ pipes and keys */

static void pipe_destroy(struct fu_pipe_rt *p)
{
    free(p->id);
    free(p->receiver_id);
    free(p->views);
    free(p);
}

static void pipe_settings(struct fu_pipe_rt *p, const struct fu_cfg_fpipe *cp)
{
    p->allow_concurrent_push = cp->allow_concurrent_push;
    p->session_timeout = cp->session_timeout_seconds;
    p->audit_interval = cp->audit_interval_sec;
    p->sentinel_interval = cp->sentinel_interval_sec;
}

/* The pipe's views among f's (a view that failed to start is left out). */
static struct fu_view **pipe_views(struct fu_fusion *f, const struct fu_cfg_fpipe *cp, size_t *n)
{
    struct fu_view **v = calloc(cp->views.n ? cp->views.n : 1, sizeof(*v));
    *n = 0;
    for (size_t k = 0; v && k < cp->views.n; k++) {
        struct fu_view *x = fu_fusion_view(f, cp->views.v[k].id);
        if (x)
            v[(*n)++] = x;
    }
    return v;
}

static struct fu_pipe_rt *pipe_create(struct fu_fusion *f, const struct fu_cfg_fpipe *cp)
{
    struct fu_pipe_rt *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->id = strdup(cp->it.id);
    p->receiver_id = strdup(cp->receiver.id);
    p->views = pipe_views(f, cp, &p->nviews);
    pipe_settings(p, cp);
    if (!p->id || !p->receiver_id || !p->views) {
        pipe_destroy(p);
        return NULL;
    }
    return p;
}

static void keys_free(struct fu_push_key *k, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(k[i].key);
        free(k[i].receiver_id);
    }
    free(k);
}

/* The receivers' API keys, each opening its pipe (among f->pipes) on its receiver's port. */
static int keys_build(struct fu_fusion *f, const struct fu_cfg_fusion *c, struct fu_push_key **out,
                      size_t *nout)
{
    size_t cap = 0, n = 0;
    for (size_t i = 0; i < c->receivers.n; i++)
        cap += FU_CFG_AT(&c->receivers, struct fu_cfg_receiver, i)->api_keys.n;
    struct fu_push_key *keys = calloc(cap ? cap : 1, sizeof(*keys));
    if (!keys)
        return -ENOMEM;
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
            struct fu_push_key *pk = &keys[n++];
            pk->key = strdup(a->key);
            pk->receiver_id = strdup(r->it.id);
            pk->pipe = p;
            pk->port = (int)r->port;
            if (!pk->key || !pk->receiver_id) {
                keys_free(keys, n);
                return -ENOMEM;
            }
        }
    }
    *out = keys;
    *nout = n;
    return 0;
}

/* ------------------------------------------------------------ start and stop */

int fu_fusion_start(struct fu_fusion **out, const struct fu_config *cfg, char *err, size_t errlen)
{
    const struct fu_cfg_fusion *c = &cfg->fusion;
    struct fu_fusion *f = calloc(1, sizeof(*f));
    if (!f)
        return -ENOMEM;
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&f->shape, &attr);
    pthread_rwlockattr_destroy(&attr);
    pthread_mutex_init(&f->mu, NULL);
    pthread_mutex_init(&f->snap_mu, NULL);
    f->max_body = (size_t)c->max_body_bytes;
    f->journal_enabled = c->journal_enabled;
    f->fsync_mode = !strcmp(c->journal_fsync, "always") ? FU_FSYNC_ALWAYS
                    : !strcmp(c->journal_fsync, "off")  ? FU_FSYNC_OFF
                                                        : FU_FSYNC_BATCH;
    f->group_commit = c->journal_group_commit_ms / 1000.0;
    f->snap_keep = (int)c->snapshot_keep;
    f->snap_interval = c->snapshot_interval_sec;
    f->snap_journal_bytes = (double)c->snapshot_journal_mb * 1024 * 1024;
    f->home = strdup(cfg->home ? cfg->home : ".");
    f->host = strdup(c->host);
    f->port = c->port;
    if (!f->home || !f->host ||
        (c->management_api_key && !(f->management_key = strdup(c->management_api_key))))
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
        struct fu_view *v = view_create(f, cv, err, errlen);
        if (!v) {
            fu_fusion_stop(f);
            return -EIO;
        }
        f->views[f->nviews++] = v;
    }
    for (size_t i = 0; i < c->pipes.n; i++) {
        const struct fu_cfg_fpipe *cp = FU_CFG_AT(&c->pipes, struct fu_cfg_fpipe, i);
        if (!fu_config_pipe_active(cfg, &cp->it))
            continue;
        if (!(f->pipes[f->npipes] = pipe_create(f, cp)))
            goto oom;
        f->npipes++;
    }
    if (keys_build(f, c, &f->keys, &f->nkeys) < 0)
        goto oom;

    int rc = 0;
    struct fu_listener *l =
        listener_start(f, c->host, c->port, NULL, true, f->max_body, err, errlen);
    if (l)
        f->listeners[f->nlisteners++] = l;
    else
        rc = -EADDRINUSE;
    for (size_t i = 0; rc == 0 && i < c->receivers.n; i++) {
        const struct fu_cfg_receiver *r = FU_CFG_AT(&c->receivers, struct fu_cfg_receiver, i);
        /* A receiver on a port already served shares its listener, as in v1. */
        if (r->disabled || !receiver_used(cfg, r->it.id) ||
            listener_on(f->listeners, f->nlisteners, r->port))
            continue;
        if ((l = listener_start(f, r->bind_host, r->port, r->it.id, false, f->max_body, err,
                                errlen)))
            f->listeners[f->nlisteners++] = l;
        else
            rc = -EADDRINUSE;
    }
    if (rc < 0) {
        fu_fusion_stop(f);
        return rc;
    }
    if (pthread_create(&f->sweeper, NULL, sweeper_main, f) == 0)
        f->sweeper_running = true;
    if (c->journal_enabled) {
        fu_cond_init_monotonic(&f->snap_cv);
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
    for (size_t i = 0; i < f->nlisteners; i++)
        listener_stop(f->listeners[i]);
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
            if (fu_view_unsnapshotted(f->views[i]))
                fu_view_snapshot(f->views[i], NULL);
    }
    pthread_mutex_destroy(&f->snap_mu);
    pthread_mutex_lock(&f->mu);
    while (f->nsessions)
        fu_session_close_locked(f, f->sessions[f->nsessions - 1]);
    fu_jobs_free(f);
    pthread_mutex_unlock(&f->mu);
    free(f->sessions);
    keys_free(f->keys, f->nkeys);
    free(f->management_key);
    for (size_t i = 0; i < f->npipes; i++)
        pipe_destroy(f->pipes[i]);
    free(f->pipes);
    for (size_t i = 0; i < f->nviews; i++)
        view_destroy(f->views[i]);
    free(f->views);
    free(f->listeners);
    free(f->home);
    free(f->host);
    pthread_mutex_destroy(&f->mu);
    pthread_rwlock_destroy(&f->shape);
    free(f);
}

/* ------------------------------------------------------------ reload */

static const struct fu_cfg_view *cfg_view(const struct fu_cfg_fusion *c, const char *id)
{
    for (size_t i = 0; i < c->views.n; i++) {
        const struct fu_cfg_view *cv = FU_CFG_AT(&c->views, struct fu_cfg_view, i);
        if (!cv->disabled && !strcmp(cv->it.id, id))
            return cv;
    }
    return NULL;
}

/* Closes every session of pipe p (f->mu held): its agents open new ones. */
static size_t close_sessions_locked(struct fu_fusion *f, struct fu_pipe_rt *p)
{
    size_t n = 0;
    for (size_t i = f->nsessions; i-- > 0;)
        if (i < f->nsessions && f->sessions[i]->pipe == p) {
            fu_session_close_locked(f, f->sessions[i]);
            n++;
        }
    return n;
}

/* Whether `now` holds a view `before` did not. */
static bool views_added(struct fu_view *const *before, size_t nb, struct fu_view *const *now,
                        size_t nn)
{
    for (size_t i = 0; i < nn; i++) {
        bool had = false;
        for (size_t k = 0; k < nb && !had; k++)
            had = before[k] == now[i];
        if (!had)
            return true;
    }
    return false;
}

int fu_fusion_reload(struct fu_fusion *f, const struct fu_config *cfg)
{
    const struct fu_cfg_fusion *c = &cfg->fusion;
    int rc = 0;
    char err[512];
    if (strcmp(c->host, f->host) || c->port != f->port)
        fu_warn("reload: the API's new address %s:%lld takes effect at the next restart", c->host,
                (long long)c->port);
    if (c->journal_enabled != f->journal_enabled ||
        (c->journal_enabled &&
         (strcmp(c->journal_fsync, f->fsync_mode == FU_FSYNC_ALWAYS ? "always"
                                   : f->fsync_mode == FU_FSYNC_OFF  ? "off"
                                                                    : "batch") ||
          c->journal_group_commit_ms / 1000.0 != f->group_commit)))
        fu_warn("reload: journal settings take effect at the next restart");
    if ((size_t)c->max_body_bytes != f->max_body)
        fu_warn("reload: max_body_bytes applies to listeners started from now on; the running "
                "ones keep %zu until the next restart",
                f->max_body);

    /* 1. New views start (their journals replay) and new ports listen before anything
     * changes for the requests under way; only this thread changes the arrays. */
    struct fu_view **added = calloc(c->views.n + 1, sizeof(*added));
    struct fu_listener **opened = calloc(c->receivers.n + 1, sizeof(*opened));
    size_t nadded = 0, nopened = 0;
    if (!added || !opened) {
        free(added);
        free(opened);
        fu_error("reload: out of memory; nothing changed");
        return -ENOMEM;
    }
    for (size_t i = 0; i < c->views.n; i++) {
        const struct fu_cfg_view *cv = FU_CFG_AT(&c->views, struct fu_cfg_view, i);
        if (cv->disabled || fu_fusion_view(f, cv->it.id))
            continue;
        struct fu_view *v = view_create(f, cv, err, sizeof(err));
        if (!v) {
            fu_error("reload: view %s cannot start: %s", cv->it.id, err);
            rc = -EIO;
            continue;
        }
        fu_info("reload: view %s added", v->id);
        added[nadded++] = v;
    }
    for (size_t i = 0; i < c->receivers.n; i++) {
        const struct fu_cfg_receiver *r = FU_CFG_AT(&c->receivers, struct fu_cfg_receiver, i);
        if (r->disabled || !receiver_used(cfg, r->it.id) ||
            listener_on(f->listeners, f->nlisteners, r->port) ||
            listener_on(opened, nopened, r->port))
            continue;
        struct fu_listener *l = listener_start(f, r->bind_host, r->port, r->it.id, false,
                                               (size_t)c->max_body_bytes, err, sizeof(err));
        if (!l) {
            fu_error("reload: receiver %s cannot listen: %s", r->it.id, err);
            rc = -EADDRINUSE;
            continue;
        }
        opened[nopened++] = l;
    }

    /* 2. The swap, with every request out of the way. */
    struct fu_view **views = calloc(f->nviews + nadded + 1, sizeof(*views));
    struct fu_view **gone_views = calloc(f->nviews + 1, sizeof(*gone_views));
    struct fu_pipe_rt **pipes = calloc(c->pipes.n + 1, sizeof(*pipes));
    struct fu_pipe_rt **gone_pipes = calloc(f->npipes + 1, sizeof(*gone_pipes));
    struct fu_listener **listeners = calloc(f->nlisteners + nopened + 1, sizeof(*listeners));
    struct fu_listener **gone_listeners = calloc(f->nlisteners + 1, sizeof(*gone_listeners));
    size_t nviews = 0, ngv = 0, npipes = 0, ngp = 0, nlisteners = 0, ngl = 0;
    char *mkey = c->management_api_key ? strdup(c->management_api_key) : NULL;
    if (!views || !gone_views || !pipes || !gone_pipes || !listeners || !gone_listeners ||
        (c->management_api_key && !mkey)) {
        fu_error("reload: out of memory; nothing changed");
        for (size_t i = 0; i < nadded; i++)
            view_destroy(added[i]);
        for (size_t i = 0; i < nopened; i++)
            listener_stop(opened[i]);
        rc = -ENOMEM;
        goto out;
    }
    pthread_rwlock_wrlock(&f->shape);
    pthread_mutex_lock(&f->mu);
    for (size_t i = 0; i < f->nviews; i++) {
        struct fu_view *v = f->views[i];
        const struct fu_cfg_view *cv = cfg_view(c, v->id);
        if (cv) {
            view_update(v, cv);
            views[nviews++] = v;
        } else {
            fu_jobs_drop_view_locked(f, v);
            gone_views[ngv++] = v;
        }
    }
    for (size_t i = 0; i < nadded; i++)
        views[nviews++] = added[i];
    struct fu_view **old_views = f->views;
    f->views = views;
    f->nviews = nviews;
    views = old_views;

    for (size_t i = 0; i < c->pipes.n; i++) {
        const struct fu_cfg_fpipe *cp = FU_CFG_AT(&c->pipes, struct fu_cfg_fpipe, i);
        if (!fu_config_pipe_active(cfg, &cp->it))
            continue;
        struct fu_pipe_rt *p = fu_fusion_pipe(f, cp->it.id);
        if (!p) {
            if (!(p = pipe_create(f, cp))) {
                fu_error("reload: pipe %s: out of memory", cp->it.id);
                rc = -ENOMEM;
                continue;
            }
            fu_info("reload: pipe %s added", p->id);
            pipes[npipes++] = p;
            continue;
        }
        size_t nv;
        struct fu_view **pv = pipe_views(f, cp, &nv);
        char *rid = strdup(cp->receiver.id);
        if (!pv || !rid) {
            free(pv);
            free(rid);
            fu_error("reload: pipe %s: out of memory; kept as it was", p->id);
            rc = -ENOMEM;
            pipes[npipes++] = p;
            continue;
        }
        /* A new receiver, or a new view the leader must fill: the agents start over. */
        bool rebind = strcmp(p->receiver_id, rid) || views_added(p->views, p->nviews, pv, nv);
        pipe_settings(p, cp);
        free(p->views);
        p->views = pv;
        p->nviews = nv;
        free(p->receiver_id);
        p->receiver_id = rid;
        if (rebind) {
            size_t n = close_sessions_locked(f, p);
            fu_info("reload: pipe %s: its receiver or views changed: %zu session(s) closed, its "
                    "agents open new ones",
                    p->id, n);
        }
        pipes[npipes++] = p;
    }
    for (size_t i = 0; i < f->npipes; i++) {
        bool kept = false;
        for (size_t k = 0; k < npipes && !kept; k++)
            kept = pipes[k] == f->pipes[i];
        if (kept)
            continue;
        size_t n = close_sessions_locked(f, f->pipes[i]);
        fu_info("reload: pipe %s removed (%zu session(s) closed)", f->pipes[i]->id, n);
        gone_pipes[ngp++] = f->pipes[i];
    }
    free(f->pipes);
    f->pipes = pipes;
    f->npipes = npipes;
    pipes = NULL;

    struct fu_push_key *keys;
    size_t nkeys;
    if (keys_build(f, c, &keys, &nkeys) == 0) {
        if (nkeys != f->nkeys)
            fu_info("reload: %zu push API keys (%zu before)", nkeys, f->nkeys);
        keys_free(f->keys, f->nkeys);
        f->keys = keys;
        f->nkeys = nkeys;
    } else {
        fu_error("reload: out of memory: the push API keys stay as they were");
        rc = -ENOMEM;
    }
    for (size_t i = 0; i < f->nlisteners; i++) {
        struct fu_listener *l = f->listeners[i];
        bool used = l->main_api;
        for (size_t k = 0; !used && k < c->receivers.n; k++) {
            const struct fu_cfg_receiver *r = FU_CFG_AT(&c->receivers, struct fu_cfg_receiver, k);
            used = !r->disabled && r->port == l->port && receiver_used(cfg, r->it.id);
        }
        if (used)
            listeners[nlisteners++] = l;
        else
            gone_listeners[ngl++] = l;
    }
    for (size_t i = 0; i < nopened; i++)
        listeners[nlisteners++] = opened[i];
    free(f->listeners);
    f->listeners = listeners;
    f->nlisteners = nlisteners;
    listeners = NULL;
    if ((mkey == NULL) != (f->management_key == NULL) || (mkey && strcmp(mkey, f->management_key)))
        fu_info("reload: the management API key changed");
    free(f->management_key);
    f->management_key = mkey;
    mkey = NULL;
    f->snap_interval = c->snapshot_interval_sec;
    f->snap_journal_bytes = (double)c->snapshot_journal_mb * 1024 * 1024;
    f->snap_keep = (int)c->snapshot_keep;
    for (size_t i = 0; i < f->nviews; i++)
        f->views[i]->snap_keep = f->snap_keep;
    pthread_mutex_unlock(&f->mu);
    pthread_rwlock_unlock(&f->shape);

    /* 3. What went, once no request can reach it. */
    for (size_t i = 0; i < ngl; i++) {
        fu_info("reload: listener on port %d closed", gone_listeners[i]->port);
        listener_stop(gone_listeners[i]);
    }
    for (size_t i = 0; i < ngp; i++)
        pipe_destroy(gone_pipes[i]);
    for (size_t i = 0; i < ngv; i++) {
        struct fu_view *v = gone_views[i];
        if (fu_view_unsnapshotted(v))
            fu_view_snapshot(v, NULL);
        if (v->data_dir)
            fu_info("reload: view %s removed; its data stays in %s until `fustor-fusion purge "
                    "%s`",
                    v->id, v->data_dir, v->id);
        else
            fu_info("reload: view %s removed", v->id);
        view_destroy(v);
    }
out:
    free(views);
    free(gone_views);
    free(pipes);
    free(gone_pipes);
    free(listeners);
    free(gone_listeners);
    free(mkey);
    free(added);
    free(opened);
    return rc;
}
