/* The running process shared by fustor-fusion and fustor-agent: log sink set-up, the signal
 * loop (SIGHUP reload with a diff, SIGUSR1 log reopen, SIGUSR2 backup requests, SIGTERM/SIGINT
 * stop) and the status file that `status` and `reload` read. Later issues hang their runtime
 * off this loop. */
#ifndef FU_SERVICE_H
#define FU_SERVICE_H

#include "common/buf.h"
#include "common/config.h"
#include "common/json.h"
#include "common/daemon.h"
#include "common/strv.h"

#include <stdbool.h>

struct fu_app {
    const char *prog; /* "fustor-fusion" */
    enum fu_cfg_kind kind;
    /* The process's runtime (listeners, pipes), started once the log is open and stopped
     * at exit. NULL for none. start returns 0 or -errno with a message in err. The runtime
     * copies what it needs: the config it gets is replaced on reload. */
    int (*start)(void **rt, const struct fu_config *cfg, char *err, size_t errlen);
    void (*stop)(void *rt);
    /* Optional: the runtime's live state as a JSON value (an object), written under
     * "runtime" in the status file, which is refreshed every 2 s while it runs. */
    void (*status)(void *rt, struct fu_jw *w);
    /* Optional: applies a good reloaded config to the running runtime, given what changed
     * in the active pipes. Without it, the new config only replaces the recorded one.
     * Returns 0 or -errno (reported in the reload's outcome). */
    int (*reload)(void *rt, const struct fu_config *next, const struct fu_config_diff *diff);
};

/* What an app whose data can be backed up adds to the CLI (Fusion: `backup`, `restore`). Apart
 * from fu_app so that the apps that have none (the agent) need not spell it. */
struct fu_app_backup {
    /* In the running process, on the main loop, for `backup DIR`: writes a consistent copy of
     * the runtime's durable state into `dir` (absolute; it must be absent or empty) and the
     * backup's manifest (a JSON object) into `manifest`. 0 or -errno with a message in err;
     * a failed backup leaves nothing it wrote behind. */
    int (*backup)(void *rt, const char *dir, struct fu_buf *manifest, char *err, size_t errlen);
    /* For `restore DIR`, while the process is stopped (the caller holds its pidfile lock):
     * checks the backup in `dir`, then puts it in place under `home`. Appends one line per
     * thing it did to `done`. 0, or -errno with a message in err (nothing was changed when
     * `done` is empty). */
    int (*restore)(const char *home, const char *dir, struct fu_strv *done, char *err,
                   size_t errlen);
    /* For `purge [NAME...]`: deletes the named data directories no view of `configured`
     * uses and no running process holds; without names, lists those that could go. */
    int (*purge)(const char *home, const struct fu_strv *configured, const struct fu_strv *names,
                 struct fu_strv *done, char *err, size_t errlen);
};

struct fu_service {
    const struct fu_app *app;
    struct fu_config cfg; /* the running config; replaced whole on a good reload */
    char *start_file;     /* as given to `start`, NULL for default.yaml; owned */
    bool daemon;
    char *log_path;    /* owned; NULL = stderr */
    char *status_path; /* owned: $FUSTOR_HOME/run/<proc>.status.json */
    struct fu_pidfile pidfile;
    int report_fd; /* to the launching shell while starting (-1 after) */
    long long started_ms;
    unsigned reload_seq;
    struct fu_buf last_reload; /* JSON object of the last reload's outcome, or empty */
    struct fu_diags startup;   /* config warnings from start-up, logged once the log is open */
    void *rt;                  /* the app's runtime, NULL when it has none */
    const struct fu_app_backup *backup; /* NULL: the app takes no backups */
};

/* $FUSTOR_HOME/<sub>/<proc><suffix>, e.g. run/fusion.status.json (caller frees). */
char *fu_service_path(const char *home, const char *sub, enum fu_cfg_kind kind, const char *suffix);
/* A `backup` request and its answer: $FUSTOR_HOME/run/<proc>.backup.<pid>.<what>, `what`
 * "request" (written by the CLI of process `pid`: {"dir": DIR}) or "result" (written by the
 * service: {"ok": true, "manifest": {...}} or {"ok": false, "error": "..."}). Caller frees. */
char *fu_service_backup_file(const char *home, enum fu_cfg_kind kind, long pid, const char *what);
/* Where the log goes: logging.file, logging.dir/<proc>.log, logs/<proc>.log when a daemon,
 * else NULL for stderr. Relative paths are taken from $FUSTOR_HOME. Caller frees. */
char *fu_service_log_path(const struct fu_config *cfg, bool daemon);

/* Runs until SIGTERM/SIGINT. `svc` holds a loaded, valid config and the pidfile; returns
 * the process exit code. Frees everything in `svc`. */
int fu_service_run(struct fu_service *svc);

/* Applies a SIGHUP: re-reads the config; on errors keeps the running one. Returns 0 if the
 * new config was applied. Exposed for tests. */
int fu_service_reload(struct fu_service *svc);

#endif
