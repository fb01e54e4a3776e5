/* The view API under /api/v1/views/{view}/ (Fustor v1 §4): tree (nested or paginated),
 * stats, search and sessions. A key reads a view only if it is one of the view's read keys or
 * a push key of a pipe that feeds it (403 otherwise; v1 let any key read any view). */
#include "fusion/fusion.h"

#include "common/json.h"
#include "common/log.h"
#include "common/paths.h"
#include "fusion/journal.h"
#include "fusion/view_fs/query.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PREFIX "/api/v1/views/"

/* 0 when `key` may read `v` (NULL: no such view), else the HTTP status to answer. */
static int authorize(struct fu_fusion *f, const struct fu_view *v, const char *key,
                     struct fu_http_resp *resp)
{
    if (!key || !*key) {
        fu_http_error(resp, 401, "X-API-Key header is missing");
        return 401;
    }
    bool known = false, allowed = false;
    for (size_t i = 0; i < f->nviews; i++)
        for (size_t k = 0; k < f->views[i]->read_keys.n; k++)
            if (fu_key_equal(key, f->views[i]->read_keys.v[k])) {
                known = true;
                allowed |= f->views[i] == v;
            }
    for (size_t i = 0; i < f->nkeys; i++)
        if (fu_key_equal(key, f->keys[i].key)) {
            known = true;
            allowed |= fu_pipe_feeds(f->keys[i].pipe, v);
        }
    if (!known) {
        fu_http_error(resp, 401, "Invalid or inactive X-API-Key");
        return 401;
    }
    if (!v) { /* only a valid key learns whether a view exists */
        fu_http_error(resp, 404, "View not found");
        return 404;
    }
    if (allowed)
        return 0;
    fu_http_error(resp, 403, "API Key not authorized for this view");
    return 403;
}

/* Readiness as in v1, except that a view holding data keeps serving while a new leader
 * resyncs. Returns true when the view may answer; *resyncing tells stats. */
static bool ready(struct fu_fusion *f, struct fu_view *v, bool *resyncing,
                  struct fu_http_resp *resp)
{
    bool leader = false, synced = true;
    *resyncing = false;
    pthread_mutex_lock(&f->mu);
    for (size_t i = 0; i < f->npipes; i++) {
        struct fu_pipe_rt *p = f->pipes[i];
        if (!fu_pipe_feeds(p, v))
            continue;
        if (p->leader[0]) {
            leader = true;
            if (!p->snapshot_complete) {
                synced = false;
                *resyncing = true;
            }
        }
    }
    pthread_mutex_unlock(&f->mu);
    pthread_rwlock_rdlock(&v->lock);
    bool has_data = fu_tree_count(&v->tree) > 1;
    pthread_rwlock_unlock(&v->lock);
    if (has_data)
        return true;
    if (!leader) {
        fu_http_error(resp, 503,
                      "View '%s': No active leader session. Ensure at least one agent is "
                      "running.",
                      v->id);
        resp->retry_after = 10;
        return false;
    }
    if (!synced) {
        fu_http_error(resp, 503,
                      "View '%s': Initial snapshot sync phase in progress (Leader is scanning "
                      "storage)",
                      v->id);
        resp->retry_after = 5;
        return false;
    }
    return true;
}

/* Query booleans as FastAPI reads them. -1 when invalid. */
static int qbool(const char *s, bool dflt)
{
    if (!s)
        return dflt;
    static const char *const t[] = {"true", "1", "yes", "on"}, *const fl[] = {"false", "0", "no",
                                                                              "off"};
    for (int i = 0; i < 4; i++) {
        if (!strcasecmp(s, t[i]))
            return 1;
        if (!strcasecmp(s, fl[i]))
            return 0;
    }
    return -1;
}

static bool qint(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static bool path_param(struct fu_http_req *req, const char *name, struct fu_buf *out,
                       struct fu_http_resp *resp)
{
    const char *p = fu_http_query(req, name);
    const char *why;
    if (fu_path_normalize(p ? p : "/", p ? strlen(p) : 1, out, &why) < 0) {
        fu_http_error(resp, 400, "invalid %s: %s", name, why);
        return false;
    }
    return true;
}

/* on_demand_scan=true: ask every agent of the view to scan the path now (v1 §3.13), and add
 * "job_id" and "job_pending" to the answer. A path not in the view yet is not a 404 then. */
static void on_demand(struct fu_fusion *f, struct fu_view *v, const char *path,
                      struct fu_http_req *req, struct fu_http_resp *resp)
{
    char id[16] = "";
    pthread_mutex_lock(&f->mu);
    struct fu_job *j = fu_job_start_locked(f, v, path, req->recv_time);
    bool pending = j && !j->completed_at;
    if (j)
        snprintf(id, sizeof(id), "%s", j->id);
    pthread_mutex_unlock(&f->mu);
    if (!j) {
        fu_http_error(resp, 503, "out of memory");
        return;
    }
    if (resp->status == 404) {
        resp->status = 200;
        fu_buf_reset(&resp->body);
        fu_buf_printf(&resp->body,
                      "{\"job_id\":\"%s\",\"job_pending\":%s,\"message\":\"The path is not "
                      "in the view yet; a scan was requested. Poll /jobs/%s or query again.\"}",
                      id, pending ? "true" : "false", id);
    } else if (resp->status == 200 && resp->body.len &&
               resp->body.data[resp->body.len - 1] == '}') {
        resp->body.len--; /* reopen the node object */
        fu_buf_printf(&resp->body, ",\"job_id\":\"%s\",\"job_pending\":%s}", id,
                      pending ? "true" : "false");
    }
}

static void jobs(struct fu_fusion *f, struct fu_view *v, const char *id, struct fu_http_resp *resp)
{
    struct fu_jw w;
    fu_jw_init(&w, &resp->body);
    pthread_mutex_lock(&f->mu);
    if (!id) {
        fu_jw_obj_begin(&w);
        fu_jw_ckey(&w, "jobs");
        fu_jw_arr_begin(&w);
        for (size_t i = 0; i < f->njobs; i++)
            if (f->jobs[i]->view == v)
                fu_job_json(f, f->jobs[i], &w);
        fu_jw_arr_end(&w);
        fu_jw_obj_end(&w);
    } else {
        const struct fu_job *j = NULL;
        for (size_t i = 0; i < f->njobs && !j; i++)
            if (f->jobs[i]->view == v && !strcmp(f->jobs[i]->id, id))
                j = f->jobs[i];
        if (j)
            fu_job_json(f, j, &w);
        else
            fu_http_error(resp, 404, "job %s not found", id);
    }
    pthread_mutex_unlock(&f->mu);
}

static void tree(struct fu_fusion *f, struct fu_view *v, struct fu_http_req *req,
                 struct fu_http_resp *resp)
{
    struct fu_buf path = FU_BUF_INIT;
    if (!path_param(req, "path", &path, resp))
        return;
    int recursive = qbool(fu_http_query(req, "recursive"), true);
    int only_path = qbool(fu_http_query(req, "only_path"), false);
    int dry_run = qbool(fu_http_query(req, "dry_run"), false);
    int scan = qbool(fu_http_query(req, "on_demand_scan"), false);
    const char *md = fu_http_query(req, "max_depth");
    const char *ps = fu_http_query(req, "entry_page_size");
    long depth = -1, page = 0;
    if (recursive < 0 || only_path < 0 || dry_run < 0 || scan < 0) {
        fu_http_error(resp, 400,
                      "recursive, only_path, dry_run and on_demand_scan take true or false");
    } else if (md && *md && !qint(md, 0, 1000000, &depth)) {
        fu_http_error(resp, 400, "max_depth must be an integer >= 0");
    } else if (ps && !qint(ps, 1, 10000, &page)) {
        fu_http_error(resp, 400, "entry_page_size must be an integer from 1 to 10000");
    } else if (dry_run) {
        fu_buf_puts(&resp->body, "{\"message\":\"dry-run\",\"view_id\":");
        fu_json_escape(&resp->body, v->id, strlen(v->id));
        fu_buf_putc(&resp->body, '}');
    } else {
        struct fu_tree_query q = {
            .path = fu_buf_str(&path),
            .recursive = recursive,
            .max_depth = (int)depth,
            .only_path = only_path,
            .max_items = v->max_tree_items,
            .view_id = v->id,
        };
        /* A whole answer is kept for the same query until the view changes. */
        char *key = NULL;
        if (!ps && asprintf(&key, "%d %ld %d %lld %s", recursive, depth, only_path,
                            (long long)q.max_items, q.path) < 0)
            key = NULL;
        pthread_rwlock_rdlock(&v->lock);
        if (ps) {
            resp->status = fu_query_tree_page(&v->tree, &q, (size_t)page,
                                              fu_http_query(req, "cursor"), &resp->body);
        } else if (key && fu_view_answer_get(v, key, v->gen, &resp->body)) {
            resp->status = 200;
        } else {
            resp->status = fu_query_tree(&v->tree, &q, &resp->body);
            if (resp->status == 200 && key)
                fu_view_answer_put(v, key, v->gen, resp->body.data, resp->body.len);
        }
        pthread_rwlock_unlock(&v->lock);
        free(key);
        if (scan)
            on_demand(f, v, q.path, req, resp);
    }
    fu_buf_free(&path);
}

static void stats(struct fu_view *v, bool resyncing, struct fu_http_req *req,
                  struct fu_http_resp *resp)
{
    struct fu_buf path = FU_BUF_INIT;
    if (!path_param(req, "path", &path, resp))
        return;
    pthread_rwlock_rdlock(&v->lock);
    struct fu_stats_extra x = {
        .latency_ms = v->fs.latency_ms,
        .logical_now = fu_fs_logical_now(&v->fs, req->recv_time),
        .last_audit_finished_at = v->fs.audit_finished_at,
        .audit_cycle_count = v->fs.audit_cycles,
        .is_auditing = v->fs.auditing,
        .has_blind_spot = fu_fs_has_blind_spot(&v->fs),
        .resyncing = resyncing,
        .restored = v->restored,
        .journal_position = v->journal ? fu_journal_end(v->journal) : 0,
        .journaled = v->journal != NULL,
    };
    x.synced_known = v->journal && fu_journal_synced(v->journal, &x.journal_synced);
    resp->status = fu_query_stats(&v->tree, fu_buf_str(&path), &x, &resp->body);
    pthread_rwlock_unlock(&v->lock);
    fu_buf_free(&path);
}

/* Whether `key` is a push key of a pipe feeding `v`: what may write through the view API. */
static bool may_write(struct fu_fusion *f, const struct fu_view *v, const char *key)
{
    for (size_t i = 0; i < f->nkeys; i++)
        if (fu_key_equal(key, f->keys[i].key) && fu_pipe_feeds(f->keys[i].pipe, v))
            return true;
    return false;
}

/* PUT suspect-list: {"updates": [{"path", "mtime" | "current_mtime"}]}, each applied as
 * sentinel feedback without a size (v1). The body is parsed before the view is locked. */
static void suspects_put(struct fu_view *v, struct fu_http_req *req, struct fu_http_resp *resp)
{
    struct fu_jr r;
    fu_jr_init(&r, fu_buf_str(&req->body), req->body.len);
    struct fu_buf path = FU_BUF_INIT, norm = FU_BUF_INIT, paths = FU_BUF_INIT;
    struct upd {
        size_t off, len;
        double mtime;
    } *u = NULL;
    size_t n = 0, cap = 0;
    bool ok = fu_jr_next(&r) == FU_JSON_OBJ_BEGIN, have_updates = false, oom = false;
    enum fu_json_tok t = FU_JSON_ERROR;
    while (ok && (t = fu_jr_next(&r)) == FU_JSON_KEY) {
        bool k_up = r.str_len == 7 && !memcmp(r.str, "updates", 7);
        t = fu_jr_next(&r);
        if (!k_up || t != FU_JSON_ARR_BEGIN) {
            ok = !k_up && fu_jr_skip(&r) == 0;
            continue;
        }
        have_updates = true;
        while (ok && (t = fu_jr_next(&r)) != FU_JSON_ARR_END) {
            if (t != FU_JSON_OBJ_BEGIN) {
                ok = t != FU_JSON_ERROR && fu_jr_skip(&r) == 0;
                continue;
            }
            double mtime = 0, current = 0;
            bool has_path = false, has_mtime = false, has_current = false;
            while ((t = fu_jr_next(&r)) == FU_JSON_KEY) {
                int key = r.str_len == 4 && !memcmp(r.str, "path", 4)              ? 1
                          : r.str_len == 5 && !memcmp(r.str, "mtime", 5)           ? 2
                          : r.str_len == 13 && !memcmp(r.str, "current_mtime", 13) ? 3
                                                                                   : 0;
                t = fu_jr_next(&r);
                if (key == 1 && t == FU_JSON_STRING) {
                    fu_buf_reset(&path);
                    fu_buf_append(&path, r.str, r.str_len);
                    has_path = true;
                } else if (key == 2 && (t == FU_JSON_INT || t == FU_JSON_DOUBLE)) {
                    mtime = t == FU_JSON_INT ? (double)r.i64 : r.dbl;
                    has_mtime = true;
                } else if (key == 3 && (t == FU_JSON_INT || t == FU_JSON_DOUBLE)) {
                    current = t == FU_JSON_INT ? (double)r.i64 : r.dbl;
                    has_current = true;
                } else if (fu_jr_skip(&r) < 0) {
                    break;
                }
            }
            if (t == FU_JSON_ERROR) {
                ok = false;
                break;
            }
            /* v1: mtime or, when it is missing or 0, current_mtime */
            if (!(has_mtime && mtime != 0) && has_current) {
                mtime = current;
                has_mtime = true;
            }
            const char *why;
            if (!has_path || !has_mtime || mtime != mtime ||
                fu_path_normalize(path.data, path.len, &norm, &why) < 0)
                continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 16;
                struct upd *nu = realloc(u, cap * sizeof(*nu));
                if (!nu) {
                    oom = true;
                    break;
                }
                u = nu;
            }
            u[n++] = (struct upd){paths.len, norm.len, mtime};
            fu_buf_append(&paths, norm.data, norm.len);
        }
        if (oom)
            break;
    }
    if (ok && !oom && t == FU_JSON_OBJ_END)
        t = fu_jr_next(&r);
    if (oom || paths.oom) {
        fu_http_error(resp, 503, "out of memory");
    } else if (!ok || t != FU_JSON_EOF || !have_updates) {
        if (r.err_msg)
            fu_http_error(resp, 400, "invalid JSON at byte %zu: %s", r.err_off, r.err_msg);
        else
            fu_http_error(resp, 400, "expected {\"updates\": [{\"path\", \"mtime\"}, ...]}");
    } else {
        struct fu_sentinel_row *rows = calloc(n ? n : 1, sizeof(*rows));
        size_t hits = 0;
        uint64_t jpos = 0;
        int rc = rows ? 0 : -ENOMEM;
        for (size_t i = 0; rows && i < n; i++)
            rows[i] = (struct fu_sentinel_row){
                .path_off = u[i].off, .path_len = u[i].len, .mtime = u[i].mtime};
        if (!rc)
            rc = fu_view_sentinel(v, rows, n, paths.data ? paths.data : "", req->recv_time, &hits,
                                  &jpos);
        if (!rc)
            rc = fu_view_durable(v, jpos);
        free(rows);
        if (rc < 0) {
            fu_http_error(resp, rc == -ENOSPC ? 507 : 503,
                          "view %s cannot store the update durably: %s", v->id, strerror(-rc));
            goto out;
        }
        struct fu_jw w;
        fu_jw_init(&w, &resp->body);
        fu_jw_obj_begin(&w);
        fu_jw_ckey(&w, "view_id");
        fu_jw_cstr(&w, v->id);
        fu_jw_ckey(&w, "updated_count");
        fu_jw_uint(&w, n);
        fu_jw_ckey(&w, "status");
        fu_jw_cstr(&w, "ok");
        fu_jw_obj_end(&w);
    }
out:
    fu_jr_free(&r);
    free(u);
    fu_buf_free(&path);
    fu_buf_free(&norm);
    fu_buf_free(&paths);
}

/* DELETE reset (v1): empties the view and, as v1, ends the sessions of the pipes that feed
 * it, so their agents reconnect and the new leader snapshots again. */
static void reset(struct fu_fusion *f, struct fu_view *v, struct fu_http_resp *resp)
{
    uint64_t jpos = 0;
    int rc = fu_view_reset(v, &jpos);
    if (!rc)
        rc = fu_view_durable(v, jpos);
    if (rc < 0) {
        fu_http_error(resp, rc == -ENOSPC ? 507 : 503, "view %s cannot be reset: %s", v->id,
                      strerror(-rc));
        return;
    }
    pthread_mutex_lock(&f->mu);
    for (size_t i = 0; i < f->nsessions;) {
        struct fu_session *s = f->sessions[i];
        if (fu_pipe_feeds(s->pipe, v)) {
            fu_session_close_locked(f, s);
            continue; /* the array shifted */
        }
        i++;
    }
    pthread_mutex_unlock(&f->mu);
    fu_info("view %s: reset; the sessions of its pipes were ended", v->id);
    resp->status = 204;
}

static void consistency_list(struct fu_view *v, bool blind, struct fu_http_resp *resp)
{
    struct fu_jw w;
    fu_jw_init(&w, &resp->body);
    pthread_rwlock_rdlock(&v->lock);
    int rc = blind ? fu_fs_write_blind_spots(&v->fs, &w) : fu_fs_write_suspects(&v->fs, &w);
    pthread_rwlock_unlock(&v->lock);
    if (rc < 0 || resp->body.oom) {
        fu_buf_reset(&resp->body);
        resp->body.oom = false;
        fu_http_error(resp, 503, "out of memory");
    }
}

static void sessions(struct fu_fusion *f, struct fu_view *v, struct fu_http_resp *resp)
{
    struct fu_jw w;
    fu_jw_init(&w, &resp->body);
    double now = fu_mono_now();
    fu_jw_obj_begin(&w);
    fu_jw_ckey(&w, "view_id");
    fu_jw_cstr(&w, v->id);
    pthread_mutex_lock(&f->mu);
    size_t count = 0;
    for (size_t i = 0; i < f->nsessions; i++)
        count += fu_pipe_feeds(f->sessions[i]->pipe, v);
    fu_jw_ckey(&w, "count");
    fu_jw_uint(&w, count);
    fu_jw_ckey(&w, "active_sessions");
    fu_jw_arr_begin(&w);
    for (size_t i = 0; i < f->nsessions; i++) {
        struct fu_session *s = f->sessions[i];
        if (!fu_pipe_feeds(s->pipe, v))
            continue;
        bool lead = fu_session_leads(s);
        fu_jw_obj_begin(&w);
        fu_jw_ckey(&w, "session_id");
        fu_jw_cstr(&w, s->id);
        fu_jw_ckey(&w, "task_id");
        fu_jw_cstr(&w, s->task_id);
        fu_jw_ckey(&w, "agent_id");
        fu_jw_cstr(&w, s->agent_id);
        fu_jw_ckey(&w, "pipe_id");
        fu_jw_cstr(&w, s->pipe->id);
        fu_jw_ckey(&w, "client_ip");
        fu_jw_cstr(&w, s->client_ip);
        fu_jw_ckey(&w, "source_uri");
        fu_jw_cstr(&w, s->source_uri);
        fu_jw_ckey(&w, "last_activity");
        fu_jw_double(&w, s->last_activity);
        fu_jw_ckey(&w, "idle_seconds");
        fu_jw_double(&w, now - s->last_activity);
        fu_jw_ckey(&w, "created_at");
        fu_jw_double(&w, s->created_at);
        fu_jw_ckey(&w, "allow_concurrent_push");
        fu_jw_bool(&w, s->pipe->allow_concurrent_push);
        fu_jw_ckey(&w, "session_timeout_seconds");
        fu_jw_double(&w, s->timeout);
        fu_jw_ckey(&w, "role");
        fu_jw_cstr(&w, lead ? "leader" : "follower");
        fu_jw_ckey(&w, "epoch");
        fu_jw_uint(&w, s->pipe->epoch);
        fu_jw_ckey(&w, "can_snapshot");
        fu_jw_bool(&w, lead);
        fu_jw_ckey(&w, "can_audit");
        fu_jw_bool(&w, lead);
        fu_jw_ckey(&w, "can_realtime");
        fu_jw_bool(&w, s->can_realtime);
        fu_jw_ckey(&w, "can_send");
        fu_jw_bool(&w, true);
        fu_jw_ckey(&w, "agent_status");
        fu_jw_json(&w, s->agent_status);
        fu_jw_obj_end(&w);
    }
    pthread_mutex_unlock(&f->mu);
    fu_jw_arr_end(&w);
    fu_jw_obj_end(&w);
}

void fu_api_views(struct fu_fusion *f, struct fu_http_req *req, struct fu_http_resp *resp)
{
    const char *rest = req->path + strlen(PREFIX);
    const char *slash = strchr(rest, '/');
    if (!slash) {
        fu_http_error(resp, 404, "Not Found");
        return;
    }
    char name[256];
    size_t nl = (size_t)(slash - rest);
    if (nl == 0 || nl >= sizeof(name)) {
        fu_http_error(resp, 404, "Not Found");
        return;
    }
    memcpy(name, rest, nl);
    name[nl] = '\0';
    const char *ep = slash + 1;
    struct fu_view *v = fu_fusion_view(f, name);
    if (authorize(f, v, fu_http_header(req, "X-API-Key"), resp))
        return;
    if (!strcmp(ep, "reset") && !strcmp(req->method, "DELETE")) {
        if (!may_write(f, v, fu_http_header(req, "X-API-Key")))
            fu_http_error(resp, 403, "DELETE reset takes a push key of a pipe of this view");
        else
            reset(f, v, resp);
        return;
    }
    if (!strcmp(ep, "suspect-list") && !strcmp(req->method, "PUT")) {
        /* A change, not a read: push keys of the view's pipes only (v1 took any key). */
        if (!may_write(f, v, fu_http_header(req, "X-API-Key")))
            fu_http_error(resp, 403, "PUT suspect-list takes a push key of a pipe of this view");
        else
            suspects_put(v, req, resp);
        return;
    }
    if (strcmp(req->method, "GET")) {
        fu_http_error(resp, 405, "use GET");
        return;
    }
    if (!strcmp(ep, "sessions")) {
        sessions(f, v, resp);
        return;
    }
    if (!strcmp(ep, "jobs") || !strncmp(ep, "jobs/", 5)) {
        jobs(f, v, ep[4] == '/' ? ep + 5 : NULL, resp);
        return;
    }
    if (!strcmp(ep, "suspect-list") || !strcmp(ep, "blind-spots")) {
        consistency_list(v, ep[0] == 'b', resp);
        return;
    }
    bool resyncing;
    if (strcmp(ep, "tree") && strcmp(ep, "stats") && strcmp(ep, "search")) {
        fu_http_error(resp, 404, "Not Found");
        return;
    }
    if (!ready(f, v, &resyncing, resp))
        return;
    if (!strcmp(ep, "tree")) {
        tree(f, v, req, resp);
    } else if (!strcmp(ep, "stats")) {
        stats(v, resyncing, req, resp);
    } else {
        const char *pattern = fu_http_query(req, "pattern");
        if (!pattern) {
            fu_http_error(resp, 400, "pattern is required");
            return;
        }
        pthread_rwlock_rdlock(&v->lock);
        resp->status = fu_query_search(&v->tree, pattern, v->max_tree_items, v->id, &resp->body);
        pthread_rwlock_unlock(&v->lock);
    }
}
