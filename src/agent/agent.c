/* The agent's runtime; see agent.h. Each pipe thread runs the control loop: open a session
 * (with exponential backoff and jitter while Fusion is away), start its heartbeat thread,
 * run the leader's snapshot, then wait until the session is lost or the agent stops. */
#include "agent/agent.h"

#include "agent/bus.h"
#include "agent/config_update.h"
#include "agent/fieldmap.h"
#include "agent/sender_http.h"
#include "agent/source.h"
#include "agent/source_fs/scan.h"
#include "agent/spool.h"
#include "common/clock.h"
#include "common/daemon.h"
#include "common/fsutil.h"
#include "common/json.h"
#include "common/log.h"
#include "common/paths.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

struct job {
    enum { JOB_SCAN, JOB_REPORT_CONFIG, JOB_UPDATE_CONFIG } kind;
    char *path;   /* scan: the path; config jobs: the file name */
    char *job_id; /* scan */
    bool recursive;
    char *yaml; /* update_config: the new text */
};

struct pipe_rt {
    struct fu_agent *agent;
    char *id, *task_id, *root, *file_pattern, *key;
    struct fu_strv uris, exclude;
    bool one_filesystem;
    bool message_only; /* startup_mode: message-only: no snapshot rows */
    int workers;
    size_t batch_size;
    double timeout, session_timeout;          /* session_timeout: NAN = Fusion decides */
    double audit_interval, sentinel_interval; /* the pipe's; Fusion's replies override them */
    double retry_base, retry_mult, retry_cap; /* backoff while Fusion cannot be reached */
    int max_errors;                           /* failures in a row before an error line */
    struct source_ent *src;                   /* the source it reads, shared */
    struct fu_fieldmap *fmap;                 /* fields_mapping; NULL: rows go as they are */
    struct fu_bus_sub *sub;                   /* its cursor on the source's bus */
    pthread_t thread;
    bool started;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    bool stopped_by_command; /* stop_pipe: a reload starts it again */
    bool kick;               /* wakes the pipe thread: its role changed, or a command came */
    struct job *jobs;        /* commands to run in the pipe thread */
    size_t njobs;
    /* The leader's directory-mtime cache: filled by snapshots and audits, valid while
     * Fusion's view keeps its incarnation (and the walk its root, pattern and exclusions),
     * saved after every whole walk so that a restart (ours or Fusion's) audits instead of
     * snapshotting. Against a Fusion that names no incarnation (v1) it lives as long as
     * the session and is not saved. */
    struct fu_dircache *dircache;
    char *cache_file;           /* $FUSTOR_HOME/data/agent/<pipe>.dircache */
    char *cache_token;          /* what dircache is valid against; NULL: nothing */
    char walk_sig[17];          /* hash of root, file pattern and exclusions */
    char fusion_token[64];      /* from the session reply; "": none (v1) */
    bool fusion_audits;         /* the session reply's initial_sync is "audit" */
    _Atomic bool fusion_arrays; /* the session reply's row_arrays: rows may be arrays */
    _Atomic bool fusion_at_end; /* ... durable_at_end: a walk is made durable at its end */
    double fusion_audit, fusion_sentinel; /* from the session reply, NAN when absent */
    bool resync;                          /* events were lost: the leader snapshots again */
    /* The spool (spool.h): realtime rows while Fusion cannot take them, owned by the
     * realtime thread. */
    char *spool_dir;          /* $FUSTOR_HOME/data/agent/<pipe>.spool; NULL: memory only */
    char *resync_file;        /* ... <pipe>.resync: a resync is owed, across restarts too */
    double spool_max;         /* bytes; 0: no spool */
    bool discard_spool;       /* (under mu) the pipe was removed: its spool goes */
    _Atomic bool unreachable; /* the last attempt to reach Fusion failed */
    _Atomic uint64_t spooled, spool_bytes; /* for status */
    uint64_t seq;                          /* (under mu) the session's last batch number */
    /* the session, shared with the heartbeat and realtime threads (sid under mu) */
    char sid[128];
    _Atomic bool lost; /* 419 or closed: open a new one */
    _Atomic bool leader;
    _Atomic uint64_t epoch;
    double hb_interval;
    pthread_t hb;
    bool hb_running;
    /* realtime: the thread that sends the bus's rows, woken through wakefd */
    pthread_t rt;
    bool rt_running;
    int wakefd;
    _Atomic double drift; /* storage clock minus ours, s: events' index is in storage time */
    /* live state for `status` */
    _Atomic int phase;
    _Atomic size_t pending_count;
    /* progress */
    _Atomic uint64_t rows_sent, walk_rows, walk_dirs; /* walk_*: the walk under way */
    _Atomic uint64_t bytes_sent;                      /* requests to Fusion: head and body */
    _Atomic double walk_started;
    double progress_logged; /* the last progress line (service thread) */
    char last_error[256];
};

enum phase { PH_CONNECTING, PH_IDLE, PH_SNAPSHOT, PH_AUDIT, PH_SCAN, PH_SENTINEL, PH_STOPPED };
static const char *const phase_names[] = {"connecting",     "watching", "snapshot", "audit",
                                          "on-demand scan", "sentinel", "stopped"};

/* A source shared by the pipes that read it, known by everything its runtime depends on. */
struct source_ent {
    char *sig;
    struct fu_source *s;
    int refs;
};

/* Only the service thread (start, reload, status, stop) touches `pipes` and `sources`;
 * cfg_mu guards the config file names, which pipe threads read for config commands. */
struct fu_agent {
    char *agent_id;
    struct pipe_rt **pipes;
    size_t npipes;
    struct source_ent **sources;
    size_t nsources;
    pthread_mutex_t cfg_mu;
    char *home, *dir, *active_file;
    struct fu_strv files;
    pthread_mutex_t update_mu; /* one update_config at a time */
    struct fu_strv failed;     /* pipes that could not start at the last reload */
};

static double wall(void)
{
    return fu_wall_clock();
}

#define PROBE_PREFIX ".fustor-clock-probe-"

/* Now on the storage's clock, in ms: v1's event index (agent time plus drift). */
static long long storage_ms(struct pipe_rt *p)
{
    return (long long)((wall() + atomic_load(&p->drift)) * 1000);
}

/* Measures how far the storage's clock is from ours: a file created in the root gets its
 * mtime from the storage (the NFS server's clock, on NFS). Read-only roots keep the last
 * estimate (0 at first). v1 estimated it from the newest directory mtimes, which on a quiet
 * tree mistakes age for drift. */
static void measure_drift(struct pipe_rt *p)
{
    char name[64];
    snprintf(name, sizeof(name), PROBE_PREFIX "%ld", (long)getpid());
    int dfd = open(p->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return;
    double before = wall();
    int fd = openat(dfd, name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    double after = wall();
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0) {
        double mtime = (double)st.st_mtim.tv_sec + st.st_mtim.tv_nsec / 1e9;
        double drift = mtime - (before + after) / 2;
        if (fabs(drift) < 1.0)
            drift = 0; /* within the storage's timestamp granularity: the clocks agree */
        if (fabs(drift - atomic_load(&p->drift)) >= 1.0)
            fu_info("pipe %s: the storage's clock is %.1f s %s ours", p->id, fabs(drift),
                    drift >= 0 ? "ahead of" : "behind");
        atomic_store(&p->drift, drift);
    }
    if (fd >= 0) {
        close(fd);
        unlinkat(dfd, name, 0);
    }
    close(dfd);
}

/* Sleeps up to `sec`, or until the pipe stops, its session is lost or it is kicked; returns
 * false when it stopped. */
static bool nap_for(struct pipe_rt *p, double sec, bool kickable)
{
    /* the pipe's condvar runs on the monotonic clock: a jump of the wall clock neither cuts
     * a nap short nor stretches it */
    struct timespec ts = fu_mono_deadline(sec);
    pthread_mutex_lock(&p->mu);
    while (!p->stop && !atomic_load(&p->lost) && !(kickable && p->kick)) {
        if (pthread_cond_timedwait(&p->cv, &p->mu, &ts) == ETIMEDOUT)
            break;
    }
    if (kickable)
        p->kick = false;
    bool go = !p->stop;
    pthread_mutex_unlock(&p->mu);
    return go;
}

/* The pipe thread's nap: a kick ends it. */
static bool nap(struct pipe_rt *p, double sec)
{
    return nap_for(p, sec, true);
}

static bool stopping(struct pipe_rt *p)
{
    pthread_mutex_lock(&p->mu);
    bool s = p->stop;
    pthread_mutex_unlock(&p->mu);
    return s;
}

/* The last error, for `status`. */
static void set_error(struct pipe_rt *p, const char *what, const char *detail)
{
    pthread_mutex_lock(&p->mu);
    snprintf(p->last_error, sizeof(p->last_error), "%s: %.200s", what, detail);
    pthread_mutex_unlock(&p->mu);
}

/* Tells the pipe thread its session is gone (it opens a new one). */
static void mark_lost(struct pipe_rt *p)
{
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->lost, true);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* Events were lost: the leader snapshots again. */
static void ask_resync(struct pipe_rt *p)
{
    pthread_mutex_lock(&p->mu);
    p->resync = p->kick = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* The same, remembered in <pipe>.resync until a snapshot is done: a restart in between
 * still resyncs. */
static void owe_resync(struct pipe_rt *p)
{
    if (p->resync_file) {
        char *dir = strdup(p->resync_file);
        char *slash = dir ? strrchr(dir, '/') : NULL;
        if (slash) {
            *slash = '\0';
            fu_mkdirs(dir, 0750);
        }
        free(dir);
        int fd = open(p->resync_file, O_WRONLY | O_CREAT | O_CLOEXEC, 0640);
        if (fd >= 0)
            close(fd);
    }
    ask_resync(p);
}

/* The next batch number (`seq`) of session `sid`, or 0 when that session is no longer the
 * pipe's. Each new batch gets a new one; a batch sent again keeps its own. */
static uint64_t session_seq(struct pipe_rt *p, const char *sid)
{
    pthread_mutex_lock(&p->mu);
    uint64_t n = sid[0] && !strcmp(p->sid, sid) ? ++p->seq : 0;
    pthread_mutex_unlock(&p->mu);
    return n;
}

/* The batch's "seq" member (none when its session is gone: Fusion answers 419 anyway). */
static void put_seq(struct fu_jw *w, uint64_t seq)
{
    if (!seq)
        return;
    fu_jw_ckey(w, "seq");
    fu_jw_uint(w, seq);
}

/* ------------------------------------------------------------ session */

static void queue_job(struct pipe_rt *p, struct job j)
{
    pthread_mutex_lock(&p->mu);
    struct job *v = realloc(p->jobs, (p->njobs + 1) * sizeof(*v));
    if (v) {
        p->jobs = v;
        v[p->njobs++] = j;
        p->kick = true;
        pthread_cond_broadcast(&p->cv);
    } else {
        free(j.path);
        free(j.job_id);
        free(j.yaml);
    }
    pthread_mutex_unlock(&p->mu);
}

static void job_free(struct job *j)
{
    free(j->path);
    free(j->job_id);
    free(j->yaml);
}

/* One command of a heartbeat reply (v1 §2.10), delivered once. `scan` and the config
 * commands run in the pipe thread; reload_config asks the main loop for a reload, as SIGHUP
 * does; stop_pipe stops this pipe until the next reload or restart. */
static void run_command(struct pipe_rt *p, const char *type, const char *path, bool recursive,
                        const char *job, const char *pipe_id, const char *filename,
                        struct fu_buf *yaml)
{
    if (!strcmp(type, "scan")) {
        struct fu_buf norm = FU_BUF_INIT;
        const char *why = NULL;
        if (fu_path_normalize(path, strlen(path), &norm, &why) < 0) {
            fu_warn("pipe %s: scan command for a bad path refused: %s", p->id, why);
        } else {
            struct job j = {JOB_SCAN, strdup(fu_buf_str(&norm)), strdup(job), recursive, NULL};
            if (j.path && j.job_id)
                queue_job(p, j);
            else
                job_free(&j);
        }
        fu_buf_free(&norm);
    } else if (!strcmp(type, "reload_config")) {
        fu_info("pipe %s: Fusion asked for a config reload", p->id);
        fu_signals_raise(FU_SIG_HUP);
    } else if (!strcmp(type, "stop_pipe")) {
        if (strcmp(pipe_id, p->id))
            return; /* for another pipe of this agent (v1: the id must match) */
        fu_warn("pipe %s: stopped by a stop_pipe command from Fusion (a reload or a restart "
                "starts it again)",
                p->id);
        pthread_mutex_lock(&p->mu);
        p->stop = p->stopped_by_command = true;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        eventfd_write(p->wakefd, 1);
    } else if (!strcmp(type, "report_config") || !strcmp(type, "update_config")) {
        bool update = type[0] == 'u';
        if (update && !yaml->len) {
            fu_warn("pipe %s: update_config without config_yaml refused", p->id);
            return;
        }
        struct job j = {update ? JOB_UPDATE_CONFIG : JOB_REPORT_CONFIG, strdup(filename), NULL,
                        false, update ? strdup(fu_buf_str(yaml)) : NULL};
        if (j.path && (!update || j.yaml))
            queue_job(p, j);
        else
            job_free(&j);
    } else {
        fu_warn("pipe %s: command '%s' is not supported by this agent; ignored", p->id, type);
    }
}

static void tok_copy(const struct fu_jr *r, char *out, size_t len)
{
    size_t n = r->str_len < len ? r->str_len : len - 1;
    memcpy(out, r->str, n);
    out[n] = '\0';
}

/* The commands array of a heartbeat reply. */
static void read_commands(struct pipe_rt *p, struct fu_jr *r)
{
    enum fu_json_tok t;
    struct fu_buf yaml = FU_BUF_INIT;
    while ((t = fu_jr_next(r)) == FU_JSON_OBJ_BEGIN) {
        char type[32] = "", path[4096] = "/", job[128] = "", pipe_id[256] = "", filename[256] = "";
        bool recursive = true, too_long = false;
        fu_buf_reset(&yaml);
        while ((t = fu_jr_next(r)) == FU_JSON_KEY) {
            char key[16];
            tok_copy(r, key, sizeof(key));
            t = fu_jr_next(r);
            if (t == FU_JSON_STRING && memchr(r->str, '\0', r->str_len)) {
                too_long = true; /* a NUL inside a string: refused as a whole */
            } else if (t == FU_JSON_STRING && !strcmp(key, "type")) {
                tok_copy(r, type, sizeof(type));
            } else if (t == FU_JSON_STRING && !strcmp(key, "path")) {
                too_long |= r->str_len >= sizeof(path);
                tok_copy(r, path, sizeof(path));
            } else if (t == FU_JSON_STRING && !strcmp(key, "job_id")) {
                too_long |= r->str_len >= sizeof(job);
                tok_copy(r, job, sizeof(job));
            } else if (t == FU_JSON_STRING &&
                       (!strcmp(key, "agent_pipe_id") || !strcmp(key, "pipe_id"))) {
                too_long |= r->str_len >= sizeof(pipe_id);
                tok_copy(r, pipe_id, sizeof(pipe_id));
            } else if (t == FU_JSON_STRING && !strcmp(key, "filename")) {
                too_long |= r->str_len >= sizeof(filename);
                tok_copy(r, filename, sizeof(filename));
            } else if (t == FU_JSON_STRING && !strcmp(key, "config_yaml")) {
                fu_buf_append(&yaml, r->str, r->str_len);
            } else if ((t == FU_JSON_TRUE || t == FU_JSON_FALSE) && !strcmp(key, "recursive")) {
                recursive = t == FU_JSON_TRUE;
            } else if (fu_jr_skip(r) < 0) {
                fu_buf_free(&yaml);
                return;
            }
        }
        if (too_long || yaml.oom)
            fu_warn("pipe %s: command '%s' refused: a field is too long or holds a NUL", p->id,
                    type);
        else
            run_command(p, type, path, recursive, job, pipe_id, filename, &yaml);
    }
    fu_buf_free(&yaml);
}

/* The length of the prefix of s made of characters a session id may hold (it goes into URLs
 * and JSON unescaped). */
static size_t strspn_n(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && (isalnum((unsigned char)s[i]) || s[i] == '-' || s[i] == '_' || s[i] == '.'))
        i++;
    return i;
}

/* Reads the role and epoch of a session or heartbeat reply. */
static void read_role(struct pipe_rt *p, const struct fu_buf *body, char *sid, size_t sidlen,
                      double *timeout)
{
    struct fu_jr r;
    fu_jr_init(&r, fu_buf_str(body), body->len);
    enum fu_json_tok t = fu_jr_next(&r);
    while (t == FU_JSON_OBJ_BEGIN && (t = fu_jr_next(&r)) == FU_JSON_KEY) {
        char key[40];
        snprintf(key, sizeof(key), "%.*s", (int)(r.str_len < 39 ? r.str_len : 39), r.str);
        t = fu_jr_next(&r);
        if (!strcmp(key, "role") && t == FU_JSON_STRING)
            atomic_store(&p->leader, r.str_len == 6 && !memcmp(r.str, "leader", 6));
        else if (!strcmp(key, "epoch") && t == FU_JSON_INT && r.i64 >= 0)
            atomic_store(&p->epoch, (uint64_t)r.i64);
        else if (sid && !strcmp(key, "session_id") && t == FU_JSON_STRING && r.str_len < sidlen &&
                 r.str_len == strspn_n(r.str, r.str_len))
            snprintf(sid, sidlen, "%.*s", (int)r.str_len, r.str); /* URL- and JSON-safe only */
        else if (timeout && !strcmp(key, "session_timeout_seconds") &&
                 (t == FU_JSON_INT || t == FU_JSON_DOUBLE))
            *timeout = t == FU_JSON_INT ? (double)r.i64 : r.dbl;
        else if (timeout && !strcmp(key, "audit_interval_sec") &&
                 (t == FU_JSON_INT || t == FU_JSON_DOUBLE))
            p->fusion_audit = t == FU_JSON_INT ? (double)r.i64 : r.dbl;
        else if (timeout && !strcmp(key, "sentinel_interval_sec") &&
                 (t == FU_JSON_INT || t == FU_JSON_DOUBLE))
            p->fusion_sentinel = t == FU_JSON_INT ? (double)r.i64 : r.dbl;
        else if (timeout && !strcmp(key, "row_arrays"))
            atomic_store(&p->fusion_arrays, t == FU_JSON_TRUE);
        else if (timeout && !strcmp(key, "durable_at_end"))
            atomic_store(&p->fusion_at_end, t == FU_JSON_TRUE);
        else if (timeout && !strcmp(key, "initial_sync") && t == FU_JSON_STRING)
            p->fusion_audits = r.str_len == 5 && !memcmp(r.str, "audit", 5);
        else if (timeout && !strcmp(key, "view_incarnation") && t == FU_JSON_STRING && r.str_len &&
                 r.str_len < 40 && r.str_len == strspn_n(r.str, r.str_len))
            snprintf(p->fusion_token, sizeof(p->fusion_token), "%.*s:%s", (int)r.str_len, r.str,
                     p->walk_sig);
        else if (!strcmp(key, "commands") && t == FU_JSON_ARR_BEGIN)
            read_commands(p, &r);
        else if (fu_jr_skip(&r) < 0)
            break;
        t = FU_JSON_OBJ_BEGIN;
    }
    fu_jr_free(&r);
}

static void *heartbeat_main(void *arg)
{
    struct pipe_rt *p = arg;
    struct fu_hc c;
    if (fu_hc_init(&c, &p->uris, p->key, p->timeout) < 0)
        return NULL;
    c.sent = &p->bytes_sent;
    struct fu_buf body = FU_BUF_INIT, out = FU_BUF_INIT, path = FU_BUF_INIT;
    fu_buf_printf(&path, "/api/v1/pipe/session/%s/heartbeat", p->sid);
    while (nap_for(p, p->hb_interval, false) && !atomic_load(&p->lost)) {
        fu_buf_reset(&body);
        struct fu_jw w;
        fu_jw_init(&w, &body);
        fu_jw_obj_begin(&w);
        fu_jw_ckey(&w, "can_realtime");
        fu_jw_bool(&w, true);
        fu_jw_ckey(&w, "agent_status");
        fu_jw_obj_begin(&w);
        fu_jw_ckey(&w, "agent_id");
        fu_jw_cstr(&w, p->agent->agent_id);
        fu_jw_ckey(&w, "state");
        fu_jw_cstr(&w, "RUNNING");
        fu_jw_ckey(&w, "role");
        fu_jw_cstr(&w, atomic_load(&p->leader) ? "leader" : "follower");
        fu_jw_ckey(&w, "events_pushed");
        fu_jw_uint(&w, atomic_load(&p->rows_sent));
        fu_jw_obj_end(&w);
        fu_jw_obj_end(&w);
        long st = fu_hc_call(&c, "POST", path.data, body.data, body.len, &out);
        if (st == 200) {
            bool was = atomic_load(&p->leader);
            read_role(p, &out, NULL, 0, NULL);
            if (was != atomic_load(&p->leader)) {
                fu_info("pipe %s: Fusion made this agent %s (epoch %llu)", p->id,
                        atomic_load(&p->leader) ? "the leader" : "a follower",
                        (unsigned long long)atomic_load(&p->epoch));
                pthread_mutex_lock(&p->mu);
                p->kick = true;
                pthread_cond_broadcast(&p->cv);
                pthread_mutex_unlock(&p->mu);
            }
        } else if (st == 419 || st == 404) {
            fu_warn("pipe %s: session %s is gone (HTTP %ld); opening a new one", p->id, p->sid, st);
            mark_lost(p);
        } else if (st < 0) {
            set_error(p, "heartbeat", c.err);
            fu_warn("pipe %s: heartbeat failed: %s (retrying)", p->id, c.err);
        } else {
            fu_warn("pipe %s: heartbeat answered HTTP %ld: %s", p->id, st, fu_buf_str(&out));
        }
    }
    fu_buf_free(&body);
    fu_buf_free(&out);
    fu_buf_free(&path);
    fu_hc_free(&c);
    return NULL;
}

static bool open_session(struct pipe_rt *p, struct fu_hc *c, struct fu_buf *out)
{
    struct fu_buf body = FU_BUF_INIT;
    struct fu_jw w;
    fu_jw_init(&w, &body);
    fu_jw_obj_begin(&w);
    fu_jw_ckey(&w, "task_id");
    fu_jw_cstr(&w, p->task_id);
    if (!isnan(p->session_timeout)) {
        fu_jw_ckey(&w, "session_timeout_seconds");
        fu_jw_double(&w, p->session_timeout);
    }
    fu_jw_ckey(&w, "source_type");
    fu_jw_cstr(&w, "fs");
    fu_jw_ckey(&w, "client_info");
    fu_jw_obj_begin(&w);
    fu_jw_ckey(&w, "agent_id");
    fu_jw_cstr(&w, p->agent->agent_id);
    fu_jw_ckey(&w, "source_uri");
    fu_jw_cstr(&w, p->root);
    fu_jw_obj_end(&w);
    fu_jw_obj_end(&w);
    long st = fu_hc_call(c, "POST", "/api/v1/pipe/session/", body.data, body.len, out);
    fu_buf_free(&body);
    if (st != 200) {
        set_error(p, "session", st < 0 ? c->err : fu_buf_str(out));
        fu_warn("pipe %s: cannot open a session: %s", p->id, st < 0 ? c->err : fu_buf_str(out));
        return false;
    }
    double timeout = 30;
    p->fusion_audit = p->fusion_sentinel = NAN;
    p->fusion_audits = false;
    atomic_store(&p->fusion_arrays, false);
    atomic_store(&p->fusion_at_end, false);
    p->fusion_token[0] = '\0';
    char sid[sizeof(p->sid)] = "";
    read_role(p, out, sid, sizeof(sid), &timeout);
    if (!sid[0])
        return false;
    pthread_mutex_lock(&p->mu);
    memcpy(p->sid, sid, sizeof(sid));
    p->seq = 0; /* batches are numbered per session */
    pthread_mutex_unlock(&p->mu);
    p->hb_interval = timeout / 3 > 0.05 ? timeout / 3 : 0.05;
    atomic_store(&p->lost, false);
    atomic_store(&p->unreachable, false);
    fu_info("pipe %s: session %s open as %s (epoch %llu, timeout %.1f s)", p->id, p->sid,
            atomic_load(&p->leader) ? "leader" : "follower",
            (unsigned long long)atomic_load(&p->epoch), timeout);
    eventfd_write(p->wakefd, 1); /* the watcher sends what it held */
    return true;
}

static void close_session(struct pipe_rt *p, struct fu_hc *c)
{
    if (p->hb_running) {
        mark_lost(p); /* ends the heartbeat loop */
        pthread_join(p->hb, NULL);
        p->hb_running = false;
    }
    if (p->sid[0]) {
        struct fu_buf out = FU_BUF_INIT, path = FU_BUF_INIT;
        fu_buf_printf(&path, "/api/v1/pipe/session/%s", p->sid);
        pthread_mutex_lock(&p->mu);
        p->sid[0] = '\0';
        pthread_mutex_unlock(&p->mu);
        fu_hc_call(c, "DELETE", path.data, NULL, 0, &out);
        fu_buf_free(&out);
        fu_buf_free(&path);
    }
}

/* ------------------------------------------------------------ the audit cache */

/* The cache as last saved when that is valid against cache_token, else an empty one: what
 * a failed walk leaves (it may hold mtimes of directories whose rows never arrived). */
static void cache_reload(struct pipe_rt *p)
{
    fu_dircache_free(p->dircache);
    p->dircache = NULL;
    if (p->cache_file && p->cache_token) {
        struct fu_dircache *c = NULL;
        char *tok = NULL;
        if (fu_dircache_load(p->cache_file, &c, &tok) == 0 && !strcmp(tok, p->cache_token)) {
            p->dircache = c;
            c = NULL;
        }
        fu_dircache_free(c);
        free(tok);
    }
    if (!p->dircache)
        p->dircache = fu_dircache_new();
}

/* At a new session: the cache stays if it was made against the view Fusion now names. */
static void cache_for_session(struct pipe_rt *p)
{
    const char *t = p->fusion_token;
    if (t[0] && p->cache_token && !strcmp(t, p->cache_token))
        return;
    if (p->cache_token && t[0])
        fu_info("pipe %s: Fusion's view is not the one the audit cache was made against (its "
                "incarnation changed): the cache starts empty",
                p->id);
    fu_dircache_free(p->dircache);
    p->dircache = fu_dircache_new();
    free(p->cache_token);
    p->cache_token = t[0] ? strdup(t) : NULL;
    if (p->cache_file)
        unlink(p->cache_file); /* worthless now */
}

/* After a whole walk whose rows Fusion acknowledged. */
static void cache_save(struct pipe_rt *p)
{
    if (!p->cache_file || !p->cache_token || !p->dircache)
        return;
    char *dir = strdup(p->cache_file);
    char *slash = dir ? strrchr(dir, '/') : NULL;
    if (slash) {
        *slash = '\0';
        fu_mkdirs(dir, 0750);
    }
    free(dir);
    int rc = fu_dircache_save(p->dircache, p->cache_file, p->cache_token);
    if (rc < 0) {
        fu_warn("pipe %s: cannot save the audit cache in %s: %s (a restart snapshots again)", p->id,
                p->cache_file, strerror(-rc));
        unlink(p->cache_file);
    }
}

/* At start-up: the cache a previous run saved. */
static void cache_load(struct pipe_rt *p)
{
    if (!p->cache_file)
        return;
    char *tok = NULL;
    struct fu_dircache *c = NULL;
    int rc = fu_dircache_load(p->cache_file, &c, &tok);
    if (rc == 0) {
        size_t n = fu_dircache_size(c);
        fu_dircache_free(p->dircache);
        p->dircache = c;
        free(p->cache_token);
        p->cache_token = tok;
        fu_info("pipe %s: audit cache of %zu directories loaded from %s", p->id, n, p->cache_file);
    } else if (rc != -ENOENT) {
        fu_warn("pipe %s: the audit cache %s is unusable (%s): it starts empty", p->id,
                p->cache_file, rc == -EBADMSG ? "damaged" : strerror(-rc));
    }
}

/* ------------------------------------------------------------ snapshot */

#define SEND_CONNS 4  /* concurrent batches in flight during a walk */
#define ROW_BYTES 192 /* a walked row's JSON, about: the first reservation for a chunk */

#define SEND_QUEUE (2 * SEND_CONNS)

/* A walk's rows on their way to Fusion: the scan workers encode their chunks in parallel and
 * append them to the current batch under a short lock; a full batch goes to a small bounded
 * queue that sender threads drain over their own keep-alive connections. Walking, encoding,
 * sending and Fusion's apply overlap; a full queue holds the workers back (backpressure). */
struct batcher {
    struct pipe_rt *p;
    const char *source; /* message_source */
    pthread_mutex_t mu;
    pthread_cond_t cv;       /* the queue changed */
    struct fu_buf rows_json; /* the current batch's rows, comma-separated */
    size_t rows;
    struct fu_buf queue[SEND_QUEUE];
    size_t queue_rows[SEND_QUEUE], qhead, qcount;
    bool closing; /* no more batches: senders finish the queue and exit */
    struct fu_hc conns[SEND_CONNS];
    pthread_t senders[SEND_CONNS];
    int nconns, nsenders;
    struct fu_buf path;
    bool arrays; /* rows as arrays in ARRAY_FIELDS order (the Fusion said it takes them) */
    bool at_end; /* batches say durable_at_end: Fusion answers 202 before their sync */
    int rc;      /* the first error: stops the walk */
};

/* The columns of rows sent as arrays: v1's FSRow without file_name (the path's last name). */
#define ARRAY_FIELDS "[\"path\",\"size\",\"modified_time\",\"created_time\",\"is_directory\"]"

/* Posts `n` rows (`rows_json`) as one batch on connection `c`; a lost session or a stop ends
 * the walk. */
/* An answer that says "not now" rather than "never": Fusion cannot store batches durably
 * for the moment (507: its disk is full; 503: another journal failure), or is overloaded. The
 * batch goes again after a pause; nothing of it was applied. */
static bool transient(long st)
{
    return st == 429 || st == 502 || st == 503 || st == 504 || st == 507;
}

static int post_rows(struct batcher *b, struct fu_hc *c, const struct fu_buf *rows_json, size_t n)
{
    if (!n)
        return 0;
    struct fu_buf body = FU_BUF_INIT, out = FU_BUF_INIT;
    /* One number for the batch, however often it is sent: Fusion applies it once. */
    uint64_t seq = session_seq(b->p, b->p->sid);
    fu_buf_grow(&body, rows_json->len + 1024); /* the envelope is short */
    fu_buf_putc(&body, '{');
    if (seq)
        fu_buf_printf(&body, "\"seq\":%llu,", (unsigned long long)seq);
    if (b->at_end)
        fu_buf_puts(&body, "\"durable_at_end\":true,");
    fu_buf_printf(&body,
                  "\"session_id\":\"%s\",\"source_type\":\"%s\",\"is_end\":false,\"events\":"
                  "[{\"event_type\":\"update\",\"message_source\":\"%s\",\"event_schema\":"
                  "\"fs\",\"table\":\"files\",\"index\":%lld,\"fields\":%s,\"rows\":[",
                  b->p->sid, b->source, b->source, storage_ms(b->p),
                  b->p->fmap  ? fu_fieldmap_fields_json(b->p->fmap)
                  : b->arrays ? ARRAY_FIELDS
                              : "[\"path\",\"file_name\",\"size\",\"modified_time\","
                                "\"created_time\",\"is_directory\"]");
    fu_buf_append(&body, rows_json->data, rows_json->len);
    fu_buf_puts(&body, "]}]}");
    int rc = 0;
    double pause = 1.0;
    for (;;) {
        long st = body.oom ? -1 : fu_hc_call(c, "POST", b->path.data, body.data, body.len, &out);
        if (st == 200 || (st == 202 && b->at_end)) { /* 202: durable with the end marker */
            atomic_fetch_add(&b->p->rows_sent, n);
            break;
        }
        if (transient(st)) {
            set_error(b->p, "push", fu_buf_str(&out));
            fu_warn("pipe %s: Fusion cannot take the batch now (HTTP %ld: %s); sending it again "
                    "in %.0f s",
                    b->p->id, st, fu_buf_str(&out), pause);
            if (!nap_for(b->p, pause, false) || atomic_load(&b->p->lost)) {
                rc = -EPIPE;
                break;
            }
            pause = pause * 2 < 30 ? pause * 2 : 30;
            continue;
        }
        if (st == 419 || st == 404 || st == 409) {
            fu_warn("pipe %s: batch refused (HTTP %ld: %s); the session must start over", b->p->id,
                    st, fu_buf_str(&out));
            mark_lost(b->p);
            rc = -EPIPE;
            break;
        }
        if (st > 0) {
            fu_error("pipe %s: batch refused (HTTP %ld: %s)", b->p->id, st, fu_buf_str(&out));
            rc = -EPROTO;
            break;
        }
        set_error(b->p, "push", body.oom ? "out of memory" : c->err);
        fu_warn("pipe %s: push failed: %s (retrying)", b->p->id, c->err);
        if (body.oom || !nap_for(b->p, 1.0, false) || atomic_load(&b->p->lost)) {
            rc = -EPIPE;
            break;
        }
    }
    fu_buf_free(&body);
    fu_buf_free(&out);
    return rc;
}

struct sender_arg {
    struct batcher *b;
    int k;
};

static void *sender_main(void *arg)
{
    struct sender_arg *a = arg;
    struct batcher *b = a->b;
    for (;;) {
        pthread_mutex_lock(&b->mu);
        while (!b->qcount && !b->closing)
            pthread_cond_wait(&b->cv, &b->mu);
        if (!b->qcount) {
            pthread_mutex_unlock(&b->mu);
            break;
        }
        struct fu_buf rows = b->queue[b->qhead];
        size_t n = b->queue_rows[b->qhead];
        b->qhead = (b->qhead + 1) % SEND_QUEUE;
        b->qcount--;
        bool failed = b->rc != 0;
        pthread_cond_broadcast(&b->cv); /* room in the queue */
        pthread_mutex_unlock(&b->mu);
        int rc = failed ? 0 : post_rows(b, &b->conns[a->k], &rows, n);
        fu_buf_free(&rows);
        if (rc) {
            pthread_mutex_lock(&b->mu);
            if (!b->rc)
                b->rc = rc;
            pthread_cond_broadcast(&b->cv);
            pthread_mutex_unlock(&b->mu);
        }
    }
    return NULL;
}

/* Queues a full batch (taking `rows`), waiting while the queue is full. */
static int enqueue_rows(struct batcher *b, struct fu_buf *rows, size_t n)
{
    pthread_mutex_lock(&b->mu);
    while (b->qcount == SEND_QUEUE && !b->rc)
        pthread_cond_wait(&b->cv, &b->mu);
    int rc = b->rc;
    if (!rc) {
        size_t i = (b->qhead + b->qcount) % SEND_QUEUE;
        b->queue[i] = *rows;
        b->queue_rows[i] = n;
        b->qcount++;
        *rows = (struct fu_buf)FU_BUF_INIT;
        pthread_cond_broadcast(&b->cv);
    }
    pthread_mutex_unlock(&b->mu);
    return rc;
}

/* A v1 FS row's fields (FSRow) into the open row object; deletes carry only the path and
 * its name. */
static void write_row(struct fu_jw *w, const char *path, size_t len, bool attrs, uint64_t size,
                      double mtime, double ctime, bool is_dir)
{
    const char *name = strrchr(path, '/');
    fu_jw_ckey(w, "path");
    fu_jw_str(w, path, len);
    fu_jw_ckey(w, "file_name");
    fu_jw_cstr(w, name ? name + 1 : path);
    if (!attrs)
        return;
    fu_jw_ckey(w, "size");
    fu_jw_uint(w, size);
    fu_jw_ckey(w, "modified_time");
    fu_jw_double(w, mtime);
    fu_jw_ckey(w, "created_time");
    fu_jw_double(w, ctime);
    fu_jw_ckey(w, "is_directory");
    fu_jw_bool(w, is_dir);
}

static int on_entries(void *ctx, const struct fu_scan_entry *v, size_t n)
{
    struct batcher *b = ctx;
    bool audit = !strcmp(b->source, "audit");
    const struct fu_fieldmap *fmap = b->p->fmap;
    struct fu_buf frag = FU_BUF_INIT;
    fu_buf_grow(&frag, n * ROW_BYTES); /* grown once, not copied over and over */
    struct fu_jw w;
    fu_jw_init(&w, &frag);
    uint64_t dirs = 0;
    for (size_t i = 0; i < n; i++) { /* encoded by this worker, without a lock */
        const struct fu_scan_entry *e = &v[i];
        dirs += e->is_dir;
        if (b->arrays) {
            fu_jw_arr_begin(&w);
            fu_jw_str(&w, e->path, e->path_len);
            fu_jw_uint(&w, e->size);
            fu_jw_double(&w, e->mtime);
            fu_jw_double(&w, e->ctime);
            fu_jw_bool(&w, e->is_dir);
            fu_jw_arr_end(&w);
            continue;
        }
        fu_jw_obj_begin(&w);
        if (fmap) { /* the same fields, projected */
            struct fu_fm_row r;
            fu_fm_row_init(&r, e->path, e->path_len, true, e->size, e->mtime, e->ctime, e->is_dir);
            if (audit && e->parent_path[0]) {
                r.present |= FU_FM_BIT(FU_FM_PARENT_PATH) | FU_FM_BIT(FU_FM_PARENT_MTIME);
                r.parent_path = e->parent_path;
                r.parent_path_len = strlen(e->parent_path);
                r.parent_mtime = e->parent_mtime;
            }
            if (audit && e->audit_skipped) {
                r.present |= FU_FM_BIT(FU_FM_AUDIT_SKIPPED);
                r.audit_skipped = true;
            }
            fu_fieldmap_write(fmap, &w, &r);
            fu_jw_obj_end(&w);
            continue;
        }
        write_row(&w, e->path, e->path_len, true, e->size, e->mtime, e->ctime, e->is_dir);
        if (audit && e->parent_path[0]) { /* the parent-mtime check (v1 §3.5) */
            fu_jw_ckey(&w, "parent_path");
            fu_jw_cstr(&w, e->parent_path);
            fu_jw_ckey(&w, "parent_mtime");
            fu_jw_double(&w, e->parent_mtime);
        }
        if (audit && e->audit_skipped) {
            fu_jw_ckey(&w, "audit_skipped");
            fu_jw_bool(&w, true);
        }
        fu_jw_obj_end(&w);
    }
    struct fu_buf take = FU_BUF_INIT;
    size_t take_n = 0;
    atomic_fetch_add(&b->p->walk_rows, n);
    atomic_fetch_add(&b->p->walk_dirs, dirs);
    pthread_mutex_lock(&b->mu);
    int rc = frag.oom ? -ENOMEM : b->rc;
    if (!rc) {
        if (b->rows)
            fu_buf_putc(&b->rows_json, ',');
        else if (!b->rows_json.cap && n) /* room for the batch, at this chunk's row size */
            fu_buf_grow(&b->rows_json,
                        (frag.len / n + 1) *
                            (b->p->batch_size < 100000 ? b->p->batch_size + n : 100000));
        fu_buf_append(&b->rows_json, frag.data, frag.len);
        b->rows += n;
        if (b->rows >= b->p->batch_size) { /* full: this worker sends it */
            take = b->rows_json;
            take_n = b->rows;
            b->rows_json = (struct fu_buf)FU_BUF_INIT;
            b->rows = 0;
        }
    }
    pthread_mutex_unlock(&b->mu);
    fu_buf_free(&frag);
    if (!rc && take_n)
        rc = enqueue_rows(b, &take, take_n);
    fu_buf_free(&take);
    if (!rc && stopping(b->p))
        rc = -ECANCELED;
    if (rc) {
        pthread_mutex_lock(&b->mu);
        if (!b->rc)
            b->rc = rc;
        pthread_mutex_unlock(&b->mu);
    }
    return rc;
}

enum walk_kind { WALK_SNAPSHOT, WALK_AUDIT, WALK_SCAN };

/* Before a walk lists a directory: that the watcher watches it (a snapshot may start while
 * inotify's initial walk is still under way), or that the pipe stops. */
static int gate_dir(void *ctx, const char *path)
{
    struct pipe_rt *p = ctx;
    while (!fu_source_gate(p->src->s, path, 0.25))
        if (stopping(p))
            return -ECANCELED;
    return 0;
}

/* A walk sent to Fusion: the leader's snapshot (then its end marker), the leader's audit
 * (rows with parent mtimes and audit_skipped from the directory-mtime cache, then the end
 * marker and consistency/audit/end), or an on-demand scan of `subpath` (then job_complete
 * with the job id). */
static int walk_send(struct pipe_rt *p, enum walk_kind kind, const char *subpath, bool recursive,
                     const char *job_id)
{
    static const char *const sources[] = {"snapshot", "audit", "on_demand_job"};
    static const char *const names[] = {"snapshot", "audit", "on-demand scan"};
    /* Snapshots and scans send their rows as arrays to a Fusion that takes them (audit rows
     * carry optional fields; a fields_mapping projects its own keys): half the bytes, and
     * neither side spends time on keys. */
    struct batcher b = {.p = p,
                        .source = sources[kind],
                        .arrays = kind != WALK_AUDIT && !p->fmap && atomic_load(&p->fusion_arrays),
                        /* A snapshot or audit is acknowledged as a whole by its end marker,
                         * which this walk must get answered 200 to count (else it walks
                         * again): one sync for the walk instead of one per batch. */
                        .at_end = kind != WALK_SCAN && atomic_load(&p->fusion_at_end)};
    struct fu_scan_stats st = {0};
    double t0 = wall();
    atomic_store(&p->walk_rows, 0);
    atomic_store(&p->walk_dirs, 0);
    atomic_store(&p->walk_started, t0);
    atomic_store(&p->phase, kind == WALK_SNAPSHOT ? PH_SNAPSHOT
                            : kind == WALK_AUDIT  ? PH_AUDIT
                                                  : PH_SCAN);
    pthread_mutex_init(&b.mu, NULL);
    pthread_cond_init(&b.cv, NULL);
    for (; b.nconns < SEND_CONNS; b.nconns++) {
        if (fu_hc_init(&b.conns[b.nconns], &p->uris, p->key, p->timeout) < 0)
            break;
        b.conns[b.nconns].sent = &p->bytes_sent;
    }
    if (kind == WALK_AUDIT && b.nconns) { /* before the senders share the connections */
        /* The audit begins at Fusion before the first directory is listed: a file the walk
         * misses because it was made meanwhile reaches Fusion by a realtime event after
         * that start, which keeps the audit's end from deleting it (stale-evidence
         * protection). v1's agent leaves the start to the first audit row, which may come
         * after such events. A failure here leaves it so too. */
        struct fu_buf out = FU_BUF_INIT;
        long st =
            fu_hc_call(&b.conns[0], "POST", "/api/v1/pipe/consistency/audit/start", "{}", 2, &out);
        if (st != 200)
            fu_warn("pipe %s: the audit's start was refused (%ld: %s); it starts with its first "
                    "rows",
                    p->id, st, st < 0 ? b.conns[0].err : fu_buf_str(&out));
        fu_buf_free(&out);
    }
    struct sender_arg args[SEND_CONNS];
    for (int k = 0; k < b.nconns; k++) {
        args[k] = (struct sender_arg){&b, k};
        if (pthread_create(&b.senders[b.nsenders], NULL, sender_main, &args[k]) != 0)
            break;
        b.nsenders++;
    }
    if (!b.nsenders) {
        for (int i = 0; i < b.nconns; i++)
            fu_hc_free(&b.conns[i]);
        pthread_cond_destroy(&b.cv);
        pthread_mutex_destroy(&b.mu);
        atomic_store(&p->phase, PH_IDLE);
        return -ENOMEM;
    }
    fu_buf_printf(&b.path, "/api/v1/pipe/ingest/%s/events", p->sid);
    struct fu_scan_opts o = {
        .root = p->root,
        .subpath = subpath,
        .file_pattern = p->file_pattern,
        .exclude = &p->exclude,
        .workers = p->workers,
        .cross_filesystems = !p->one_filesystem,
        .recursive = recursive,
        .cache = kind != WALK_SCAN ? p->dircache : NULL,
        .cache_fill = kind == WALK_SNAPSHOT,
        .chunk = p->batch_size < 256 ? p->batch_size : 256,
        .before_dir = gate_dir,
        .before_ctx = p,
    };
    /* startup_mode: message-only (v1): the leader sends no snapshot rows, only the end
     * marker, so that the view serves what realtime events and audits bring. */
    bool skip = kind == WALK_SNAPSHOT && p->message_only;
    if (skip)
        fu_info("pipe %s: snapshot skipped (startup_mode: message-only)", p->id);
    else
        fu_info("pipe %s: %s of %s%s starts", p->id, names[kind], p->root,
                subpath && strcmp(subpath, "/") ? subpath : "");
    if (o.cache && !skip)
        fu_dircache_begin(o.cache);
    int rc = skip ? 0 : fu_scan(&o, on_entries, &b, &st);
    if (!rc && b.rows)
        rc = enqueue_rows(&b, &b.rows_json, b.rows);
    pthread_mutex_lock(&b.mu); /* the senders drain the queue, then stop */
    b.closing = true;
    pthread_cond_broadcast(&b.cv);
    pthread_mutex_unlock(&b.mu);
    for (int k = 0; k < b.nsenders; k++)
        pthread_join(b.senders[k], NULL);
    for (size_t i = 0; i < b.qcount; i++) /* left after a failure */
        fu_buf_free(&b.queue[(b.qhead + i) % SEND_QUEUE]);
    if (!rc)
        rc = b.rc;
    struct fu_buf body = FU_BUF_INIT, out = FU_BUF_INIT;
    if (!rc) {
        struct fu_jw w;
        fu_jw_init(&w, &body);
        fu_jw_obj_begin(&w);
        fu_jw_ckey(&w, "session_id");
        fu_jw_cstr(&w, p->sid);
        fu_jw_ckey(&w, "source_type");
        fu_jw_cstr(&w, kind == WALK_SCAN ? "job_complete" : sources[kind]);
        fu_jw_ckey(&w, "is_end");
        fu_jw_bool(&w, kind != WALK_SCAN);
        put_seq(&w, session_seq(p, p->sid));
        if (kind == WALK_SCAN) {
            fu_jw_ckey(&w, "metadata");
            fu_jw_obj_begin(&w);
            fu_jw_ckey(&w, "job_id");
            fu_jw_cstr(&w, job_id);
            fu_jw_ckey(&w, "scan_path");
            fu_jw_cstr(&w, subpath);
            fu_jw_obj_end(&w);
        }
        fu_jw_ckey(&w, "events");
        fu_jw_arr_begin(&w);
        fu_jw_arr_end(&w);
        fu_jw_obj_end(&w);
        long status = fu_hc_call(&b.conns[0], "POST", b.path.data, body.data, body.len, &out);
        if (status == 200 && kind == WALK_AUDIT)
            status = fu_hc_call(&b.conns[0], "POST", "/api/v1/pipe/consistency/audit/end", "{}", 2,
                                &out);
        if (status == 200) {
            rc = 0;
        } else {
            const char *why = status < 0 ? b.conns[0].err : fu_buf_str(&out);
            set_error(p, "end of walk", why);
            fu_warn("pipe %s: the end of the %s was refused (%ld: %s)", p->id, names[kind], status,
                    why);
            if (status == 409 || status == 419 || status == 404) { /* no longer leading */
                mark_lost(p);
                rc = -EPIPE;
            } else {
                rc = -EPROTO; /* retried after a backoff, not at once */
            }
        }
    }
    if (rc < 0 && kind != WALK_SCAN)
        cache_reload(p); /* this walk's mtimes may be of rows that never arrived */
    else if (!rc && kind != WALK_SCAN && !skip)
        cache_save(p);
    if (!rc)
        fu_info("pipe %s: %s done: %llu directories, %llu files, %llu errors in %.1f s", p->id,
                names[kind], (unsigned long long)st.dirs, (unsigned long long)st.files,
                (unsigned long long)st.errors, wall() - t0);
    else if (rc == -ENOENT || rc == -EACCES || rc == -ENOTDIR)
        fu_error("pipe %s: cannot scan %s: %s", p->id, p->root, strerror(-rc));
    atomic_store(&p->phase, PH_IDLE);
    fu_buf_free(&body);
    fu_buf_free(&out);
    fu_buf_free(&b.rows_json);
    fu_buf_free(&b.path);
    for (int i = 0; i < b.nconns; i++)
        fu_hc_free(&b.conns[i]);
    pthread_cond_destroy(&b.cv);
    pthread_mutex_destroy(&b.mu);
    return rc;
}

/* The leader's sentinel: Fusion's suspect files, stat'ed now, as feedback. */
static int sentinel(struct pipe_rt *p, struct fu_hc *c)
{
    struct fu_buf out = FU_BUF_INIT, body = FU_BUF_INIT, path = FU_BUF_INIT;
    long st = fu_hc_call(c, "GET", "/api/v1/pipe/consistency/sentinel/tasks", NULL, 0, &out);
    int rc = st == 200 ? 0 : -EPIPE;
    struct fu_jr r;
    fu_jr_init(&r, fu_buf_str(&out), out.len);
    struct fu_jw w;
    fu_jw_init(&w, &body);
    fu_jw_obj_begin(&w);
    fu_jw_ckey(&w, "type");
    fu_jw_cstr(&w, "suspect_update");
    fu_jw_ckey(&w, "updates");
    fu_jw_arr_begin(&w);
    size_t n = 0;
    enum fu_json_tok t = rc == 0 ? fu_jr_next(&r) : FU_JSON_ERROR;
    while (t == FU_JSON_OBJ_BEGIN && (t = fu_jr_next(&r)) == FU_JSON_KEY) {
        bool paths = r.str_len == 5 && !memcmp(r.str, "paths", 5);
        t = fu_jr_next(&r);
        if (!paths || t != FU_JSON_ARR_BEGIN) {
            if (fu_jr_skip(&r) < 0)
                break;
            t = FU_JSON_OBJ_BEGIN;
            continue;
        }
        while ((t = fu_jr_next(&r)) == FU_JSON_STRING) {
            fu_buf_reset(&path);
            fu_buf_append(&path, r.str, r.str_len);
            const char *rel = path.data[0] == '/' && path.data[1] ? path.data + 1 : ".";
            struct stat sb;
            int fd = open(p->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            bool there = fd >= 0 && fstatat(fd, rel, &sb, AT_SYMLINK_NOFOLLOW) == 0;
            if (fd >= 0)
                close(fd);
            fu_jw_obj_begin(&w);
            fu_jw_ckey(&w, "path");
            fu_jw_str(&w, path.data, path.len);
            fu_jw_ckey(&w, "status");
            fu_jw_cstr(&w, there ? "exists" : "missing");
            fu_jw_ckey(&w, "mtime");
            fu_jw_double(&w, there ? (double)sb.st_mtim.tv_sec + sb.st_mtim.tv_nsec / 1e9 : 0);
            if (there) {
                fu_jw_ckey(&w, "size");
                fu_jw_uint(&w, (uint64_t)sb.st_size);
            }
            fu_jw_obj_end(&w);
            n++;
        }
        t = FU_JSON_OBJ_BEGIN;
    }
    fu_jr_free(&r);
    fu_jw_arr_end(&w);
    fu_jw_obj_end(&w);
    if (!rc && n) {
        st = fu_hc_call(c, "POST", "/api/v1/pipe/consistency/sentinel/feedback", body.data,
                        body.len, &out);
        rc = st == 200 ? 0 : -EPIPE;
        fu_debug("pipe %s: sentinel checked %zu suspect files", p->id, n);
    }
    fu_buf_free(&out);
    fu_buf_free(&body);
    fu_buf_free(&path);
    return rc;
}

/* ------------------------------------------------------------ realtime */

/* A realtime batch being written: consecutive rows of one kind share an event. */
struct rt_batch {
    struct fu_jw w;
    long long index;
    int kind; /* -1 before the first row, else the op of the open event */
    const struct fu_fieldmap *fmap;
};

static void rt_row(void *ctx, const struct fu_watch_row *r)
{
    struct rt_batch *b = ctx;
    bool del = r->op == FU_WATCH_DELETE;
    if (b->kind != (int)r->op) {
        if (b->kind >= 0) {
            fu_jw_arr_end(&b->w);
            fu_jw_obj_end(&b->w);
        }
        b->kind = (int)r->op;
        fu_jw_obj_begin(&b->w);
        fu_jw_ckey(&b->w, "event_type");
        fu_jw_cstr(&b->w, del ? "delete" : "update");
        fu_jw_ckey(&b->w, "message_source");
        fu_jw_cstr(&b->w, "realtime");
        fu_jw_ckey(&b->w, "event_schema");
        fu_jw_cstr(&b->w, "fs");
        fu_jw_ckey(&b->w, "table");
        fu_jw_cstr(&b->w, "files");
        fu_jw_ckey(&b->w, "index");
        fu_jw_int(&b->w, b->index);
        fu_jw_ckey(&b->w, "rows");
        fu_jw_arr_begin(&b->w);
    }
    fu_jw_obj_begin(&b->w);
    if (b->fmap) { /* the same fields, projected */
        struct fu_fm_row m;
        fu_fm_row_init(&m, r->path, r->path_len, !del, r->size, r->mtime, r->ctime, r->is_dir);
        if (!del) {
            m.present |= FU_FM_BIT(FU_FM_IS_ATOMIC_WRITE);
            m.is_atomic_write = r->atomic;
        }
        fu_fieldmap_write(b->fmap, &b->w, &m);
        fu_jw_obj_end(&b->w);
        return;
    }
    write_row(&b->w, r->path, r->path_len, !del, r->size, r->mtime, r->ctime, r->is_dir);
    if (!del) {
        fu_jw_ckey(&b->w, "is_atomic_write");
        fu_jw_bool(&b->w, r->atomic);
    }
    fu_jw_obj_end(&b->w);
}

/* The realtime thread's state. Rows go to Fusion from the bus, or, while Fusion cannot be
 * reached, through the spool: the thread then moves the bus's rows to the spool's end as
 * they come (so the bus never overflows during an outage), and once Fusion answers it sends
 * the spool's rows, oldest first, before anything newer from the bus. While the spool holds
 * rows, new ones go behind them: the order the kernel reported is kept. */
struct rt {
    struct pipe_rt *p;
    struct fu_hc c;
    struct fu_bus *bus;
    struct fu_buf body, out;
    /* The batch on its way: sent again byte for byte (with its seq) until Fusion answers,
     * while its session lasts. */
    bool pending, from_spool;
    char sid[128];
    size_t n;
    uint64_t bus_upto;
    struct fu_spool_pos spool_upto;
    struct fu_spool *spool; /* NULL: memory only (spool_max_mb: 0, or no home) */
    int spill_rc;           /* the first append error of a spill */
    uint64_t delivered;     /* spooled rows delivered since the spool was last empty */
    bool told;              /* the outage's first spooled rows were logged */
    bool sending_told;      /* "delivering the spool's N other events" was logged */
    bool discarding;        /* the spool was lost: rows are dropped until a new session
                               opens (its leader snapshots) */
    char discard_sid[128];  /* the session open when it was lost */
    double busy_warned;     /* monotonic time of the last "Fusion cannot take ..." */
};

static double mb_of(double bytes)
{
    return bytes / 1048576.0;
}

/* The spool overflowed, failed, or was found damaged while read: its rows are lost, so the
 * pipe resyncs: the session starts over and its leader snapshots again. Rows are dropped
 * until that new session opens: its snapshot covers them. */
static void spool_lost(struct rt *t, int rc)
{
    struct pipe_rt *p = t->p;
    unsigned long long rows = fu_spool_rows(t->spool);
    if (rc == -ENOSPC)
        fu_error("pipe %s: the spool %s is full (spool_max_mb: %g): %llu spooled events dropped; "
                 "the leader resyncs (snapshots again) at the next session",
                 p->id, fu_spool_dir(t->spool), mb_of(p->spool_max), rows);
    else
        fu_error("pipe %s: the spool %s failed (%s): %llu spooled events dropped; the leader "
                 "resyncs (snapshots again) at the next session",
                 p->id, fu_spool_dir(t->spool),
                 rc == -EBADMSG ? "a record read back is damaged" : strerror(-rc), rows);
    set_error(p, "spool", rc == -ENOSPC ? "full: events dropped, resync" : "events lost: resync");
    fu_spool_drop(t->spool);
    if (t->pending && t->from_spool)
        t->pending = false;
    t->delivered = 0;
    t->told = t->sending_told = false;
    t->discarding = true;
    pthread_mutex_lock(&p->mu);
    snprintf(t->discard_sid, sizeof(t->discard_sid), "%s", p->sid);
    if (p->sid[0]) { /* this session will not get the rows: a new one snapshots */
        atomic_store(&p->lost, true);
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    owe_resync(p); /* after the loss: the old session must not start the snapshot */
}

static void spill_row(void *ctx, const struct fu_watch_row *r)
{
    struct rt *t = ctx;
    if (!t->spill_rc)
        t->spill_rc = fu_spool_append(t->spool, r); /* memory only: fine under the bus lock */
}

/* Moves the rows the bus holds for this pipe to the end of the spool. */
static void spill(struct rt *t)
{
    struct pipe_rt *p = t->p;
    bool was_empty = !fu_spool_rows(t->spool);
    for (;;) {
        uint64_t upto;
        t->spill_rc = 0;
        size_t n = fu_bus_peek(t->bus, p->sub, 1024, spill_row, t, &upto);
        int rc = t->spill_rc ? t->spill_rc : fu_spool_flush(t->spool);
        fu_bus_commit(t->bus, p->sub, upto); /* in the spool, or lost with it */
        if (n && t->pending && !t->from_spool)
            t->pending = false; /* its rows are in the spool now */
        if (rc < 0) {
            spool_lost(t, rc);
            return;
        }
        if (!n)
            break;
    }
    if (was_empty && fu_spool_rows(t->spool) && !t->told) {
        t->told = true;
        fu_warn("pipe %s: Fusion unreachable: realtime events spooled to %s (spool_max_mb: %g)",
                p->id, fu_spool_dir(t->spool), mb_of(p->spool_max));
    }
}

static void no_row(void *ctx, const struct fu_watch_row *r)
{
    (void)ctx;
    (void)r;
}

/* Builds the next batch for session `sid`: the spool's oldest rows while it holds any, else
 * the bus's. Returns its row count (0: nothing to send, or the session changed). */
static size_t build(struct rt *t, const char *sid)
{
    struct pipe_rt *p = t->p;
    struct rt_batch b = {.index = storage_ms(p), .kind = -1, .fmap = p->fmap};
    fu_buf_reset(&t->body);
    fu_jw_init(&b.w, &t->body);
    fu_jw_obj_begin(&b.w);
    fu_jw_ckey(&b.w, "session_id");
    fu_jw_cstr(&b.w, sid);
    fu_jw_ckey(&b.w, "source_type");
    fu_jw_cstr(&b.w, "message");
    fu_jw_ckey(&b.w, "is_end");
    fu_jw_bool(&b.w, false);
    fu_jw_ckey(&b.w, "events");
    fu_jw_arr_begin(&b.w);
    long n;
    t->from_spool = t->spool && fu_spool_rows(t->spool);
    if (t->from_spool) {
        n = fu_spool_peek(t->spool, p->batch_size, rt_row, &b, &t->spool_upto);
        if (n <= 0) { /* 0: it counts rows its files do not hold */
            spool_lost(t, n < 0 ? (int)n : -EBADMSG);
            return 0;
        }
    } else {
        n = (long)fu_bus_peek(t->bus, p->sub, p->batch_size, rt_row, &b, &t->bus_upto);
        if (!n) {
            fu_bus_commit(t->bus, p->sub, t->bus_upto); /* only merged-away rows were left */
            return 0;
        }
    }
    fu_jw_arr_end(&b.w);
    fu_jw_obj_end(&b.w);
    fu_jw_arr_end(&b.w);
    put_seq(&b.w, session_seq(p, sid));
    fu_jw_obj_end(&b.w);
    snprintf(t->sid, sizeof(t->sid), "%s", sid);
    t->n = (size_t)n;
    t->pending = true;
    return t->n;
}

/* Sends what this pipe has to send, while a session is open: the spool first, then the
 * bus. Returns true when nothing is left (the thread then sleeps until woken). */
static bool realtime_send(struct rt *t)
{
    struct pipe_rt *p = t->p;
    for (;;) {
        char sid[sizeof(p->sid)];
        pthread_mutex_lock(&p->mu);
        memcpy(sid, p->sid, sizeof(sid));
        bool usable = sid[0] && !atomic_load(&p->lost) && !p->stop;
        pthread_mutex_unlock(&p->mu);
        if (t->pending && (!usable || strcmp(t->sid, sid)))
            t->pending = false; /* made for a session that is gone: built again */
        if (t->discarding) {
            if (!usable || !strcmp(sid, t->discard_sid)) { /* the next session's snapshot
                                                               covers these rows */
                uint64_t upto;
                while (fu_bus_peek(t->bus, p->sub, 4096, no_row, NULL, &upto))
                    fu_bus_commit(t->bus, p->sub, upto);
                fu_bus_commit(t->bus, p->sub, upto);
                return true;
            }
            t->discarding = false;
        }
        size_t depth = fu_bus_depth(t->bus, p->sub);
        if (t->spool && depth &&
            (fu_spool_rows(t->spool) || atomic_load(&p->unreachable) ||
             (!usable && depth > fu_bus_capacity(t->bus) / 2))) {
            spill(t);
            continue; /* the spool may have overflowed */
        }
        bool held = depth || (t->spool && fu_spool_rows(t->spool));
        if (!usable)
            return !held; /* held until the next session */
        if (!t->pending && !build(t, sid))
            return fu_bus_depth(t->bus, p->sub) == 0 && !(t->spool && fu_spool_rows(t->spool));
        struct fu_buf path = FU_BUF_INIT;
        fu_buf_printf(&path, "/api/v1/pipe/ingest/%s/events", t->sid);
        long st = t->body.oom || path.oom
                      ? -1
                      : fu_hc_call(&t->c, "POST", path.data, t->body.data, t->body.len, &t->out);
        fu_buf_free(&path);
        if (st == 200 || (st > 0 && st != 419 && st != 404 && !transient(st))) {
            if (st == 200) {
                atomic_fetch_add(&p->rows_sent, t->n);
                atomic_store(&p->unreachable, false);
            } else { /* refused as a whole: it would be refused again */
                fu_error("pipe %s: realtime batch refused (HTTP %ld: %s); %zu events dropped, "
                         "the leader resyncs",
                         p->id, st, fu_buf_str(&t->out), t->n);
                owe_resync(p);
            }
            t->pending = false;
            if (!t->from_spool) {
                fu_bus_commit(t->bus, p->sub, t->bus_upto);
                continue;
            }
            int rc = fu_spool_commit(t->spool, &t->spool_upto);
            if (rc < 0) {
                spool_lost(t, rc);
                continue;
            }
            t->delivered += st == 200 ? t->n : 0;
            if (fu_spool_rows(t->spool) && !t->sending_told) {
                t->sending_told = true;
                fu_info("pipe %s: Fusion takes events again: delivering the spool's %llu other "
                        "events, oldest first, before newer ones",
                        p->id, (unsigned long long)fu_spool_rows(t->spool));
            }
            if (!fu_spool_rows(t->spool)) {
                fu_info("pipe %s: %llu spooled events delivered; the spool is empty", p->id,
                        (unsigned long long)t->delivered);
                t->delivered = 0;
                t->told = t->sending_told = false;
            }
        } else if (st == 419 || st == 404) {
            pthread_mutex_lock(&p->mu);
            if (!strcmp(p->sid, t->sid)) { /* not a late answer about an older session */
                atomic_store(&p->lost, true);
                pthread_cond_broadcast(&p->cv);
            }
            pthread_mutex_unlock(&p->mu);
            t->pending = false;
            return false;
        } else { /* not now (503, 507, ...) or not through: kept, sent again in a second */
            atomic_store(&p->unreachable, true);
            const char *why = st > 0 ? fu_buf_str(&t->out) : t->c.err;
            set_error(p, "push", t->body.oom ? "out of memory" : why);
            if (t->body.oom)
                t->pending = false; /* built again */
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            /* once a minute, not at each retry */
            if (st > 0 && (!t->busy_warned || (double)now.tv_sec - t->busy_warned >= 60)) {
                t->busy_warned = (double)now.tv_sec;
                fu_warn("pipe %s: Fusion cannot take realtime events now (HTTP %ld: %s); %s", p->id,
                        st, why,
                        t->spool ? "they go to the spool and are sent again once it can"
                                 : "they stay queued and go again every second");
            }
            return false;
        }
    }
}

/* Opens the spool a previous run may have left: its rows go first. Damage, or a spool for
 * other source settings, means rows were lost: the pipe resyncs. */
static void spool_start(struct rt *t)
{
    struct pipe_rt *p = t->p;
    if (!p->spool_dir)
        return;
    struct fu_spool_info info;
    uint64_t max = p->spool_max > 0 ? (uint64_t)p->spool_max : UINT64_MAX;
    int rc = fu_spool_open(&t->spool, p->spool_dir, p->walk_sig, max, 0, &info);
    if (rc < 0) {
        fu_error("pipe %s: cannot open the spool %s: %s; realtime events wait in memory only",
                 p->id, p->spool_dir, strerror(-rc));
        t->spool = NULL;
        return;
    }
    if (info.foreign || info.damaged) {
        fu_error("pipe %s: the spool %s %s: %s; events may be lost, the leader resyncs", p->id,
                 p->spool_dir, info.foreign ? "is not for these settings" : "is damaged",
                 info.detail);
        owe_resync(p);
    }
    if (p->spool_max <= 0) { /* spool_max_mb: 0 */
        if (info.rows) {
            fu_warn("pipe %s: spool_max_mb is 0, but the spool %s holds %llu events from before: "
                    "dropped, the leader resyncs",
                    p->id, p->spool_dir, (unsigned long long)info.rows);
            owe_resync(p);
        }
        fu_spool_drop(t->spool);
        fu_spool_close(t->spool);
        t->spool = NULL;
    } else if (info.rows) {
        fu_info("pipe %s: the spool %s holds %llu events (%llu bytes) from before: they go to "
                "Fusion first",
                p->id, p->spool_dir, (unsigned long long)info.rows, (unsigned long long)info.bytes);
        t->told = true;
    }
}

/* At a stop: the rows still on the bus go to the spool, for the next start (a removed
 * pipe's spool is deleted instead). */
static void spool_stop(struct rt *t)
{
    struct pipe_rt *p = t->p;
    if (!t->spool)
        return;
    pthread_mutex_lock(&p->mu);
    bool discard = p->discard_spool;
    pthread_mutex_unlock(&p->mu);
    if (discard) {
        if (fu_spool_rows(t->spool))
            fu_warn("pipe %s: removed from the config: its spool %s (%llu events) is deleted",
                    p->id, fu_spool_dir(t->spool), (unsigned long long)fu_spool_rows(t->spool));
        fu_spool_drop(t->spool);
        if (p->resync_file)
            unlink(p->resync_file);
    } else {
        if (!t->discarding && fu_bus_depth(t->bus, p->sub))
            spill(t);
        if (fu_spool_rows(t->spool))
            fu_info("pipe %s: %llu realtime events left in the spool %s for the next start", p->id,
                    (unsigned long long)fu_spool_rows(t->spool), fu_spool_dir(t->spool));
    }
    fu_spool_close(t->spool);
    t->spool = NULL;
}

/* The pipe's realtime thread: sends what the source's bus holds for it (through the spool
 * while Fusion is away), follows the source's readiness (the leader's snapshot waits for
 * the watches), and turns a bus overflow into a resync. Blocks in poll() while there is
 * nothing to do. */
static void *realtime_main(void *arg)
{
    struct pipe_rt *p = arg;
    struct rt t = {.p = p, .body = FU_BUF_INIT, .out = FU_BUF_INIT};
    if (fu_hc_init(&t.c, &p->uris, p->key, p->timeout) < 0)
        return NULL;
    t.c.sent = &p->bytes_sent;
    t.bus = fu_source_bus(p->src->s);
    spool_start(&t);
    bool ready = false, done = true;
    while (!stopping(p)) {
        if (fu_source_ready(p->src->s) != ready) {
            ready = !ready;
            pthread_mutex_lock(&p->mu);
            p->kick = true; /* a snapshot waiting for the watches may start */
            pthread_cond_broadcast(&p->cv);
            pthread_mutex_unlock(&p->mu);
        }
        if (fu_bus_take_overflow(t.bus, p->sub)) {
            fu_warn("pipe %s: realtime events were lost (%s); %s", p->id,
                    "the bus or the kernel's queue overflowed, or the watches were reopened",
                    atomic_load(&p->leader) ? "the leader resyncs"
                                            : "the leader's next audit recovers them");
            set_error(p, "realtime", "events lost: resync");
            owe_resync(p);
        }
        done = realtime_send(&t);
        atomic_store(&p->pending_count, fu_bus_depth(t.bus, p->sub));
        atomic_store(&p->spooled, t.spool ? fu_spool_rows(t.spool) : 0);
        atomic_store(&p->spool_bytes, t.spool ? fu_spool_bytes(t.spool) : 0);
        struct pollfd fds[2] = {{.fd = fu_bus_sub_fd(p->sub), .events = POLLIN},
                                {.fd = p->wakefd, .events = POLLIN}};
        /* No timer while idle; while rows wait for Fusion, retry once a second. */
        if (poll(fds, 2, done ? -1 : 1000) < 0 && errno != EINTR)
            break;
        eventfd_t v;
        if (fds[0].revents & POLLIN)
            eventfd_read(fds[0].fd, &v);
        if (fds[1].revents & POLLIN)
            eventfd_read(fds[1].fd, &v);
    }
    spool_stop(&t);
    atomic_store(&p->spooled, 0);
    atomic_store(&p->spool_bytes, 0);
    fu_buf_free(&t.body);
    fu_buf_free(&t.out);
    fu_hc_free(&t.c);
    return NULL;
}

/* ------------------------------------------------------------ config commands */

/* The name of the file to report or update: the one Fusion gave, else the activated file
 * when it lies in the config dir. NULL when there is none (or on OOM). */
static char *config_name(struct fu_agent *a, const char *given)
{
    if (given && given[0])
        return strdup(given);
    pthread_mutex_lock(&a->cfg_mu);
    const char *act = a->active_file ? strrchr(a->active_file, '/') : NULL;
    size_t dl = a->dir ? strlen(a->dir) : 0;
    bool in_dir =
        act && dl && (size_t)(act - a->active_file) == dl && !strncmp(a->active_file, a->dir, dl);
    char *name = in_dir ? strdup(act + 1) : NULL;
    pthread_mutex_unlock(&a->cfg_mu);
    return name;
}

/* A copy of the config dir's path, for file work without the lock. */
static char *config_dir(struct fu_agent *a)
{
    pthread_mutex_lock(&a->cfg_mu);
    char *dir = strdup(a->dir ? a->dir : "");
    pthread_mutex_unlock(&a->cfg_mu);
    return dir;
}

/* Sends a config_report batch: `filename` (NULL = the activated file) of the config dir,
 * which Fusion keeps on the session (v1 §2.7). `asked`: Fusion asked for it (else it is the
 * report of a new session, skipped quietly when the activated file lies outside the dir). */
static void report_config(struct pipe_rt *p, struct fu_hc *c, const char *filename, bool asked)
{
    char *name = config_name(p->agent, filename), *dir = config_dir(p->agent);
    struct fu_buf yaml = FU_BUF_INIT, body = FU_BUF_INIT, out = FU_BUF_INIT;
    int rc = !dir                            ? -ENOMEM
             : !name                         ? -ENOENT
             : !fu_config_file_name_ok(name) ? -EINVAL
                                             : fu_cfgupd_read(dir, name, &yaml);
    free(dir);
    if (rc < 0) {
        if (asked || name)
            fu_warn("pipe %s: cannot report config file '%s': %s", p->id,
                    name ? name : "(the activated file is outside the config dir)",
                    rc == -EINVAL ? "not a config file name" : strerror(-rc));
        free(name);
        fu_buf_free(&yaml);
        return;
    }
    char sid[sizeof(p->sid)];
    pthread_mutex_lock(&p->mu);
    memcpy(sid, p->sid, sizeof(sid));
    pthread_mutex_unlock(&p->mu);
    struct fu_jw w;
    fu_jw_init(&w, &body);
    fu_jw_obj_begin(&w);
    fu_jw_ckey(&w, "session_id");
    fu_jw_cstr(&w, sid);
    put_seq(&w, session_seq(p, sid));
    fu_jw_ckey(&w, "source_type");
    fu_jw_cstr(&w, "config_report");
    fu_jw_ckey(&w, "is_end");
    fu_jw_bool(&w, false);
    fu_jw_ckey(&w, "events");
    fu_jw_arr_begin(&w);
    fu_jw_arr_end(&w);
    fu_jw_ckey(&w, "metadata");
    fu_jw_obj_begin(&w);
    fu_jw_ckey(&w, "filename");
    fu_jw_cstr(&w, name);
    fu_jw_ckey(&w, "config_yaml");
    fu_jw_str(&w, yaml.data ? yaml.data : "", yaml.len);
    fu_jw_obj_end(&w);
    fu_jw_obj_end(&w);
    struct fu_buf path = FU_BUF_INIT;
    fu_buf_printf(&path, "/api/v1/pipe/ingest/%s/events", sid);
    long st = body.oom ? -1 : fu_hc_call(c, "POST", path.data, body.data, body.len, &out);
    if (st != 200)
        fu_warn("pipe %s: the config report was refused: %s", p->id,
                st < 0 ? c->err : fu_buf_str(&out));
    else
        fu_debug("pipe %s: reported config file %s (%zu bytes)", p->id, name, yaml.len);
    fu_buf_free(&path);
    fu_buf_free(&yaml);
    fu_buf_free(&body);
    fu_buf_free(&out);
    free(name);
}

/* update_config: validate the new text with the rest of the config, keep the old file as
 * <name>.bak, write it, and reload (as SIGHUP), as v1. A refusal is logged line by line and
 * the running config stays. The new file is reported back either way. */
static void update_config(struct pipe_rt *p, struct fu_hc *c, const char *filename,
                          const char *yaml)
{
    char *name = config_name(p->agent, filename);
    if (!name) {
        fu_error("pipe %s: update_config without a file name refused: the activated file is "
                 "outside the config dir",
                 p->id);
        return;
    }
    struct fu_diags d;
    fu_diags_init(&d);
    /* A copy of the names, so that the lock a reload takes is not held across the file
     * work; updates run one at a time. */
    struct fu_agent *a = p->agent;
    pthread_mutex_lock(&a->update_mu);
    struct fu_strv files = {0};
    pthread_mutex_lock(&a->cfg_mu);
    for (size_t i = 0; i < a->files.n; i++)
        fu_strv_push(&files, a->files.v[i]);
    char *dir = strdup(a->dir ? a->dir : ""),
         *active = a->active_file ? strdup(a->active_file) : NULL;
    bool copied = files.n == a->files.n && dir && (!a->active_file || active);
    pthread_mutex_unlock(&a->cfg_mu);
    int rc = copied ? fu_cfgupd_apply(dir, &files, active, name, yaml, strlen(yaml), &d) : -ENOMEM;
    pthread_mutex_unlock(&a->update_mu);
    fu_strv_free(&files);
    free(dir);
    free(active);
    for (size_t i = 0; i < d.n; i++) {
        char *line = fu_diag_format(&d.v[i]);
        if (line && d.v[i].sev == FU_SEV_ERROR)
            fu_error("pipe %s: update_config: %s", p->id, line);
        else if (line)
            fu_warn("pipe %s: update_config: %s", p->id, line);
        free(line);
    }
    if (rc == 0) {
        fu_info("pipe %s: Fusion updated config file %s (the old one is %s.bak); reloading", p->id,
                name, name);
        fu_signals_raise(FU_SIG_HUP);
    } else {
        fu_error("pipe %s: update_config of %s refused (%s); the running config is unchanged",
                 p->id, name, rc == -EINVAL ? "invalid config" : strerror(-rc));
        set_error(p, "update_config", rc == -EINVAL ? "invalid config" : strerror(-rc));
    }
    fu_diags_free(&d);
    if (rc == 0)
        report_config(p, c, name, true);
    free(name);
}

/* ------------------------------------------------------------ the pipe */

static void *pipe_main(void *arg)
{
    struct pipe_rt *p = arg;
    struct fu_hc c;
    if (fu_hc_init(&c, &p->uris, p->key, p->timeout) < 0) {
        fu_error("pipe %s: out of memory", p->id);
        return NULL;
    }
    c.sent = &p->bytes_sent;
    /* v1's retry settings: error_retry_interval x backoff_multiplier^n up to
     * max_backoff_seconds, with full jitter */
    struct fu_backoff bo = {.base = p->retry_base,
                            .cap = p->retry_cap,
                            .mult = p->retry_mult,
                            .seed = (uint64_t)getpid() ^ (uint64_t)(uintptr_t)p};
    int errors = 0; /* consecutive failures to open a session */
    struct fu_buf out = FU_BUF_INIT;
    /* The source watches first, so that nothing changed during the snapshot is missed. */
    if (pthread_create(&p->rt, NULL, realtime_main, p) == 0)
        p->rt_running = true;
    while (!stopping(p)) {
        atomic_store(&p->phase, PH_CONNECTING);
        if (!open_session(p, &c, &out)) {
            if (!atomic_exchange(&p->unreachable, true))
                eventfd_write(p->wakefd, 1); /* the realtime thread spools what it holds */
            if (++errors == p->max_errors)
                fu_error("pipe %s: %d attempts in a row to open a session failed; still "
                         "retrying, every %.0f s at most",
                         p->id, errors, p->retry_cap);
            nap(p, fu_backoff_next(&bo));
            continue;
        }
        if (errors >= p->max_errors)
            fu_info("pipe %s: Fusion answers again after %d failed attempts", p->id, errors);
        errors = 0;
        fu_backoff_reset(&bo);
        measure_drift(p);
        report_config(p, &c, NULL, false); /* v1 reports its config on every new session */
        atomic_store(&p->phase, PH_IDLE);
        if (pthread_create(&p->hb, NULL, heartbeat_main, p) == 0)
            p->hb_running = true;
        bool synced = false, began_leading = atomic_load(&p->leader), lost_events = false;
        double next_audit = 0, next_sentinel = 0;
        cache_for_session(p);
        while (!stopping(p) && !atomic_load(&p->lost)) {
            pthread_mutex_lock(&p->mu);
            bool resync = p->resync;
            if (resync) {
                p->resync = false;
                synced = false;
                lost_events = true;
            }
            struct job job = {0};
            bool have_job = p->njobs > 0;
            if (have_job) {
                job = p->jobs[0];
                memmove(p->jobs, p->jobs + 1, --p->njobs * sizeof(*p->jobs));
            }
            pthread_mutex_unlock(&p->mu);
            if (resync && !atomic_load(&p->leader) && p->resync_file)
                unlink(p->resync_file); /* a follower leaves it to its leader's audit */
            if (have_job) {
                if (job.kind == JOB_SCAN) /* every session scans, leader or not (v1) */
                    walk_send(p, WALK_SCAN, job.path, job.recursive, job.job_id);
                else if (job.kind == JOB_REPORT_CONFIG)
                    report_config(p, &c, job.path, true);
                else
                    update_config(p, &c, job.path, job.yaml);
                job_free(&job);
                continue;
            }
            bool leads = atomic_load(&p->leader);
            double audit = !isnan(p->fusion_audit) ? p->fusion_audit : p->audit_interval;
            double sent = !isnan(p->fusion_sentinel) ? p->fusion_sentinel : p->sentinel_interval;
            double now = wall();
            bool ready = fu_source_ready(p->src->s) || !p->rt_running;
            if (leads && !synced && !ready) {
                nap(p, 1.0); /* the realtime thread kicks when the watches are in place */
                continue;
            }
            if (leads && !synced) {
                /* A new session's leader snapshots an empty view. A view Fusion holds already
                 * (it says initial_sync: audit: restored at its start, or kept while agents
                 * came and went) is audited instead, and so is the view a follower promoted
                 * in the middle of its session takes over: reconciled, not sent again; the
                 * audit lists only the directories changed since the cache was made (all of
                 * them with an empty cache). Lost events are a snapshot again, as in v1. */
                int rc;
                if (began_leading && (lost_events || !p->fusion_audits)) {
                    rc = walk_send(p, WALK_SNAPSHOT, NULL, true, NULL);
                    pthread_mutex_lock(&p->mu);
                    bool owed = p->resync; /* lost again during the walk: still owed */
                    pthread_mutex_unlock(&p->mu);
                    if (!rc)
                        lost_events = false;
                    if (!rc && !owed && p->resync_file)
                        unlink(p->resync_file); /* the view is whole again */
                } else {
                    if (began_leading)
                        fu_info("pipe %s: Fusion holds the view already: an audit, not a "
                                "snapshot (%zu directories in the audit cache)",
                                p->id, p->dircache ? fu_dircache_size(p->dircache) : 0);
                    rc = walk_send(p, WALK_AUDIT, NULL, true, NULL);
                }
                synced = rc == 0;
                if (synced) {
                    next_audit = now + audit;
                    next_sentinel = now + sent;
                }
                if (rc < 0 && rc != -EPIPE && rc != -ECANCELED)
                    nap(p, fu_backoff_next(&bo)); /* e.g. the root is missing: try later */
                continue;
            }
            if (leads && audit > 0 && now >= next_audit) {
                walk_send(p, WALK_AUDIT, NULL, true, NULL);
                next_audit = wall() + audit;
                continue;
            }
            if (leads && sent > 0 && now >= next_sentinel) {
                atomic_store(&p->phase, PH_SENTINEL);
                sentinel(p, &c);
                atomic_store(&p->phase, PH_IDLE);
                next_sentinel = wall() + sent;
                continue;
            }
            double until = 3600;
            if (leads && audit > 0)
                until = fmin(until, next_audit - now);
            if (leads && sent > 0)
                until = fmin(until, next_sentinel - now);
            nap(p, until > 0 ? until : 0);
        }
        if (lost_events) { /* not made good in this session (its snapshot failed, or it
                              did not lead): the next one snapshots */
            pthread_mutex_lock(&p->mu);
            p->resync = true;
            pthread_mutex_unlock(&p->mu);
        }
        close_session(p, &c);
        atomic_store(&p->lost, false); /* so that the backoff naps really wait */
    }
    if (p->rt_running) {
        eventfd_write(p->wakefd, 1);
        pthread_join(p->rt, NULL);
        p->rt_running = false;
    }
    /* Stopped for good: its cursor must not hold rows back, nor count their loss. (Taken
     * under p->mu: `status` reads the cursor's depth.) */
    pthread_mutex_lock(&p->mu);
    struct fu_bus_sub *sub = p->sub;
    p->sub = NULL;
    pthread_mutex_unlock(&p->mu);
    fu_bus_unsubscribe(fu_source_bus(p->src->s), sub);
    atomic_store(&p->pending_count, 0);
    atomic_store(&p->phase, PH_STOPPED);
    fu_buf_free(&out);
    fu_hc_free(&c);
    return NULL;
}

/* ------------------------------------------------------------ life cycle */

/* v1's default agent id: this machine's address on the route to Fusion (no packet is sent:
 * a UDP socket is only connected). Falls back to the host name. */
static void default_agent_id(const char *uri, char *out, size_t len)
{
    if (gethostname(out, len - 1) < 0)
        snprintf(out, len, "agent");
    out[len - 1] = '\0';
    const char *h = uri ? strstr(uri, "://") : NULL;
    if (!h)
        return;
    h += 3;
    char host[256], port[16] = "80";
    size_t n = 0;
    if (*h == '[') { /* [ipv6]:port */
        for (h++; *h && *h != ']' && n < sizeof(host) - 1;)
            host[n++] = *h++;
        if (*h == ']')
            h++;
    } else {
        while (*h && *h != ':' && *h != '/' && n < sizeof(host) - 1)
            host[n++] = *h++;
    }
    host[n] = '\0';
    if (*h == ':')
        snprintf(port, sizeof(port), "%.*s", (int)strcspn(h + 1, "/"), h + 1);
    struct addrinfo hints = {.ai_socktype = SOCK_DGRAM}, *ai = NULL;
    if (getaddrinfo(host, port, &hints, &ai) != 0 || !ai)
        return;
    int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
        getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        getnameinfo((struct sockaddr *)&ss, sl, out, (socklen_t)len, NULL, 0, NI_NUMERICHOST);
    if (fd >= 0)
        close(fd);
    freeaddrinfo(ai);
}

static const void *find_item(const struct fu_cfg_vec *v, size_t size, const char *id)
{
    for (size_t i = 0; i < v->n; i++) {
        const struct fu_cfg_item *it = (const void *)((const char *)v->v + i * size);
        if (!strcmp(it->id, id))
            return it;
    }
    return NULL;
}

/* ------------------------------------------------------------ sources */

/* What a source's runtime depends on: pipes whose sources have equal signatures share one. */
static char *source_sig(const struct fu_cfg_source *src)
{
    struct fu_buf b = FU_BUF_INIT;
    fu_buf_printf(&b, "%s\n%s\n%.17g\n%lld\n%d\n%s\n%.17g", src->it.id, src->uri,
                  src->throttle_interval_sec, (long long)src->max_queue_size,
                  (int)src->one_filesystem, src->watcher ? src->watcher : "inotify",
                  src->min_monitoring_window_days);
    for (size_t i = 0; i < src->exclude.n; i++)
        fu_buf_printf(&b, "\n%s", src->exclude.v[i]);
    if (b.oom) {
        fu_buf_free(&b);
        return NULL;
    }
    return b.data ? b.data : strdup("");
}

/* The running source for `src`, started on first use. */
static struct source_ent *source_get(struct fu_agent *a, const struct fu_cfg_source *src,
                                     const struct fu_strv *exclude)
{
    char *sig = source_sig(src);
    if (!sig)
        return NULL;
    for (size_t i = 0; i < a->nsources; i++)
        if (!strcmp(a->sources[i]->sig, sig)) {
            free(sig);
            a->sources[i]->refs++;
            return a->sources[i];
        }
    struct source_ent *e = calloc(1, sizeof(*e));
    struct source_ent **v = realloc(a->sources, (a->nsources + 1) * sizeof(*v));
    if (v)
        a->sources = v;
    struct fu_source_opts o = {
        .id = src->it.id,
        .root = src->uri,
        .exclude = exclude,
        .throttle_sec = src->throttle_interval_sec,
        .bus_capacity = (size_t)(src->max_queue_size > 0 ? src->max_queue_size : 1000) * 100,
        .cross_filesystems = !src->one_filesystem,
        .min_window_sec = src->min_monitoring_window_days * 86400,
        .fanotify = src->watcher && !strcmp(src->watcher, "fanotify"),
    };
    if (!e || !v || fu_source_start(&e->s, &o) < 0) {
        free(e);
        free(sig);
        return NULL;
    }
    e->sig = sig;
    e->refs = 1;
    a->sources[a->nsources++] = e;
    return e;
}

static void source_put(struct fu_agent *a, struct source_ent *e)
{
    if (!e || --e->refs > 0)
        return;
    for (size_t i = 0; i < a->nsources; i++)
        if (a->sources[i] == e) {
            a->sources[i] = a->sources[--a->nsources];
            break;
        }
    fu_source_stop(e->s);
    free(e->sig);
    free(e);
}

/* ------------------------------------------------------------ pipes */

static void pipe_free(struct pipe_rt *p)
{
    free(p->id);
    free(p->task_id);
    free(p->root);
    free(p->file_pattern);
    free(p->key);
    fu_strv_free(&p->uris);
    fu_strv_free(&p->exclude);
    for (size_t i = 0; i < p->njobs; i++)
        job_free(&p->jobs[i]);
    free(p->jobs);
    fu_dircache_free(p->dircache);
    fu_fieldmap_free(p->fmap);
    free(p->cache_file);
    free(p->cache_token);
    free(p->spool_dir);
    free(p->resync_file);
    if (p->wakefd >= 0)
        close(p->wakefd);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}

/* Stops a pipe's threads (its session is closed) and frees it with its hold on the source. */
static void pipe_stop(struct fu_agent *a, struct pipe_rt *p)
{
    if (p->started)
        pthread_join(p->thread, NULL);
    if (p->sub)
        fu_bus_unsubscribe(fu_source_bus(p->src->s), p->sub);
    source_put(a, p->src);
    pipe_free(p);
}

static void pipe_signal_stop(struct pipe_rt *p)
{
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    if (p->wakefd >= 0)
        eventfd_write(p->wakefd, 1);
}

/* A pipe of `cfg` (active, validated), its source subscribed and its thread started.
 * Returns NULL on failure, with a message in err. */
static struct pipe_rt *pipe_start(struct fu_agent *a, const struct fu_config *cfg,
                                  const struct fu_cfg_apipe *cp, char *err, size_t errlen)
{
    const struct fu_cfg_agent *ac = &cfg->agent;
    const struct fu_cfg_source *src =
        find_item(&ac->sources, sizeof(struct fu_cfg_source), cp->source.id);
    const struct fu_cfg_sender *snd =
        find_item(&ac->senders, sizeof(struct fu_cfg_sender), cp->sender.id);
    struct pipe_rt *p = calloc(1, sizeof(*p));
    if (!p || !src || !snd) { /* validation refused missing references already */
        snprintf(err, errlen, "pipe %s: %s", cp->it.id, p ? "bad references" : "out of memory");
        free(p);
        return NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    fu_cond_init_monotonic(&p->cv);
    p->agent = a;
    p->id = strdup(cp->it.id);
    p->task_id = malloc(strlen(a->agent_id) + strlen(cp->it.id) + 2);
    if (p->task_id)
        sprintf(p->task_id, "%s:%s", a->agent_id, cp->it.id);
    p->root = strdup(src->uri);
    p->file_pattern = strdup(src->file_pattern ? src->file_pattern : "*");
    p->key = strdup(snd->credential.key ? snd->credential.key : "");
    for (size_t k = 0; k < src->exclude.n; k++)
        fu_strv_push(&p->exclude, src->exclude.v[k]);
    fu_strv_push(&p->exclude, PROBE_PREFIX "*"); /* the clock probe is not data */
    for (size_t k = 0; k < snd->uri.n; k++)
        fu_strv_push(&p->uris, snd->uri.v[k]); /* tried in order: fail-over */
    p->one_filesystem = src->one_filesystem;
    p->message_only = src->startup_mode && !strcmp(src->startup_mode, "message-only");
    p->workers = (int)src->max_scan_workers;
    p->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    p->batch_size = (size_t)(cp->batch_size > 0 ? cp->batch_size : snd->batch_size);
    p->timeout = snd->timeout_sec;
    p->session_timeout = cp->session_timeout_seconds;
    p->audit_interval = cp->audit_interval_sec;
    p->sentinel_interval = cp->sentinel_interval_sec;
    p->retry_base = cp->error_retry_interval > 0 ? cp->error_retry_interval : 0.1;
    p->retry_mult = cp->backoff_multiplier;
    p->retry_cap =
        cp->max_backoff_seconds > p->retry_base ? cp->max_backoff_seconds : p->retry_base;
    p->max_errors =
        (int)(cp->max_consecutive_errors < 1000000 ? cp->max_consecutive_errors : 1000000);
    if (!p->id || !p->task_id || !p->root || !p->file_pattern || !p->key || !p->uris.n ||
        p->exclude.n != src->exclude.n + 1 || p->wakefd < 0) {
        snprintf(err, errlen, "pipe %s: out of memory", cp->it.id);
        pipe_free(p);
        return NULL;
    }
    char why[200];
    if (fu_fieldmap_compile(&cp->fields_mapping, &p->fmap, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "pipe %s: fields_mapping: %s", cp->it.id, why);
        pipe_free(p);
        return NULL;
    }
    /* The audit cache, kept under the agent's home when the pipe id can name a file. */
    if (cfg->home && cfg->home[0] && !strchr(p->id, '/') && p->id[0] != '.') {
        char sub[300];
        snprintf(sub, sizeof(sub), "data/agent/%s.dircache", p->id);
        p->cache_file = fu_path_join(cfg->home, sub);
        snprintf(sub, sizeof(sub), "data/agent/%s.spool", p->id);
        p->spool_dir = fu_path_join(cfg->home, sub);
        snprintf(sub, sizeof(sub), "data/agent/%s.resync", p->id);
        p->resync_file = fu_path_join(cfg->home, sub);
    }
    p->spool_max = cp->spool_max_mb * 1048576.0;
    if (p->resync_file && access(p->resync_file, F_OK) == 0) {
        fu_warn("pipe %s: realtime events were lost before the last stop (%s): the leader "
                "resyncs",
                p->id, p->resync_file);
        p->resync = true;
    }
    XXH3_state_t *h = XXH3_createState();
    if (h) {
        XXH3_64bits_reset(h);
        XXH3_64bits_update(h, p->root, strlen(p->root) + 1);
        XXH3_64bits_update(h, p->file_pattern, strlen(p->file_pattern) + 1);
        for (size_t k = 0; k < p->exclude.n; k++)
            XXH3_64bits_update(h, p->exclude.v[k], strlen(p->exclude.v[k]) + 1);
        XXH3_64bits_update(h, &p->one_filesystem, 1);
        snprintf(p->walk_sig, sizeof(p->walk_sig), "%016llx",
                 (unsigned long long)XXH3_64bits_digest(h));
        XXH3_freeState(h);
    }
    cache_load(p);
    if (!p->dircache)
        p->dircache = fu_dircache_new();
    p->src = source_get(a, src, &p->exclude);
    p->sub = p->src ? fu_bus_subscribe(fu_source_bus(p->src->s)) : NULL;
    if (!p->sub) {
        snprintf(err, errlen, "pipe %s: cannot start its source %s", cp->it.id, src->it.id);
        source_put(a, p->src);
        pipe_free(p);
        return NULL;
    }
    if (pthread_create(&p->thread, NULL, pipe_main, p) != 0) {
        snprintf(err, errlen, "cannot start the thread of pipe %s", p->id);
        pipe_stop(a, p);
        return NULL;
    }
    p->started = true;
    return p;
}

/* ------------------------------------------------------------ life cycle */

#define PROGRESS_EVERY 5.0 /* seconds between progress lines of a long walk */

void fu_agent_status(struct fu_agent *a, struct fu_jw *w)
{
    long limit = -1;
    FILE *f = fopen("/proc/sys/fs/inotify/max_user_watches", "r");
    if (f) {
        if (fscanf(f, "%ld", &limit) != 1)
            limit = -1;
        fclose(f);
    }
    fu_jw_obj_begin(w);
    fu_jw_ckey(w, "agent_id");
    fu_jw_cstr(w, a->agent_id);
    fu_jw_ckey(w, "pipes");
    fu_jw_arr_begin(w);
    for (size_t i = 0; i < a->npipes; i++) {
        struct pipe_rt *p = a->pipes[i];
        char sid[sizeof(p->sid)], err[sizeof(p->last_error)];
        pthread_mutex_lock(&p->mu);
        memcpy(sid, p->sid, sizeof(sid));
        /* Live, not the realtime thread's last count: that thread may be stuck in a request
         * to a Fusion that does not answer, which is when the depth matters. */
        size_t queued = p->sub ? fu_bus_depth(fu_source_bus(p->src->s), p->sub)
                               : atomic_load(&p->pending_count);
        memcpy(err, p->last_error, sizeof(err));
        pthread_mutex_unlock(&p->mu);
        int ph = atomic_load(&p->phase);
        struct fu_source_status ss;
        fu_source_status(p->src->s, &ss);
        fu_jw_obj_begin(w);
        fu_jw_ckey(w, "id");
        fu_jw_cstr(w, p->id);
        fu_jw_ckey(w, "role");
        fu_jw_cstr(w, !sid[0] ? "none" : atomic_load(&p->leader) ? "leader" : "follower");
        fu_jw_ckey(w, "phase");
        fu_jw_cstr(w, phase_names[ph >= 0 && ph <= PH_STOPPED ? ph : 0]);
        if (ph == PH_SNAPSHOT || ph == PH_AUDIT || ph == PH_SCAN) {
            double now = wall(), t = now - atomic_load(&p->walk_started);
            uint64_t rows = atomic_load(&p->walk_rows);
            /* A long walk's progress line, every few seconds (this runs every 2 s). */
            if (t >= PROGRESS_EVERY && now - p->progress_logged >= PROGRESS_EVERY) {
                fu_info("pipe %s: %s under way: %llu entries (%llu directories) sent to the "
                        "queue in %.0f s, %.0f entries/s",
                        p->id, phase_names[ph], (unsigned long long)rows,
                        (unsigned long long)atomic_load(&p->walk_dirs), t, (double)rows / t);
                p->progress_logged = now;
            }
            fu_jw_ckey(w, "progress");
            fu_jw_obj_begin(w);
            fu_jw_ckey(w, "entries");
            fu_jw_uint(w, rows);
            fu_jw_ckey(w, "directories");
            fu_jw_uint(w, atomic_load(&p->walk_dirs));
            fu_jw_ckey(w, "seconds");
            fu_jw_double(w, floor(t * 10) / 10);
            fu_jw_ckey(w, "entries_per_sec");
            fu_jw_uint(w, t > 0 ? (uint64_t)((double)rows / t) : 0);
            fu_jw_obj_end(w);
        }
        fu_jw_ckey(w, "session");
        fu_jw_cstr(w, sid[0] ? sid : NULL);
        fu_jw_ckey(w, "epoch");
        fu_jw_uint(w, atomic_load(&p->epoch));
        fu_jw_ckey(w, "events_sent");
        fu_jw_uint(w, atomic_load(&p->rows_sent));
        fu_jw_ckey(w, "bytes_sent");
        fu_jw_uint(w, atomic_load(&p->bytes_sent));
        fu_jw_ckey(w, "storage_clock_drift_sec");
        fu_jw_double(w, atomic_load(&p->drift));
        fu_jw_ckey(w, "queued");
        fu_jw_uint(w, queued);
        fu_jw_ckey(w, "spooled");
        fu_jw_uint(w, atomic_load(&p->spooled));
        fu_jw_ckey(w, "spool_bytes");
        fu_jw_uint(w, atomic_load(&p->spool_bytes));
        fu_jw_ckey(w, "source");
        fu_jw_obj_begin(w);
        fu_jw_ckey(w, "watcher");
        fu_jw_cstr(w, ss.watcher);
        fu_jw_ckey(w, "pipes");
        fu_jw_int(w, p->src->refs);
        fu_jw_ckey(w, "bus_events");
        fu_jw_uint(w, ss.bus.put);
        fu_jw_ckey(w, "bus_merged");
        fu_jw_uint(w, ss.bus.merged);
        fu_jw_ckey(w, "bus_overflowed");
        fu_jw_uint(w, ss.bus.evicted_unsent);
        fu_jw_obj_end(w);
        fu_jw_ckey(w, "watches");
        fu_jw_uint(w, ss.watches);
        fu_jw_ckey(w, "watches_failed");
        fu_jw_uint(w, ss.failed);
        fu_jw_ckey(w, "unwatched_at_limit");
        fu_jw_uint(w, ss.unwatched);
        fu_jw_ckey(w, "watch_limit");
        fu_jw_int(w, limit);
        fu_jw_ckey(w, "last_error");
        fu_jw_cstr(w, err[0] ? err : NULL);
        fu_jw_obj_end(w);
    }
    fu_jw_arr_end(w);
    fu_jw_obj_end(w);
}

/* Keeps the config's dir, files and activated file, for the config commands. */
static int keep_config_names(struct fu_agent *a, const struct fu_config *cfg)
{
    struct fu_strv files = {0};
    for (size_t i = 0; i < cfg->files.n; i++)
        fu_strv_push(&files, cfg->files.v[i]);
    char *home = strdup(cfg->home ? cfg->home : ""), *dir = strdup(cfg->dir ? cfg->dir : "");
    char *active = cfg->active_file ? strdup(cfg->active_file) : NULL;
    if (files.n != cfg->files.n || !home || !dir || (cfg->active_file && !active)) {
        fu_strv_free(&files);
        free(home);
        free(dir);
        free(active);
        return -ENOMEM;
    }
    pthread_mutex_lock(&a->cfg_mu);
    fu_strv_free(&a->files);
    a->files = files;
    free(a->home);
    a->home = home;
    free(a->dir);
    a->dir = dir;
    free(a->active_file);
    a->active_file = active;
    pthread_mutex_unlock(&a->cfg_mu);
    return 0;
}

void fu_agent_stop(struct fu_agent *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->npipes; i++)
        pipe_signal_stop(a->pipes[i]);
    for (size_t i = 0; i < a->npipes; i++)
        pipe_stop(a, a->pipes[i]);
    free(a->pipes);
    free(a->sources); /* every source went with its last pipe */
    free(a->agent_id);
    fu_strv_free(&a->files);
    free(a->home);
    free(a->dir);
    free(a->active_file);
    fu_strv_free(&a->failed);
    pthread_mutex_destroy(&a->cfg_mu);
    pthread_mutex_destroy(&a->update_mu);
    free(a);
}

static int add_pipe(struct fu_agent *a, struct pipe_rt *p)
{
    struct pipe_rt **v = realloc(a->pipes, (a->npipes + 1) * sizeof(*v));
    if (!v)
        return -ENOMEM;
    a->pipes = v;
    v[a->npipes++] = p;
    return 0;
}

/* Starts the active pipes of `cfg` whose ids are in `only` (NULL: all); errors are logged
 * or, at start-up, returned. */
static int start_pipes(struct fu_agent *a, const struct fu_config *cfg, const struct fu_strv *only,
                       char *err, size_t errlen)
{
    const struct fu_cfg_agent *ac = &cfg->agent;
    int rc = 0;
    for (size_t i = 0; i < ac->pipes.n; i++) {
        const struct fu_cfg_apipe *cp = FU_CFG_AT(&ac->pipes, struct fu_cfg_apipe, i);
        if (!fu_config_pipe_active(cfg, &cp->it))
            continue;
        bool wanted = !only;
        for (size_t k = 0; only && k < only->n; k++)
            wanted |= !strcmp(only->v[k], cp->it.id);
        if (!wanted)
            continue;
        struct pipe_rt *p = pipe_start(a, cfg, cp, err, errlen);
        if (!p || add_pipe(a, p) < 0) {
            if (p) {
                pipe_signal_stop(p);
                pipe_stop(a, p);
            }
            if (!only)
                return -EAGAIN;
            fu_error("reload: %s (the next reload tries again)", err);
            fu_strv_push(&a->failed, cp->it.id);
            rc = -EAGAIN;
            continue;
        }
        if (only)
            fu_info("reload: pipe %s started", p->id);
    }
    return rc;
}

int fu_agent_reload(struct fu_agent *a, const struct fu_config *cfg,
                    const struct fu_config_diff *diff)
{
    keep_config_names(a, cfg);
    /* Removed and changed pipes stop (their sessions close), and so do pipes a stop_pipe
     * command stopped; then changed, added and stopped pipes start from the new config, with
     * those that failed to start at the last reload. Pipes whose settings did not change keep
     * running untouched. */
    struct fu_strv restart = a->failed; /* taken */
    a->failed = (struct fu_strv){0};
    for (size_t i = 0; i < diff->changed.n; i++)
        fu_strv_push(&restart, diff->changed.v[i]);
    for (size_t i = 0; i < diff->added.n; i++)
        fu_strv_push(&restart, diff->added.v[i]);
    /* Every source keeps a hold until the new pipes are in place: a source whose settings
     * did not change keeps its watcher (and its watch walk) across its pipes' restart; a
     * changed one stops when the last hold goes. */
    size_t nheld = a->nsources;
    struct source_ent **held = malloc((nheld ? nheld : 1) * sizeof(*held));
    for (size_t i = 0; held && i < nheld; i++) {
        held[i] = a->sources[i];
        held[i]->refs++;
    }
    struct pipe_rt **going = calloc(a->npipes ? a->npipes : 1, sizeof(*going));
    size_t kept = 0, ngoing = 0;
    for (size_t i = 0; i < a->npipes; i++) {
        struct pipe_rt *p = a->pipes[i];
        pthread_mutex_lock(&p->mu);
        bool stopped = p->stopped_by_command;
        pthread_mutex_unlock(&p->mu);
        bool go =
            stopped || fu_strv_has(&diff->removed, p->id) || fu_strv_has(&diff->changed, p->id);
        if (!go || !going) {
            a->pipes[kept++] = p;
            continue;
        }
        if (stopped)
            fu_strv_push(&restart, p->id); /* started again if it is still active */
        if (fu_strv_has(&diff->removed, p->id)) {
            pthread_mutex_lock(&p->mu);
            p->discard_spool = true; /* nothing will ever deliver it */
            pthread_mutex_unlock(&p->mu);
        }
        fu_info("reload: pipe %s stops", p->id);
        pipe_signal_stop(p); /* all at once: their sessions close in parallel */
        going[ngoing++] = p;
    }
    a->npipes = kept;
    for (size_t i = 0; i < ngoing; i++)
        pipe_stop(a, going[i]);
    free(going);
    char err[256];
    int rc = start_pipes(a, cfg, &restart, err, sizeof(err));
    for (size_t i = 0; held && i < nheld; i++)
        source_put(a, held[i]);
    free(held);
    fu_strv_free(&restart);
    return rc;
}

int fu_agent_start(struct fu_agent **out, const struct fu_config *cfg, char *err, size_t errlen)
{
    const struct fu_cfg_agent *ac = &cfg->agent;
    struct fu_agent *a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    pthread_mutex_init(&a->cfg_mu, NULL);
    pthread_mutex_init(&a->update_mu, NULL);
    char host[256] = "agent";
    if (!ac->agent_id) {
        const struct fu_cfg_sender *first =
            ac->senders.n ? FU_CFG_AT(&ac->senders, struct fu_cfg_sender, 0) : NULL;
        default_agent_id(first && first->uri.n ? first->uri.v[0] : NULL, host, sizeof(host));
    }
    a->agent_id = strdup(ac->agent_id ? ac->agent_id : host);
    if (fu_clock_offset() != 0)
        fu_warn("FUSTOR_TEST_CLOCK_OFFSET=%+.0f: this agent's clock runs %.0f s %s the system's "
                "(for tests only)",
                fu_clock_offset(), fabs(fu_clock_offset()),
                fu_clock_offset() > 0 ? "ahead of" : "behind");
    if (!a->agent_id || keep_config_names(a, cfg) < 0) {
        fu_agent_stop(a);
        return -ENOMEM;
    }
    int rc = start_pipes(a, cfg, NULL, err, errlen);
    if (rc < 0) {
        fu_agent_stop(a);
        return rc;
    }
    *out = a;
    return 0;
}
