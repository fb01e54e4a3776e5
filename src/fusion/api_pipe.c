/* The receiver protocol under /api/v1/pipe/ (Fustor v1 §2): sessions, heartbeats, event
 * batches and the consistency endpoints. Unlike v1, every endpoint checks the API key, and a
 * session can only be used with a key of its own pipe (403). Unknown or expired sessions get
 * 419 on heartbeats and on pushes alike (v1 answers 404 on pushes, delaying recovery). */
#include "fusion/fusion.h"

#include "common/json.h"
#include "common/log.h"
#include "common/paths.h"
#include "fusion/journal.h"
#include "fusion/seqwin.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <xxhash.h>

#define PREFIX "/api/v1/pipe/"

static bool tok_is(const struct fu_jr *r, const char *s)
{
    return r->str_len == strlen(s) && !memcmp(r->str, s, r->str_len);
}

static char *tok_dup(const struct fu_jr *r)
{
    char *s = malloc(r->str_len + 1);
    if (s) {
        memcpy(s, r->str, r->str_len);
        s[r->str_len] = '\0';
    }
    return s;
}

/* Skips the value just started by token t. */
static void skip_value(struct fu_jr *r, enum fu_json_tok t)
{
    if (t == FU_JSON_OBJ_BEGIN || t == FU_JSON_ARR_BEGIN)
        fu_jr_skip(r);
}

/* Inside an object just opened: keeps the string value of member `key` in *out (replacing
 * it) and skips every other member. Errors stay in the reader for the caller to see. */
static void pick_string(struct fu_jr *r, const char *key, char **out)
{
    enum fu_json_tok t;
    while ((t = fu_jr_next(r)) == FU_JSON_KEY) {
        bool want = tok_is(r, key);
        t = fu_jr_next(r);
        if (want && t == FU_JSON_STRING && !memchr(r->str, '\0', r->str_len)) {
            free(*out);
            *out = tok_dup(r);
        } else {
            skip_value(r, t);
        }
    }
}

static bool bad_json(struct fu_http_resp *resp, const struct fu_jr *r)
{
    fu_http_error(resp, 400, "malformed JSON body: %s at byte %zu", r->err_msg ? r->err_msg : "?",
                  r->err_off);
    return false;
}

static void new_session_id(char out[40])
{
    unsigned char b[16];
    FILE *f = fopen("/dev/urandom", "rb");
    size_t got = f ? fread(b, 1, sizeof(b), f) : 0;
    if (f)
        fclose(f);
    for (size_t i = got; i < sizeof(b); i++)
        b[i] = (unsigned char)rand();
    b[6] = (b[6] & 0x0F) | 0x40; /* a version 4 UUID, as v1 hands out */
    b[8] = (b[8] & 0x3F) | 0x80;
    snprintf(out, 40, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}

static const char *role_of(const struct fu_session *s)
{
    return fu_session_leads(s) ? "leader" : "follower";
}

/* ------------------------------------------------------------ session create / discover */

/* What the pipe's leader is to do first, and what its audit cache must match. A pipe whose
 * views all hold data (restored at start-up, or kept while agents came and went) is
 * reconciled by an audit, which lists only the directories changed since the leader's
 * cache was made; an empty one needs a snapshot. The token names the views' incarnations:
 * a cache made against another one is worthless. */
static bool initial_audit(const struct fu_pipe_rt *p, char token[33])
{
    bool audit = p->nviews > 0;
    XXH3_state_t *h = p->nviews > 1 ? XXH3_createState() : NULL;
    if (h)
        XXH3_128bits_reset(h);
    token[0] = '\0';
    for (size_t i = 0; i < p->nviews; i++) {
        struct fu_view *v = p->views[i];
        char inc[33];
        fu_view_incarnation(v, inc);
        pthread_rwlock_rdlock(&v->lock);
        /* Holding data is not enough: in an aggregated view it may be the other storages'
         * only, and this pipe's storage must be snapshotted, not taken for blind spots. */
        audit = audit && fu_tree_count(&v->tree) > 1 && fu_tree_has_pipe(&v->tree, p->id);
        pthread_rwlock_unlock(&v->lock);
        if (p->nviews == 1)
            memcpy(token, inc, 33);
        else if (h) {
            XXH3_128bits_update(h, v->id, strlen(v->id) + 1);
            XXH3_128bits_update(h, inc, 33);
        }
    }
    if (h) {
        XXH128_hash_t x = XXH3_128bits_digest(h);
        snprintf(token, 33, "%016llx%016llx", (unsigned long long)x.high64,
                 (unsigned long long)x.low64);
        XXH3_freeState(h);
    }
    return audit && token[0];
}

static void session_create(struct fu_fusion *f, const struct fu_push_key *k,
                           struct fu_http_req *req, struct fu_http_resp *resp)
{
    char *task_id = NULL, *source_uri = NULL;
    double timeout = 0;
    struct fu_jr r;
    fu_jr_init(&r, fu_buf_str(&req->body), req->body.len);
    enum fu_json_tok t = fu_jr_next(&r);
    bool ok = true;
    if (t != FU_JSON_OBJ_BEGIN) {
        ok = t == FU_JSON_ERROR ? bad_json(resp, &r) : false;
        if (t != FU_JSON_ERROR)
            fu_http_error(resp, 400, "expected a JSON object with task_id");
    }
    while (ok && (t = fu_jr_next(&r)) == FU_JSON_KEY) {
        bool k_task = tok_is(&r, "task_id"), k_to = tok_is(&r, "session_timeout_seconds");
        bool k_ci = tok_is(&r, "client_info");
        t = fu_jr_next(&r);
        if (k_task) {
            if (t != FU_JSON_STRING || !r.str_len || r.str_len > 256 ||
                memchr(r.str, '\0', r.str_len)) {
                fu_http_error(resp, 400, "task_id must be a non-empty string");
                ok = false;
            } else {
                free(task_id);
                task_id = tok_dup(&r);
            }
        } else if (k_to) {
            if (t == FU_JSON_INT || t == FU_JSON_DOUBLE) {
                timeout = t == FU_JSON_INT ? (double)r.i64 : r.dbl;
                if (!(timeout >= 0.1 && timeout <= 1e9)) {
                    fu_http_error(resp, 400, "session_timeout_seconds must be 0.1 to 1e9");
                    ok = false;
                }
            } else if (t != FU_JSON_NULL) {
                fu_http_error(resp, 400, "session_timeout_seconds must be a number or null");
                ok = false;
            }
        } else if (k_ci && t == FU_JSON_OBJ_BEGIN) {
            pick_string(&r, "source_uri", &source_uri);
        } else {
            skip_value(&r, t);
        }
    }
    if (ok && t == FU_JSON_OBJ_END)
        t = fu_jr_next(&r); /* EOF, or "trailing data" */
    if (ok && t == FU_JSON_ERROR)
        ok = bad_json(resp, &r);
    if (ok && !task_id) {
        fu_http_error(resp, 400, "task_id is required");
        ok = false;
    }
    fu_jr_free(&r);
    if (!ok) {
        free(task_id);
        free(source_uri);
        return;
    }

    struct fu_pipe_rt *p = k->pipe;
    pthread_mutex_lock(&f->mu);
    for (size_t i = 0; ok && i < f->nsessions; i++) {
        struct fu_session *o = f->sessions[i];
        if (o->pipe != p)
            continue;
        if (!strcmp(o->task_id, task_id)) {
            fu_http_error(resp, 409, "Task %s already active on pipe %s (session %s)", task_id,
                          p->id, o->id);
            ok = false;
        } else if (!p->allow_concurrent_push) {
            fu_http_error(resp, 409,
                          "View %s is currently locked by another session (pipe %s does not "
                          "allow concurrent push)",
                          p->nviews ? p->views[0]->id : p->id, p->id);
            ok = false;
        }
    }
    struct fu_session *s = ok ? calloc(1, sizeof(*s)) : NULL;
    if (ok && !s)
        fu_http_error(resp, 503, "out of memory");
    if (s) {
        new_session_id(s->id);
        s->task_id = task_id;
        task_id = NULL;
        /* task_id is agent_id:pipe_id; an agent id may hold colons (an IPv6 address, v1's
         * default), so the pipe id is what follows the last one. */
        const char *colon = strrchr(s->task_id, ':');
        s->agent_id =
            colon ? strndup(s->task_id, (size_t)(colon - s->task_id)) : strdup(s->task_id);
        s->source_uri = source_uri;
        source_uri = NULL;
        s->client_ip = strdup(req->client_ip);
        s->pipe = p;
        s->created_at = req->recv_time;
        s->last_activity = fu_mono_now();
        s->timeout = timeout > 0 ? timeout : p->session_timeout;
        s->can_realtime = true;
        if (fu_session_add_locked(f, s) < 0) {
            fu_http_error(resp, 503, "out of memory");
            free(s->task_id);
            free(s->agent_id);
            free(s->source_uri);
            free(s->client_ip);
            free(s);
            s = NULL;
        }
    }
    if (s) {
        struct fu_jw w;
        fu_jw_init(&w, &resp->body);
        fu_jw_obj_begin(&w);
        fu_jw_ckey(&w, "session_id");
        fu_jw_cstr(&w, s->id);
        fu_jw_ckey(&w, "role");
        fu_jw_cstr(&w, role_of(s));
        fu_jw_ckey(&w, "is_leader");
        fu_jw_bool(&w, fu_session_leads(s));
        fu_jw_ckey(&w, "epoch");
        fu_jw_uint(&w, p->epoch);
        fu_jw_ckey(&w, "session_timeout_seconds");
        fu_jw_double(&w, s->timeout);
        fu_jw_ckey(&w, "audit_interval_sec");
        fu_jw_double(&w, p->audit_interval);
        fu_jw_ckey(&w, "sentinel_interval_sec");
        fu_jw_double(&w, p->sentinel_interval);
        char token[33];
        bool audit = initial_audit(p, token);
        fu_jw_ckey(&w, "initial_sync");
        fu_jw_cstr(&w, audit ? "audit" : "snapshot");
        if (token[0]) {
            fu_jw_ckey(&w, "view_incarnation");
            fu_jw_cstr(&w, token);
        }
        fu_jw_ckey(&w, "row_arrays"); /* rows may come as arrays in "fields" order */
        fu_jw_bool(&w, true);
        fu_jw_ckey(&w, "durable_at_end"); /* a walk's batches may be made durable at its end */
        fu_jw_bool(&w, true);
        fu_jw_ckey(&w, "message");
        fu_jw_cstr(&w, "Session created successfully");
        fu_jw_obj_end(&w);
        fu_info("pipe %s: session %s created for %s from %s (%s%s)", p->id, s->id, s->task_id,
                s->client_ip, role_of(s),
                fu_session_leads(s) ? audit ? ", audits first" : ", snapshots first" : "");
    }
    pthread_mutex_unlock(&f->mu);
    free(task_id);
    free(source_uri);
}

/* ------------------------------------------------------------ heartbeat / close */

#define MAX_AGENT_STATUS 65536

struct hb_body {
    int can_realtime;   /* -1 = not sent */
    char *agent_status; /* canonical JSON, or NULL */
};

/* Parses a heartbeat body, with no lock held. False (and resp set) on bad input. */
static bool parse_heartbeat(struct fu_http_req *req, struct hb_body *hb, struct fu_http_resp *resp)
{
    hb->can_realtime = -1;
    hb->agent_status = NULL;
    if (!req->body.len)
        return true;
    struct fu_jr r;
    fu_jr_init(&r, fu_buf_str(&req->body), req->body.len);
    enum fu_json_tok t = fu_jr_next(&r);
    bool ok = true;
    if (t == FU_JSON_OBJ_BEGIN) {
        while ((t = fu_jr_next(&r)) == FU_JSON_KEY) {
            bool k_rt = tok_is(&r, "can_realtime"), k_st = tok_is(&r, "agent_status");
            t = fu_jr_next(&r);
            if (k_rt && (t == FU_JSON_TRUE || t == FU_JSON_FALSE)) {
                hb->can_realtime = t == FU_JSON_TRUE;
            } else if (k_st && t == FU_JSON_OBJ_BEGIN) {
                struct fu_buf out = FU_BUF_INIT;
                struct fu_jw w;
                fu_jw_init(&w, &out);
                fu_json_copy_value(&r, t, &w); /* our canonical JSON */
                free(hb->agent_status);
                hb->agent_status =
                    out.len <= MAX_AGENT_STATUS && !out.oom ? fu_buf_detach(&out) : NULL;
                fu_buf_free(&out);
            } else {
                skip_value(&r, t);
            }
        }
        if (t == FU_JSON_OBJ_END)
            t = fu_jr_next(&r); /* only whitespace may follow */
    }
    if (t == FU_JSON_ERROR)
        ok = bad_json(resp, &r);
    else if (t != FU_JSON_EOF) {
        fu_http_error(resp, 400, "expected a JSON object");
        ok = false;
    }
    fu_jr_free(&r);
    if (!ok) {
        free(hb->agent_status);
        hb->agent_status = NULL;
    }
    return ok;
}

/* Called with f->mu held; the body was parsed before. */
static void heartbeat(struct fu_session *s, struct hb_body *hb, struct fu_http_resp *resp)
{
    if (hb->can_realtime >= 0)
        s->can_realtime = hb->can_realtime;
    if (hb->agent_status) {
        free(s->agent_status);
        s->agent_status = hb->agent_status;
        hb->agent_status = NULL;
    }
    s->last_activity = fu_mono_now();
    struct fu_jw w;
    fu_jw_init(&w, &resp->body);
    fu_jw_obj_begin(&w);
    fu_jw_ckey(&w, "status");
    fu_jw_cstr(&w, "ok");
    fu_jw_ckey(&w, "role");
    fu_jw_cstr(&w, role_of(s));
    fu_jw_ckey(&w, "epoch");
    fu_jw_uint(&w, s->pipe->epoch);
    fu_jw_ckey(&w, "message");
    fu_jw_null(&w);
    fu_jw_ckey(&w, "can_realtime");
    fu_jw_null(&w);
    fu_jw_ckey(&w, "commands");
    fu_jw_arr_begin(&w);
    for (size_t i = 0; i < s->commands.n; i++) /* delivered exactly once */
        fu_jw_raw(&w, s->commands.v[i], strlen(s->commands.v[i]));
    fu_jw_arr_end(&w);
    fu_jw_obj_end(&w);
    fu_strv_free(&s->commands);
}

/* ------------------------------------------------------------ ingest */

struct batch {
    struct fu_row *rows;
    size_t n, cap;
    struct fu_buf paths;
    struct fu_buf norm; /* scratch: one row's normalised path */
    size_t skipped;
    bool has_scan_rows; /* snapshot or audit rows: leader only */
    bool audit_rows;
    double storage_now; /* the last event's index (ms of the agent's storage clock), in s */
};

static int src_of(const struct fu_jr *r)
{
    static const char *const names[] = {"realtime", "snapshot", "audit", "on_demand_job"};
    for (int i = 0; i < 4; i++)
        if (r->str_len == strlen(names[i]) && !strncasecmp(r->str, names[i], r->str_len))
            return i;
    return -1;
}

static bool num_of(const struct fu_jr *r, enum fu_json_tok t, double *out)
{
    if (t == FU_JSON_INT)
        *out = (double)r->i64;
    else if (t == FU_JSON_DOUBLE)
        *out = r->dbl;
    else
        return false;
    return *out == *out; /* not NaN */
}

/* The row fields Fusion reads, by name (v1's FSRow and our additions); 0: another field. */
enum {
    F_OTHER,
    F_PATH,
    F_SIZE,
    F_MTIME,
    F_CTIME,
    F_IS_DIR,
    F_ATOMIC,
    F_AUDIT_SKIPPED,
    F_PARENT_MTIME,
    F_PARENT_PATH
};

static int field_of(const struct fu_jr *r)
{
    return tok_is(r, "path") || tok_is(r, "file_path")        ? F_PATH
           : tok_is(r, "size")                                ? F_SIZE
           : tok_is(r, "modified_time")                       ? F_MTIME
           : tok_is(r, "created_time")                        ? F_CTIME
           : tok_is(r, "is_directory") || tok_is(r, "is_dir") ? F_IS_DIR
           : tok_is(r, "is_atomic_write")                     ? F_ATOMIC
           : tok_is(r, "audit_skipped")                       ? F_AUDIT_SKIPPED
           : tok_is(r, "parent_mtime")                        ? F_PARENT_MTIME
           : tok_is(r, "parent_path")                         ? F_PARENT_PATH
                                                              : F_OTHER;
}

struct row_parse {
    bool have_path, have_mtime, ok;
};

/* One field's value (token t, just read) into the row. Returns false if the JSON itself is
 * broken (the reader holds the error). */
static bool row_field(struct fu_jr *r, struct batch *b, struct fu_row *row, struct row_parse *st,
                      int key, enum fu_json_tok t)
{
    double d;
    if (key != F_OTHER && (t == FU_JSON_OBJ_BEGIN || t == FU_JSON_ARR_BEGIN)) {
        skip_value(r, t); /* a known field with a container value: the row is bad */
        st->ok = false;
        return !r->err_msg;
    }
    switch (key) {
    case F_PATH: {
        if (t != FU_JSON_STRING || st->have_path) {
            st->ok = st->ok && t == FU_JSON_STRING; /* path and file_path: the first wins */
            break;
        }
        if (!r->str_len) { /* "" would mean the root of the view */
            st->ok = false;
            break;
        }
        const char *why;
        if (fu_path_normalize(r->str, r->str_len, &b->norm, &why) < 0) {
            st->ok = false;
        } else {
            row->path_off = b->paths.len;
            row->path_len = b->norm.len;
            fu_buf_append(&b->paths, b->norm.data, b->norm.len);
            fu_buf_putc(&b->paths, '\0');
            st->have_path = true;
        }
        break;
    }
    case F_SIZE:
        if (t == FU_JSON_INT && r->i64 >= 0)
            row->size = (uint64_t)r->i64;
        else if (t == FU_JSON_DOUBLE && r->dbl >= 0 && r->dbl < 1.8e19 &&
                 r->dbl == (double)(uint64_t)r->dbl)
            row->size = (uint64_t)r->dbl;
        else
            st->ok = false;
        break;
    case F_MTIME:
        if (t == FU_JSON_NULL) /* deletes may carry "modified_time": null */
            break;
        st->ok = st->ok && num_of(r, t, &row->mtime);
        st->have_mtime = true;
        break;
    case F_CTIME:
        if (t != FU_JSON_NULL)
            st->ok = st->ok && num_of(r, t, &row->ctime);
        break;
    case F_IS_DIR:
        st->ok = st->ok && (t == FU_JSON_TRUE || t == FU_JSON_FALSE);
        row->is_dir = t == FU_JSON_TRUE;
        break;
    case F_ATOMIC:
        if (t == FU_JSON_TRUE || t == FU_JSON_FALSE)
            row->atomic = t == FU_JSON_TRUE;
        else if (t != FU_JSON_NULL)
            st->ok = false;
        break;
    case F_AUDIT_SKIPPED:
        row->audit_skipped = t == FU_JSON_TRUE;
        break;
    case F_PARENT_MTIME:
        if (num_of(r, t, &d))
            row->parent_mtime = d;
        break;
    case F_PARENT_PATH: /* its presence turns on the parent-mtime check; the row's own path
                           names it */
        row->has_parent = t == FU_JSON_STRING;
        break;
    default:
        skip_value(r, t);
    }
    return t != FU_JSON_ERROR && !r->err_msg;
}

/* A row's fields all read: whether it is usable. Deletes need only the path; upserts also
 * need modified_time. A missing size is 0 and a missing is_directory false, as in Fustor
 * v1's tree (payload.get(..., 0)): an agent whose fields_mapping projects them away still
 * creates its files. */
static bool row_done(struct fu_row *row, const struct row_parse *st)
{
    if (!st->have_path)
        return false;
    row->has_mtime = st->have_mtime;
    row->op = st->have_mtime ? FU_ROW_UPSERT : FU_ROW_DELETE;
    return st->ok;
}

/* Parses one row object (after its OBJ_BEGIN). Returns false if the row is unusable; the
 * reader is positioned after the row either way, unless the JSON itself is broken. */
static bool parse_row(struct fu_jr *r, struct batch *b, struct fu_row *row)
{
    struct row_parse st = {.ok = true};
    enum fu_json_tok t;
    memset(row, 0, sizeof(*row));
    row->atomic = true;
    while ((t = fu_jr_next(r)) == FU_JSON_KEY) {
        int key = field_of(r);
        if (!row_field(r, b, row, &st, key, fu_jr_next(r)))
            return false;
    }
    return t == FU_JSON_OBJ_END && row_done(row, &st);
}

#define MAX_COLUMNS 64 /* of an event's "fields", for rows sent as arrays */

/* Parses one row array (after its ARR_BEGIN): its values are the event's fields in order
 * (`cols`, from "fields"; values past them are ignored). Same answer as parse_row. */
static bool parse_row_array(struct fu_jr *r, struct batch *b, struct fu_row *row,
                            const signed char *cols, size_t ncols)
{
    struct row_parse st = {.ok = true};
    enum fu_json_tok t;
    memset(row, 0, sizeof(*row));
    row->atomic = true;
    for (size_t i = 0; (t = fu_jr_next(r)) != FU_JSON_ARR_END; i++) {
        if (t == FU_JSON_ERROR)
            return false;
        if (!row_field(r, b, row, &st, i < ncols ? cols[i] : F_OTHER, t))
            return false;
    }
    return row_done(row, &st);
}

/* An event's "fields" (after its ARR_BEGIN): the column of each name, for rows sent as
 * arrays. False (and no columns) when it is not a list of strings or is too long. */
static bool parse_fields(struct fu_jr *r, signed char *cols, size_t *ncols)
{
    enum fu_json_tok t;
    bool ok = true;
    *ncols = 0;
    while ((t = fu_jr_next(r)) != FU_JSON_ARR_END) {
        if (t == FU_JSON_ERROR)
            return false;
        if (t != FU_JSON_STRING || *ncols == MAX_COLUMNS) {
            skip_value(r, t);
            ok = false;
            continue;
        }
        cols[(*ncols)++] = (signed char)field_of(r);
    }
    if (!ok)
        *ncols = 0;
    return true;
}

/* Parses "events": [...]. Rows are appended to b with their event's op and source. */
static bool parse_events(struct fu_jr *r, struct batch *b, struct fu_http_resp *resp)
{
    enum fu_json_tok t;
    while ((t = fu_jr_next(r)) != FU_JSON_ARR_END) {
        if (t == FU_JSON_ERROR)
            return bad_json(resp, r);
        if (t != FU_JSON_OBJ_BEGIN) { /* not an event: skip it, count nothing */
            skip_value(r, t);
            continue;
        }
        size_t first = b->n;
        int op = -2, src = FU_SRC_REALTIME; /* -2: event_type missing */
        signed char cols[MAX_COLUMNS];
        size_t ncols = 0; /* "fields" read before "rows": rows may be arrays */
        while ((t = fu_jr_next(r)) == FU_JSON_KEY) {
            bool k_type = tok_is(r, "event_type"), k_src = tok_is(r, "message_source");
            bool k_rows = tok_is(r, "rows"), k_index = tok_is(r, "index");
            bool k_fields = tok_is(r, "fields");
            t = fu_jr_next(r);
            double idx;
            if (k_fields && t == FU_JSON_ARR_BEGIN) {
                if (!parse_fields(r, cols, &ncols))
                    return bad_json(resp, r);
                t = FU_JSON_ARR_END;
            } else if (k_index && num_of(r, t, &idx)) {
                b->storage_now = idx / 1000.0;
            } else if (k_type) {
                op = t != FU_JSON_STRING                                    ? -1
                     : r->str_len == 6 && !strncasecmp(r->str, "delete", 6) ? FU_ROW_DELETE
                     : (r->str_len == 6 && !strncasecmp(r->str, "insert", 6)) ||
                             (r->str_len == 6 && !strncasecmp(r->str, "update", 6))
                         ? FU_ROW_UPSERT
                         : -1;
            } else if (k_src) {
                src = t == FU_JSON_STRING ? src_of(r) : t == FU_JSON_NULL ? FU_SRC_REALTIME : -1;
            } else if (k_rows && t == FU_JSON_ARR_BEGIN) {
                while ((t = fu_jr_next(r)) != FU_JSON_ARR_END) {
                    if (t == FU_JSON_ERROR)
                        return bad_json(resp, r);
                    if (t != FU_JSON_OBJ_BEGIN && (t != FU_JSON_ARR_BEGIN || !ncols)) {
                        skip_value(r, t); /* not a row; or an array without "fields" before */
                        b->skipped++;
                        continue;
                    }
                    if (b->n == b->cap) {
                        size_t cap = b->cap ? b->cap * 2 : 256;
                        struct fu_row *v = realloc(b->rows, cap * sizeof(*v));
                        if (!v) {
                            fu_http_error(resp, 503, "out of memory");
                            return false;
                        }
                        b->rows = v;
                        b->cap = cap;
                    }
                    if (t == FU_JSON_OBJ_BEGIN ? parse_row(r, b, &b->rows[b->n])
                                               : parse_row_array(r, b, &b->rows[b->n], cols, ncols))
                        b->n++;
                    else if (r->err_msg)
                        return bad_json(resp, r);
                    else
                        b->skipped++;
                }
            } else {
                skip_value(r, t);
            }
            if (t == FU_JSON_ERROR)
                return bad_json(resp, r);
        }
        if (t == FU_JSON_ERROR)
            return bad_json(resp, r);
        if (op < 0 || src < 0) { /* unknown or missing event_type / message_source */
            b->skipped += b->n - first;
            b->n = first;
            continue;
        }
        for (size_t i = first; i < b->n; i++) {
            struct fu_row *row = &b->rows[i];
            bool root = row->path_len == 1;
            /* Fields missing for an upsert; and the root is never deleted or made a file. */
            if ((op == FU_ROW_UPSERT && row->op != FU_ROW_UPSERT) ||
                (root && (op == FU_ROW_DELETE || !row->is_dir))) {
                b->skipped++;
                row->op = 0xFF;
                continue;
            }
            row->op = (uint8_t)op;
            row->src = (uint8_t)src;
        }
        size_t w = first; /* drop the rows marked unusable above */
        for (size_t i = first; i < b->n; i++)
            if (b->rows[i].op != 0xFF)
                b->rows[w++] = b->rows[i];
        b->n = w;
        if (src == FU_SRC_SNAPSHOT || src == FU_SRC_AUDIT)
            b->has_scan_rows |= b->n > first;
        b->audit_rows |= src == FU_SRC_AUDIT && b->n > first;
    }
    return true;
}

/* A change the view's journal refused: a full disk is 507, other failures 503; the agent
 * backs off and sends the batch again, nothing of it was applied. */
static void journal_error(struct fu_http_resp *resp, const struct fu_view *v, int rc)
{
    fu_http_error(resp, rc == -ENOSPC || rc == -EDQUOT ? 507 : 503,
                  "view %s cannot store the batch durably (%s); nothing of it was applied, "
                  "send it again later",
                  v->id, strerror(-rc));
    resp->retry_after = 5;
}

/* Waits until the changes at jpos[i] are durable in each of p's views (group commit:
 * concurrent requests share a sync), or with jpos NULL everything journaled so far. False,
 * with the error answered, when one cannot be. */
static bool durable(const struct fu_pipe_rt *p, const uint64_t *jpos, struct fu_http_resp *resp)
{
    for (size_t i = 0; i < p->nviews; i++) {
        int rc = jpos ? fu_view_durable(p->views[i], jpos[i]) : fu_view_sync(p->views[i]);
        if (rc < 0) {
            journal_error(resp, p->views[i], rc);
            return false;
        }
    }
    return true;
}

#define SEQ_BUSY (sizeof(((struct fu_session *)0)->seq_busy) / sizeof(uint64_t))
_Static_assert(sizeof(((struct fu_session *)0)->seq_seen) == FU_SEQWIN_WORDS * sizeof(uint64_t),
               "struct fu_session holds the seq window");

/* A batch with a `seq` is applied once per session: a copy of one already applied (its
 * answer was lost) is answered 200 with "duplicate": true and not applied again. The seq is
 * recorded only once its batch is applied and durable: a batch refused (409, 503, 507) is
 * applied when sent again. */
static void ingest(struct fu_fusion *f, const struct fu_push_key *k, const char *sid,
                   struct fu_http_req *req, struct fu_http_resp *resp)
{
    struct batch b = {0};
    char *source_type = NULL, *config_yaml = NULL, *config_file = NULL, *job_id = NULL;
    bool is_end = false, ok = true;
    bool at_end = false; /* durable_at_end: a walk's batch may be answered before its sync */
    uint64_t seq = 0;    /* the batch's number in its session; 0: none (a v1 agent) */
    struct fu_jr r;
    fu_jr_init(&r, fu_buf_str(&req->body), req->body.len);
    enum fu_json_tok t = fu_jr_next(&r);
    if (t != FU_JSON_OBJ_BEGIN) {
        if (t == FU_JSON_ERROR)
            bad_json(resp, &r);
        else
            fu_http_error(resp, 400, "expected a JSON object (an event batch)");
        ok = false;
    }
    while (ok && (t = fu_jr_next(&r)) == FU_JSON_KEY) {
        bool k_st = tok_is(&r, "source_type"), k_end = tok_is(&r, "is_end");
        bool k_ev = tok_is(&r, "events"), k_md = tok_is(&r, "metadata");
        bool k_seq = tok_is(&r, "seq"), k_at_end = tok_is(&r, "durable_at_end");
        t = fu_jr_next(&r);
        if (k_at_end) {
            if (t == FU_JSON_TRUE || t == FU_JSON_FALSE) {
                at_end = t == FU_JSON_TRUE;
            } else {
                skip_value(&r, t);
                fu_http_error(resp, 400, "durable_at_end must be true or false");
                ok = false;
            }
        } else if (k_seq) {
            if (t == FU_JSON_INT && r.i64 >= 1) {
                seq = (uint64_t)r.i64;
            } else {
                skip_value(&r, t);
                fu_http_error(resp, 400,
                              "seq must be a positive integer (the batch's number in its "
                              "session)");
                ok = false;
            }
        } else if (k_st && t == FU_JSON_STRING) {
            free(source_type);
            source_type = tok_dup(&r);
        } else if (k_end) {
            is_end = t == FU_JSON_TRUE;
        } else if (k_ev && t == FU_JSON_ARR_BEGIN) {
            ok = parse_events(&r, &b, resp);
        } else if (k_ev && t != FU_JSON_NULL) {
            fu_http_error(resp, 400, "events must be a list");
            ok = false;
        } else if (k_md && t == FU_JSON_OBJ_BEGIN) {
            while ((t = fu_jr_next(&r)) == FU_JSON_KEY) {
                char **want = tok_is(&r, "config_yaml") ? &config_yaml
                              : tok_is(&r, "filename")  ? &config_file
                              : tok_is(&r, "job_id")    ? &job_id
                                                        : NULL;
                t = fu_jr_next(&r);
                if (want && t == FU_JSON_STRING && !memchr(r.str, '\0', r.str_len)) {
                    free(*want);
                    *want = tok_dup(&r);
                } else {
                    skip_value(&r, t);
                }
            }
        } else {
            skip_value(&r, t);
        }
    }
    if (ok && t == FU_JSON_OBJ_END)
        t = fu_jr_next(&r); /* only whitespace may follow the batch */
    if (ok && t == FU_JSON_ERROR)
        ok = bad_json(resp, &r);
    fu_jr_free(&r);
    static const char *const known[] = {
        "message",      "realtime",      "snapshot",      "audit",         "on_demand_job",
        "job_complete", "config_report", "scan_complete", "find_complete", "on_demand_jon"};
    bool known_type = !source_type;
    for (size_t i = 0; source_type && i < sizeof(known) / sizeof(known[0]); i++)
        known_type |= !strcmp(source_type, known[i]);
    if (ok && !known_type) {
        fu_http_error(resp, 400, "unknown source_type '%s'", source_type);
        ok = false;
    }
    if (b.paths.oom) {
        fu_http_error(resp, 503, "out of memory");
        ok = false;
    }

    struct fu_pipe_rt *p = k->pipe;
    char agent[256] = "", uri[1024] = "";
    uint64_t epoch = 0;
    bool leads = false, duplicate = false, reserved = false;
    bool walk = source_type && (!strcmp(source_type, "snapshot") || !strcmp(source_type, "audit"));
    /* A leader's walk (snapshot or audit) may be made durable as a whole: a batch of it that
     * says durable_at_end is answered 202 once journaled (its write-back started), and the
     * walk's end marker 200 once one sync covers everything before it. An agent that asks
     * so walks again when the end is not acknowledged. Only `fsync: batch` syncs on demand:
     * `always` has synced the batch already, `off` never does. */
    bool later = walk && !is_end && at_end && f->journal_enabled && f->fsync_mode == FU_FSYNC_BATCH;
    if (ok) {
        pthread_mutex_lock(&f->mu);
        struct fu_session *s = fu_session_find_locked(f, sid);
        if (!s) {
            fu_http_error(resp, 419, "Session %s not found or obsoleted; create a new session",
                          sid);
            ok = false;
        } else if (s->pipe != p) {
            fu_http_error(resp, 403, "session %s belongs to another pipe", sid);
            ok = false;
        } else {
            leads = fu_session_leads(s);
            epoch = p->epoch;
            int busy = 0;
            if (seq && fu_seqwin_applied(s->seq_done, s->seq_seen, seq)) {
                duplicate = true; /* its answer was lost: applied once, answered again */
            } else if (!leads && (b.has_scan_rows || (walk && is_end))) {
                fu_http_error(resp, 409,
                              "session %s is not the leader of pipe %s (epoch %llu): snapshot "
                              "and audit batches come from the leader only",
                              sid, p->id, (unsigned long long)epoch);
                ok = false;
            } else if (seq && (busy = fu_seqwin_busy_add(s->seq_busy, SEQ_BUSY, seq)) < 0) {
                /* Its first copy is being applied (the agent gave up waiting for the
                 * answer): this one waits, and then gets "duplicate" or, if the first
                 * failed, is applied. */
                if (busy == -EBUSY)
                    fu_http_error(resp, 429,
                                  "batch seq %llu of session %s is being applied; send it "
                                  "again in a moment",
                                  (unsigned long long)seq, sid);
                else
                    fu_http_error(resp, 429,
                                  "too many batches of session %s in flight; send batch seq "
                                  "%llu again in a moment",
                                  sid, (unsigned long long)seq);
                resp->retry_after = 1;
                ok = false;
            } else {
                reserved = seq != 0;
                snprintf(agent, sizeof(agent), "%s", s->agent_id);
                snprintf(uri, sizeof(uri), "%s", s->source_uri ? s->source_uri : "");
                p->events_received += b.n;
                p->rows_skipped += b.skipped;
                if (config_yaml) {
                    free(s->reported_config);
                    s->reported_config = config_yaml;
                    config_yaml = NULL;
                    free(s->reported_config_file);
                    s->reported_config_file = config_file;
                    config_file = NULL;
                }
                /* job_complete and v1's aliases for it carry the job in their metadata. */
                if (job_id && source_type &&
                    (!strcmp(source_type, "job_complete") ||
                     !strcmp(source_type, "on_demand_job") ||
                     !strcmp(source_type, "scan_complete") ||
                     !strcmp(source_type, "find_complete") ||
                     !strcmp(source_type, "on_demand_jon")))
                    fu_job_report_locked(f, job_id, sid, req->recv_time);
            }
        }
        pthread_mutex_unlock(&f->mu);
    }
    if (ok && !duplicate) {
        /* The agent's view of the storage clock seeds the logical clock; a value a year
         * away from ours is not a clock (some clients number their events instead). */
        double storage_now =
            fabs(b.storage_now - req->recv_time) < 366 * 86400.0 ? b.storage_now : 0;
        bool audit_end = is_end && source_type && !strcmp(source_type, "audit");
        unsigned flags =
            (b.audit_rows ? FU_APPLY_AUDIT_START : 0) | (audit_end ? FU_APPLY_AUDIT_END : 0);
        /* Snapshot and audit rows, and audit ends, are the leader's: fenced by its epoch, in
         * the same write-locked step as the audit start and end they imply. */
        const _Atomic uint64_t *fence = b.has_scan_rows || audit_end ? &p->epoch : NULL;
        uint64_t jpos[p->nviews ? p->nviews : 1];
        memset(jpos, 0, sizeof(jpos));
        for (size_t i = 0; (b.n || flags) && i < p->nviews; i++) {
            long rc = fu_view_apply(p->views[i], b.rows, b.n, fu_buf_str(&b.paths), req->recv_time,
                                    storage_now, agent, uri, fence, epoch, p->id, flags, &jpos[i]);
            if (rc == -ESTALE) {
                fu_http_error(resp, 409,
                              "session %s lost the leadership of pipe %s while its batch "
                              "waited (epoch %llu is over)",
                              sid, p->id, (unsigned long long)epoch);
                ok = false;
                break;
            }
            if (rc < 0) {
                journal_error(resp, p->views[i], (int)rc);
                ok = false;
                break;
            }
        }
        if (!later)
            ok = ok && durable(p, jpos, resp);
        for (size_t i = 0; ok && later && i < p->nviews; i++)
            fu_view_kick(p->views[i]);
        if (walk && is_end)
            ok = ok && durable(p, NULL, resp);
        if (reserved) { /* applied (and durable, or 202): a copy is a duplicate; refused: not */
            pthread_mutex_lock(&f->mu);
            struct fu_session *s = fu_session_find_locked(f, sid);
            if (s) {
                fu_seqwin_busy_del(s->seq_busy, SEQ_BUSY, seq);
                if (ok)
                    fu_seqwin_mark(&s->seq_done, s->seq_seen, seq);
            }
            pthread_mutex_unlock(&f->mu);
        }
        /* A leader's whole walk, a snapshot or an audit (a restored view's first sync),
         * completes the pipe's sync. */
        if (ok && walk && is_end) {
            pthread_mutex_lock(&f->mu);
            struct fu_session *s = fu_session_find_locked(f, sid);
            if (s && fu_session_leads(s) && p->epoch == epoch) {
                if (!p->snapshot_complete)
                    fu_info("pipe %s: %s complete (session %s, epoch %llu)", p->id, source_type,
                            sid, (unsigned long long)epoch);
                p->snapshot_complete = true;
                p->ever_synced = true;
            }
            pthread_mutex_unlock(&f->mu);
        }
    }
    if (ok) {
        struct fu_jw w;
        fu_jw_init(&w, &resp->body);
        if (later)
            resp->status = 202;
        fu_jw_obj_begin(&w);
        fu_jw_ckey(&w, "status");
        fu_jw_cstr(&w, "ok");
        if (source_type && !strcmp(source_type, "job_complete")) {
            fu_jw_ckey(&w, "phase");
            fu_jw_cstr(&w, "job_complete");
        }
        fu_jw_ckey(&w, "count");
        fu_jw_uint(&w, duplicate ? 0 : b.n);
        fu_jw_ckey(&w, "skipped");
        fu_jw_uint(&w, duplicate ? 0 : b.skipped);
        fu_jw_ckey(&w, "role");
        fu_jw_cstr(&w, leads ? "leader" : "follower");
        fu_jw_ckey(&w, "epoch");
        fu_jw_uint(&w, epoch);
        if (duplicate) {
            fu_jw_ckey(&w, "duplicate");
            fu_jw_bool(&w, true);
        }
        if (later) {
            fu_jw_ckey(&w, "durable");
            fu_jw_bool(&w, false);
        }
        fu_jw_obj_end(&w);
    }
    free(b.rows);
    fu_buf_free(&b.paths);
    fu_buf_free(&b.norm);
    free(source_type);
    free(config_yaml);
    free(config_file);
    free(job_id);
}

/* ------------------------------------------------------------ consistency */

/* POST consistency/sentinel/feedback: the leader's fresh stat of suspect files,
 * {"type":"suspect_update","updates":[{"path","mtime","size","status"}]}, applied per view by
 * fu_fs_sentinel (v1 update_suspect, with its skew-tolerant stability test). */
static void sentinel_feedback(struct fu_pipe_rt *p, struct fu_http_req *req,
                              struct fu_http_resp *resp)
{
    struct {
        struct fu_sentinel_row *v;
        size_t n, cap;
        struct fu_buf paths;
    } b = {0};
    bool typed = false, ok = true;
    struct fu_jr r;
    fu_jr_init(&r, fu_buf_str(&req->body), req->body.len);
    enum fu_json_tok t = fu_jr_next(&r);
    if (t != FU_JSON_OBJ_BEGIN) {
        ok = t == FU_JSON_ERROR ? bad_json(resp, &r) : false;
        if (t != FU_JSON_ERROR)
            fu_http_error(resp, 400, "expected a JSON object");
    }
    while (ok && (t = fu_jr_next(&r)) == FU_JSON_KEY) {
        bool k_type = tok_is(&r, "type"), k_up = tok_is(&r, "updates");
        t = fu_jr_next(&r);
        if (k_type)
            typed = t == FU_JSON_STRING && tok_is(&r, "suspect_update");
        else if (k_up && t == FU_JSON_ARR_BEGIN) {
            while (ok && (t = fu_jr_next(&r)) == FU_JSON_OBJ_BEGIN) {
                struct fu_sentinel_row row = {0};
                bool have_mtime = false;
                bool exists = true, have_path = false;
                while ((t = fu_jr_next(&r)) == FU_JSON_KEY) {
                    int key = tok_is(&r, "path")                                   ? 1
                              : tok_is(&r, "mtime") || tok_is(&r, "current_mtime") ? 2
                              : tok_is(&r, "size")                                 ? 3
                              : tok_is(&r, "status")                               ? 4
                                                                                   : 0;
                    t = fu_jr_next(&r);
                    if (key == 1 && t == FU_JSON_STRING && !have_path) {
                        struct fu_buf norm = FU_BUF_INIT;
                        const char *why;
                        if (fu_path_normalize(r.str, r.str_len, &norm, &why) == 0) {
                            row.path_off = b.paths.len;
                            row.path_len = norm.len;
                            fu_buf_append(&b.paths, norm.data, norm.len);
                            fu_buf_putc(&b.paths, '\0');
                            have_path = true;
                        }
                        fu_buf_free(&norm);
                    } else if (key == 2 && t != FU_JSON_OBJ_BEGIN && t != FU_JSON_ARR_BEGIN) {
                        have_mtime = num_of(&r, t, &row.mtime);
                    } else if (key == 3 && t == FU_JSON_INT && r.i64 >= 0) {
                        row.size = (uint64_t)r.i64;
                        row.have_size = true;
                    } else if (key == 4 && t == FU_JSON_STRING) {
                        exists = !tok_is(&r, "missing");
                    } else {
                        skip_value(&r, t);
                    }
                }
                row.missing = !exists;
                if (have_path && (!exists || have_mtime)) {
                    if (b.n == b.cap) {
                        size_t cap = b.cap ? b.cap * 2 : 64;
                        struct fu_sentinel_row *v = realloc(b.v, cap * sizeof(*v));
                        if (!v) {
                            fu_http_error(resp, 503, "out of memory");
                            ok = false;
                            break;
                        }
                        b.v = v;
                        b.cap = cap;
                    }
                    b.v[b.n++] = row;
                }
            }
        } else {
            skip_value(&r, t);
        }
    }
    if (ok && t == FU_JSON_OBJ_END)
        t = fu_jr_next(&r);
    if (ok && t == FU_JSON_ERROR)
        ok = bad_json(resp, &r);
    fu_jr_free(&r);
    if (ok && !typed) {
        fu_buf_puts(&resp->body, "{\"status\":\"ignored\",\"reason\":\"unknown_type\"}");
        ok = false;
    }
    if (ok && b.paths.oom) {
        fu_http_error(resp, 503, "out of memory");
        ok = false;
    }
    size_t views_updated = 0;
    uint64_t jpos[p->nviews ? p->nviews : 1];
    memset(jpos, 0, sizeof(jpos));
    for (size_t i = 0; ok && i < p->nviews; i++) {
        size_t hits = 0;
        int rc = fu_view_sentinel(p->views[i], b.v, b.n, fu_buf_str(&b.paths), req->recv_time,
                                  &hits, &jpos[i]);
        if (rc < 0) {
            journal_error(resp, p->views[i], rc);
            ok = false;
        }
        views_updated += hits > 0;
    }
    ok = ok && durable(p, jpos, resp);
    if (ok)
        fu_buf_printf(&resp->body, "{\"status\":\"processed\",\"drivers_updated\":%zu}",
                      views_updated);
    free(b.v);
    fu_buf_free(&b.paths);
}

static void consistency(const struct fu_push_key *k, const char *what, struct fu_http_req *req,
                        struct fu_http_resp *resp)
{
    struct fu_pipe_rt *p = k->pipe;
    if (!strcmp(what, "audit/start") && !strcmp(req->method, "POST")) {
        uint64_t epoch = atomic_load(&p->epoch);
        int rc = 0;
        for (size_t i = 0; !rc && i < p->nviews; i++) {
            uint64_t jpos = 0;
            rc = fu_view_audit_start(p->views[i], req->recv_time, true, p->id, epoch, &jpos);
            if (!rc)
                rc = fu_view_durable(p->views[i], jpos);
            if (rc)
                journal_error(resp, p->views[i], rc);
        }
        if (!rc)
            fu_buf_printf(&resp->body, "{\"status\":\"audit_started\",\"drivers_handled\":%zu}",
                          p->nviews);
    } else if (!strcmp(what, "audit/end") && !strcmp(req->method, "POST")) {
        int rc = 0;
        for (size_t i = 0; !rc && i < p->nviews; i++) {
            uint64_t jpos = 0;
            rc = fu_view_audit_end(p->views[i], req->recv_time, p->id, &jpos);
            if (!rc)
                rc = fu_view_durable(p->views[i], jpos);
            if (rc)
                journal_error(resp, p->views[i], rc);
        }
        /* v1 counts every handler, whether or not it was auditing. */
        if (!rc)
            fu_buf_printf(&resp->body, "{\"status\":\"audit_ended\",\"drivers_handled\":%zu}",
                          p->nviews);
    } else if (!strcmp(what, "sentinel/tasks") && !strcmp(req->method, "GET")) {
        /* The union of the suspect files of the pipe's views. */
        struct fu_buf paths = FU_BUF_INIT, path = FU_BUF_INIT;
        struct fu_jw pw;
        fu_jw_init(&pw, &paths);
        size_t count = 0;
        for (size_t i = 0; i < p->nviews; i++) {
            struct fu_view *v = p->views[i];
            pthread_rwlock_rdlock(&v->lock);
            fu_fs_write_suspect_paths(&v->fs, &pw, &count);
            pthread_rwlock_unlock(&v->lock);
        }
        if (count) {
            fu_buf_puts(&resp->body, "{\"type\":\"suspect_check\",\"paths\":[");
            fu_buf_append(&resp->body, paths.data, paths.len);
            fu_buf_puts(&resp->body, "],\"view_id\":");
            fu_json_escape(&resp->body, p->views[0]->id, strlen(p->views[0]->id));
            fu_buf_putc(&resp->body, '}');
        } else {
            fu_buf_puts(&resp->body, "{}");
        }
        fu_buf_free(&paths);
        fu_buf_free(&path);
    } else if (!strcmp(what, "sentinel/feedback") && !strcmp(req->method, "POST")) {
        sentinel_feedback(p, req, resp);
    } else {
        fu_http_error(resp, 404, "Not Found");
    }
}

/* ------------------------------------------------------------ routing */

void fu_api_pipe(struct fu_listener *l, struct fu_http_req *req, struct fu_http_resp *resp)
{
    struct fu_fusion *f = l->f;
    const char *key = fu_http_header(req, "X-API-Key");
    if (!key || !*key) {
        fu_http_error(resp, 401, "X-API-Key header is missing");
        return;
    }
    const struct fu_push_key *k = fu_fusion_push_key(f, l, key);
    if (!k) {
        fu_http_error(resp, 401, "Invalid or inactive X-API-Key");
        return;
    }
    const char *rest = strlen(req->path) >= strlen(PREFIX) ? req->path + strlen(PREFIX) : "";
    const char *m = req->method;
    char sid[64];
    int n = 0;
    if ((!strcmp(rest, "session/") || !strcmp(rest, "session")) && !strcmp(m, "POST")) {
        session_create(f, k, req, resp);
    } else if ((!strcmp(rest, "session/") || !strcmp(rest, "session")) && !strcmp(m, "GET")) {
        fu_buf_puts(&resp->body, "{\"view_id\":");
        const char *vid = k->pipe->nviews ? k->pipe->views[0]->id : k->pipe->id;
        fu_json_escape(&resp->body, vid, strlen(vid));
        fu_buf_puts(&resp->body, ",\"pipe_id\":");
        fu_json_escape(&resp->body, k->pipe->id, strlen(k->pipe->id));
        fu_buf_puts(&resp->body, ",\"status\":\"authorized\"}");
    } else if (!strncmp(rest, "consistency/", 12)) {
        consistency(k, rest + 12, req, resp);
    } else if (sscanf(rest, "ingest/%63[^/]/events%n", sid, &n) == 1 && rest[n] == '\0') {
        if (strcmp(m, "POST"))
            fu_http_error(resp, 405, "use POST");
        else
            ingest(f, k, sid, req, resp);
    } else if (sscanf(rest, "session/%63[^/]%n", sid, &n) == 1 &&
               (rest[n] == '\0' || !strcmp(rest + n, "/heartbeat") || !strcmp(rest + n, "/"))) {
        bool hb = !strcmp(rest + n, "/heartbeat");
        if ((hb && strcmp(m, "POST")) || (!hb && strcmp(m, "DELETE"))) {
            fu_http_error(resp, 405, hb ? "use POST" : "use DELETE");
            return;
        }
        struct hb_body body = {-1, NULL};
        if (hb && !parse_heartbeat(req, &body, resp))
            return;
        pthread_mutex_lock(&f->mu);
        struct fu_session *s = fu_session_find_locked(f, sid);
        if (!s)
            fu_http_error(resp, 419, "Session %s not found or obsoleted; create a new session",
                          sid);
        else if (s->pipe != k->pipe)
            fu_http_error(resp, 403, "session %s belongs to another pipe", sid);
        else if (hb)
            heartbeat(s, &body, resp);
        else {
            fu_info("pipe %s: session %s (%s) closed by the agent", s->pipe->id, s->id, s->task_id);
            fu_buf_printf(&resp->body, "{\"status\":\"terminated\",\"session_id\":\"%s\"}", s->id);
            fu_session_close_locked(f, s);
        }
        pthread_mutex_unlock(&f->mu);
        free(body.agent_status);
    } else {
        fu_http_error(resp, 404, "Not Found");
    }
}
