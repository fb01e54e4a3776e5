/* Configuration: load $FUSTOR_HOME/{fusion,agent}-config/ (every .yaml file) in name order, merge
 * by id within each section, validate types, ranges and references against a schema, and apply
 * environment overrides. Every problem is collected as a file:line:col diagnostic.
 *
 * Ownership: a struct fu_config owns every string and array it points to, including the
 * file names that fu_loc.file points at; fu_config_free releases all of it. */
#ifndef FU_CONFIG_H
#define FU_CONFIG_H

#include "common/buf.h"
#include "common/diag.h"
#include "common/strv.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum fu_cfg_kind { FU_CFG_FUSION, FU_CFG_AGENT };

struct fu_loc {
    const char *file; /* points into fu_config.files; NULL for defaults */
    int line, col;
};

/* A growable array of items of one schema type (receivers, api_keys, ...). */
struct fu_cfg_vec {
    void *v; /* owned */
    size_t n;
};
/* Item i of a vector of `type`. */
#define FU_CFG_AT(vec, type, i) (&((type *)(vec)->v)[i])

/* A reference to an item of another section, kept with its location for error reports. */
struct fu_cfg_ref {
    char *id;
    struct fu_loc loc;
};

struct fu_cfg_refv {
    struct fu_cfg_ref *v;
    size_t n;
};

/* First member of every item of a section (a map of id -> item). */
struct fu_cfg_item {
    char *id;
    struct fu_loc loc; /* where the id is defined; loc.file = the defining file */
};

struct fu_cfg_logging {
    char *level;  /* DEBUG, INFO, WARNING, ERROR */
    char *format; /* text | json */
    char *file;   /* log file; NULL = stderr in the foreground, logs/<proc>.log as daemon */
    char *dir;    /* Fustor v1's `dir`: directory for <proc>.log */
};

/* ---- Fusion ---- */
struct fu_cfg_api_key {
    char *key;
    struct fu_cfg_ref pipe_id;
};

struct fu_cfg_receiver {
    struct fu_cfg_item it;
    char *driver; /* http */
    char *bind_host;
    int64_t port;
    double session_timeout_seconds;
    struct fu_cfg_vec api_keys; /* of struct fu_cfg_api_key */
    bool disabled;
};

struct fu_cfg_view {
    struct fu_cfg_item it;
    char *driver; /* fs | forest-fs */
    struct fu_strv api_keys;
    bool disabled;
    /* driver_params */
    double hot_file_threshold;
    int64_t max_tree_items;
    double tombstone_ttl_seconds; /* driver_params.consistency */
    int64_t max_nodes;            /* driver_params.limits */
};

struct fu_cfg_fpipe {
    struct fu_cfg_item it;
    struct fu_cfg_ref receiver;
    struct fu_cfg_refv views;
    bool allow_concurrent_push;
    double session_timeout_seconds;
    double audit_interval_sec;
    double sentinel_interval_sec;
    bool disabled;
};

struct fu_cfg_fusion {
    char *host;
    int64_t port;
    double session_cleanup_interval;
    int64_t max_body_bytes;   /* request body limit of every listener */
    char *management_api_key; /* X-Management-Key of /api/v1/management; NULL = disabled */
    /* journal: durability of the views under $FUSTOR_HOME/data/views/<view>/ */
    bool journal_enabled;
    char *journal_fsync; /* always | batch | off */
    double journal_group_commit_ms;
    /* snapshot: of each view, beside its journal */
    double snapshot_interval_sec;
    int64_t snapshot_journal_mb;
    int64_t snapshot_keep;
    struct fu_cfg_logging logging;
    struct fu_cfg_vec receivers; /* struct fu_cfg_receiver */
    struct fu_cfg_vec views;     /* struct fu_cfg_view */
    struct fu_cfg_vec pipes;     /* struct fu_cfg_fpipe */
};

/* ---- Agent ---- */
struct fu_cfg_credential {
    char *user;
    char *passwd;
    char *key;
};

struct fu_cfg_source {
    struct fu_cfg_item it;
    char *driver; /* fs */
    char *uri;
    struct fu_cfg_credential credential;
    int64_t max_queue_size;
    int64_t max_retries;
    double retry_delay_sec;
    bool disabled;
    /* driver_params */
    double throttle_interval_sec;
    double min_monitoring_window_days;
    int64_t max_scan_workers;
    char *file_pattern;
    char *startup_mode; /* NULL (snapshot first) | message-only */
    double max_sync_delay_seconds;
    struct fu_strv exclude; /* globs on names (no '/') or relative paths: not scanned, watched */
    bool one_filesystem;    /* default true: do not descend into other mounted filesystems */
    char *watcher;          /* NULL/"inotify" | "fanotify" (falls back to inotify) */
};

struct fu_cfg_sender {
    struct fu_cfg_item it;
    char *driver;       /* fusion | http */
    struct fu_strv uri; /* one URL, or a list tried in order (fail-over) */
    struct fu_cfg_credential credential;
    int64_t batch_size;
    int64_t max_retries;
    double retry_delay_sec;
    double timeout_sec;
    bool disabled;
    /* driver_params */
    double timeout;
    char *api_version;
};

/* One entry of an agent pipe's fields_mapping (applied by src/agent/fieldmap.c). */
struct fu_cfg_field_map {
    struct fu_loc loc;     /* where the entry is, for messages */
    char *to;              /* the target key; dots nest: "a.b" is {"a": {"b": ...}} */
    struct fu_strv source; /* "field:type"; only the first is used, as in Fustor v1 */
    char *hardcoded_value; /* JSON text of the scalar, NULL if unset; wins over source */
};

struct fu_cfg_apipe {
    struct fu_cfg_item it;
    struct fu_cfg_ref source;
    struct fu_cfg_ref sender;
    double audit_interval_sec;
    double sentinel_interval_sec;
    double session_timeout_seconds; /* NAN = let Fusion decide */
    double error_retry_interval;
    int64_t max_consecutive_errors;
    double backoff_multiplier;
    double max_backoff_seconds;
    int64_t batch_size;
    double spool_max_mb; /* the on-disk spool of realtime events; 0: memory only */
    bool disabled;
    struct fu_cfg_vec fields_mapping; /* struct fu_cfg_field_map */
};

struct fu_cfg_agent {
    char *agent_id;
    int64_t fs_scan_workers;
    struct fu_cfg_logging logging;
    struct fu_cfg_vec sources; /* struct fu_cfg_source */
    struct fu_cfg_vec senders; /* struct fu_cfg_sender */
    struct fu_cfg_vec pipes;   /* struct fu_cfg_apipe */
};

struct fu_config {
    enum fu_cfg_kind kind;
    char *home;           /* $FUSTOR_HOME */
    char *dir;            /* home/{fusion,agent}-config */
    struct fu_strv files; /* every file loaded, in load order */
    char *active_file;    /* the file whose pipes `start` activates */
    union {
        struct fu_cfg_fusion fusion;
        struct fu_cfg_agent agent;
    };
};

/* "fusion" or "agent". */
const char *fu_cfg_kind_name(enum fu_cfg_kind kind);
/* $FUSTOR_HOME or ~/.fustor (caller frees). */
char *fu_config_home(void);

/* Loads and validates the config of `kind` from `home`. `start_file` is NULL (activate the
 * pipes of default.yaml), a name in the config dir, or a path (loaded after the dir's files).
 * Returns 0 when there are no errors (warnings may be in `d`), -EINVAL otherwise; `cfg` is
 * filled as far as loading got and must be freed either way. */
int fu_config_load(struct fu_config *cfg, enum fu_cfg_kind kind, const char *home,
                   const char *start_file, struct fu_diags *d);
/* Loads from explicit files only (no dir scan, no env); used by tests and `validate FILE...`. */
int fu_config_load_files(struct fu_config *cfg, enum fu_cfg_kind kind, const char *const *files,
                         size_t n, const char *active_file, struct fu_diags *d);
void fu_config_free(struct fu_config *cfg);

/* The pipes section of either kind, and whether a pipe is active: defined in the activated
 * file, not disabled, and none of what it depends on is disabled. */
const struct fu_cfg_vec *fu_config_pipes(const struct fu_config *cfg);
const struct fu_cfg_item *fu_config_pipe_at(const struct fu_config *cfg, size_t i);
bool fu_config_pipe_active(const struct fu_config *cfg, const struct fu_cfg_item *pipe);
const struct fu_cfg_logging *fu_config_logging(const struct fu_config *cfg);

/* The effective config as JSON (secrets redacted when `redact`). */
void fu_config_to_json(const struct fu_config *cfg, bool redact, struct fu_buf *out);
/* One pipe with everything it depends on (receiver and views, or source and sender), as
 * canonical JSON: two configs run a pipe identically iff these strings are equal. */
void fu_config_pipe_fingerprint(const struct fu_config *cfg, const struct fu_cfg_item *pipe,
                                struct fu_buf *out);

/* Differences between two configs' active pipes: added, removed, changed (ids, owned). */
struct fu_config_diff {
    struct fu_strv added, removed, changed;
    bool logging_changed;
};
void fu_config_diff(const struct fu_config *old, const struct fu_config *cur,
                    struct fu_config_diff *out);
void fu_config_diff_free(struct fu_config_diff *d);

/* The item with `id` in a section whose items are `item_size` bytes, or NULL. */
const struct fu_cfg_item *fu_cfg_find(const struct fu_cfg_vec *sec, size_t item_size,
                                      const char *id);

#endif
