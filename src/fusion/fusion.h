/* The Fusion runtime: views, pipes, sessions and the HTTP listeners built from a config.
 *
 * Locking: `shape` guards what a reload changes (the views, pipes, keys and listeners
 * arrays and their settings): every request holds it for reading from start to end (taken
 * once, in route()), and so do the sweeper and snapshotter per round; a reload holds it
 * for writing. `mu` guards the session table and every pipe's leadership (leader, epoch,
 * snapshot state); each view's own rwlock guards its tree. Lock order: shape, mu, a view's
 * lock; never take `mu` while holding a view lock; batches are parsed with no lock held. */
#ifndef FU_FUSION_H
#define FU_FUSION_H

#include "common/config.h"
#include "common/json.h"
#include "fusion/http.h"
#include "fusion/view.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <stdbool.h>
#include <stdint.h>

struct fu_pipe_rt {
    char *id;
    char *receiver_id;
    struct fu_view **views; /* borrowed from fu_fusion.views */
    size_t nviews;
    bool allow_concurrent_push;
    double session_timeout;
    double audit_interval, sentinel_interval;
    /* leadership, under fu_fusion.mu */
    char leader[40];        /* session id, "" when none */
    _Atomic uint64_t epoch; /* increases on every leader change; written under mu, also
                               read under view locks to fence off deposed leaders */
    bool snapshot_complete; /* the current leader finished its snapshot */
    bool ever_synced;       /* some leader finished a snapshot at least once */
    /* counters, under fu_fusion.mu */
    uint64_t events_received, rows_skipped, sessions_created, sessions_closed;
};

struct fu_session {
    char id[40];
    char *task_id, *agent_id, *source_uri, *client_ip;
    struct fu_pipe_rt *pipe;
    double created_at;    /* wall clock */
    double last_activity; /* monotonic */
    double timeout;
    bool can_realtime;
    char *agent_status;         /* JSON text from the last heartbeat, or NULL */
    struct fu_strv commands;    /* JSON objects queued for the next heartbeat */
    char *reported_config;      /* from a config_report batch: the YAML text */
    char *reported_config_file; /* ... and its file name */
    /* Ingest batch numbers applied in this session (api_pipe.c, fusion/seqwin.h): every
     * seq up to seq_done, those marked in seq_seen above it; seq_busy: being applied. */
    uint64_t seq_done, seq_seen[64], seq_busy[8];
};

struct fu_listener {
    struct fu_http_server *http;
    char *receiver_id; /* NULL for the main API listener */
    int port;
    bool main_api; /* serves /api/v1/views too */
    struct fu_fusion *f;
};

/* An API key of a receiver: opens exactly one pipe. */
struct fu_push_key {
    char *key;
    struct fu_pipe_rt *pipe;
    char *receiver_id;
    int port; /* the receiver's port: its listener accepts the key */
};

/* An on-demand scan (v1 §3.13): a `scan` command sent to every session of the view's pipes,
 * complete once each of those still alive has answered with a job_complete batch. */
struct fu_job {
    char id[16];
    struct fu_view *view;
    char *path;
    double created_at, completed_at; /* wall clock; 0 = not completed */
    struct fu_strv expected;         /* session ids asked to scan */
    struct fu_strv done;             /* session ids that reported */
};

struct fu_fusion {
    pthread_rwlock_t shape;
    struct fu_view **views;
    size_t nviews;
    struct fu_pipe_rt **pipes;
    size_t npipes;
    struct fu_listener **listeners;
    size_t nlisteners;
    struct fu_push_key *keys;
    size_t nkeys;
    char *home; /* FUSTOR_HOME: the views' data directories are below */
    char *host; /* the main API's address, as started */
    int64_t port;
    bool journal_enabled; /* as started: a reload cannot change it */
    int fsync_mode;
    double group_commit;
    int snap_keep;
    pthread_mutex_t mu;
    struct fu_session **sessions;
    size_t nsessions, cap_sessions;
    struct fu_job **jobs; /* under mu */
    size_t njobs;
    pthread_t sweeper;
    bool sweeper_running;
    pthread_t snapshotter;
    bool snapshotter_running;
    pthread_mutex_t snap_mu; /* with snap_cv: wakes the snapshotter to stop */
    pthread_cond_t snap_cv;
    double snap_interval, snap_journal_bytes;
    atomic_bool stopping;
    size_t max_body;
    char *management_key; /* NULL: the management API answers 403 */
};

/* Builds the runtime from a valid config (copying what it needs: the config may be replaced
 * by a reload while requests run) and starts listening. Errors (a port in use) go to
 * err; returns 0 or -errno. */
int fu_fusion_start(struct fu_fusion **out, const struct fu_config *cfg, char *err, size_t errlen);
void fu_fusion_stop(struct fu_fusion *f);
/* Applies a valid reloaded config to the running runtime, changing only what changed
 * (see docs/operations.md "Reload"). Returns 0, or -errno when some part could not be
 * applied (logged; the rest is applied). */
int fu_fusion_reload(struct fu_fusion *f, const struct fu_config *cfg);

/* Whether pipe p writes into view v. */
static inline bool fu_pipe_feeds(const struct fu_pipe_rt *p, const struct fu_view *v)
{
    for (size_t i = 0; i < p->nviews; i++)
        if (p->views[i] == v)
            return true;
    return false;
}

/* Constant-time comparison of API keys. */
bool fu_key_equal(const char *a, const char *b);
/* The push key `key` as seen by listener `l`: a receiver's listener accepts the keys of the
 * receivers on its port; the main API listener accepts any receiver's. NULL when unknown. */
const struct fu_push_key *fu_fusion_push_key(struct fu_fusion *f, const struct fu_listener *l,
                                             const char *key);

/* Sessions (session.c); all take f->mu themselves. */
double fu_mono_now(void);
struct fu_pipe_rt *fu_fusion_pipe(struct fu_fusion *f, const char *id);
struct fu_view *fu_fusion_view(struct fu_fusion *f, const char *id);
/* Expires sessions past their timeout and promotes new leaders. */
void fu_sessions_sweep(struct fu_fusion *f);
/* The rest need f->mu held. */
struct fu_session *fu_session_find_locked(struct fu_fusion *f, const char *id);
/* Adds a session and makes it the leader if its pipe has none. */
int fu_session_add_locked(struct fu_fusion *f, struct fu_session *s);
/* Removes and frees a session; promotes the next session of its pipe if it led. */
void fu_session_close_locked(struct fu_fusion *f, struct fu_session *s);
static inline bool fu_session_leads(const struct fu_session *s)
{
    return !strcmp(s->pipe->leader, s->id);
}

/* The management API under /api/v1/management/ (api_mgmt.c). */
void fu_api_mgmt(struct fu_fusion *f, struct fu_http_req *req, struct fu_http_resp *resp);

/* Jobs (jobs.c), with f->mu held. */
struct fu_job *fu_job_start_locked(struct fu_fusion *f, struct fu_view *v, const char *path,
                                   double now);
void fu_job_report_locked(struct fu_fusion *f, const char *job_id, const char *session_id,
                          double now);
/* Completes jobs whose remaining sessions are gone; forgets old jobs. */
void fu_jobs_sweep_locked(struct fu_fusion *f, double now);
/* Forgets the jobs of a view a reload removes. */
void fu_jobs_drop_view_locked(struct fu_fusion *f, const struct fu_view *v);
void fu_job_json(struct fu_fusion *f, const struct fu_job *j, struct fu_jw *w);
void fu_jobs_free(struct fu_fusion *f);

/* The HTTP entry points (api_pipe.c, api_views.c). */
void fu_api_pipe(struct fu_listener *l, struct fu_http_req *req, struct fu_http_resp *resp);
void fu_api_views(struct fu_fusion *f, struct fu_http_req *req, struct fu_http_resp *resp);

#endif
