/* Fusion's config schema (fusion-config/, every .yaml file): globals, receivers, views and pipes,
 * as in seed 000 and Fustor v1 (reference §5.2), plus Fusion-specific semantic checks. */
#include "common/config_schema.h"

#include <stdlib.h>
#include <string.h>

#define RANGE(lo, hi) lo, hi
#define NORANGE 0, 0

static const char *const level_choices[] = {"DEBUG", "INFO", "WARNING", "ERROR", NULL};
static const char *const format_choices[] = {"text", "json", NULL};
static const char *const receiver_drivers[] = {"http", NULL};
static const char *const view_drivers[] = {"fs", "forest-fs", NULL};
static const char *const fsync_choices[] = {"always", "batch", "off", NULL};

#define LOG(f) offsetof(struct fu_cfg_logging, f)
static const struct fu_field logging_fields[] = {
    {"level", FT_ENUM, LOG(level), F_ICASE, NORANGE, level_choices, NULL, NULL},
    {"format", FT_ENUM, LOG(format), 0, NORANGE, format_choices, NULL, NULL},
    {"file", FT_STR, LOG(file), F_NULLABLE | F_NONEMPTY, NORANGE, NULL, NULL, NULL},
    {"dir", FT_STR, LOG(dir), F_NULLABLE | F_NONEMPTY, NORANGE, NULL, NULL, NULL},
};
const struct fu_schema fu_logging_schema = {"logging", logging_fields, FU_COUNT(logging_fields),
                                            sizeof(struct fu_cfg_logging), NULL};

#define AK(f) offsetof(struct fu_cfg_api_key, f)
static const struct fu_field api_key_fields[] = {
    {"key", FT_STR, AK(key), F_REQUIRED | F_SECRET | F_NONEMPTY, NORANGE, NULL, NULL, NULL},
    {"pipe_id", FT_REF, AK(pipe_id), F_REQUIRED, NORANGE, NULL, NULL, "pipes"},
};
static const struct fu_schema api_key_schema = {"api key", api_key_fields, FU_COUNT(api_key_fields),
                                                sizeof(struct fu_cfg_api_key), NULL};

#define RC(f) offsetof(struct fu_cfg_receiver, f)
static const struct fu_field receiver_fields[] = {
    {"driver", FT_ENUM, RC(driver), F_REQUIRED, NORANGE, receiver_drivers, NULL, NULL},
    {"bind_host", FT_STR, RC(bind_host), F_NONEMPTY, NORANGE, NULL, NULL, NULL},
    {"port", FT_INT, RC(port), 0, RANGE(1, 65535), NULL, NULL, NULL},
    {"session_timeout_seconds", FT_FLOAT, RC(session_timeout_seconds), 0, RANGE(0.1, 1e9), NULL,
     NULL, NULL},
    {"api_keys", FT_LIST, RC(api_keys), 0, NORANGE, NULL, &api_key_schema, NULL},
    {"disabled", FT_BOOL, RC(disabled), 0, NORANGE, NULL, NULL, NULL},
};
static void receiver_defaults(void *p)
{
    struct fu_cfg_receiver *r = p;
    r->bind_host = strdup("0.0.0.0");
    r->port = 8102;
    r->session_timeout_seconds = 30;
}
static const struct fu_schema receiver_schema = {"receiver", receiver_fields,
                                                 FU_COUNT(receiver_fields),
                                                 sizeof(struct fu_cfg_receiver), receiver_defaults};

#define VW(f) offsetof(struct fu_cfg_view, f)
static const struct fu_field consistency_fields[] = {
    {"tombstone_ttl_seconds", FT_FLOAT, VW(tombstone_ttl_seconds), 0, RANGE(0, 1e9), NULL, NULL,
     NULL},
};
static const struct fu_schema consistency_schema = {"consistency", consistency_fields,
                                                    FU_COUNT(consistency_fields), 0, NULL};
static const struct fu_field limits_fields[] = {
    {"max_nodes", FT_INT, VW(max_nodes), 0, RANGE(0, 1e12), NULL, NULL, NULL},
};
static const struct fu_schema limits_schema = {"limits", limits_fields, FU_COUNT(limits_fields), 0,
                                               NULL};
static const struct fu_field view_params_fields[] = {
    {"hot_file_threshold", FT_FLOAT, VW(hot_file_threshold), 0, RANGE(0, 1e9), NULL, NULL, NULL},
    {"max_tree_items", FT_INT, VW(max_tree_items), 0, RANGE(-1, 1e12), NULL, NULL, NULL},
    {"consistency", FT_OBJ, 0, 0, NORANGE, NULL, &consistency_schema, NULL},
    {"limits", FT_OBJ, 0, 0, NORANGE, NULL, &limits_schema, NULL},
};
static const struct fu_schema view_params_schema = {"driver_params", view_params_fields,
                                                    FU_COUNT(view_params_fields), 0, NULL};
static const struct fu_field view_fields[] = {
    {"driver", FT_ENUM, VW(driver), F_REQUIRED, NORANGE, view_drivers, NULL, NULL},
    {"api_keys", FT_STRV, VW(api_keys), F_SECRET, NORANGE, NULL, NULL, NULL},
    {"disabled", FT_BOOL, VW(disabled), 0, NORANGE, NULL, NULL, NULL},
    {"driver_params", FT_OBJ, 0, 0, NORANGE, NULL, &view_params_schema, NULL},
};
static void view_defaults(void *p)
{
    struct fu_cfg_view *v = p;
    v->hot_file_threshold = 30;
    v->max_tree_items = 100000;
    v->tombstone_ttl_seconds = 3600;
    v->max_nodes = 0;
}
static const struct fu_schema view_schema = {"view", view_fields, FU_COUNT(view_fields),
                                             sizeof(struct fu_cfg_view), view_defaults};

#define FP(f) offsetof(struct fu_cfg_fpipe, f)
static const struct fu_field fpipe_fields[] = {
    {"receiver", FT_REF, FP(receiver), F_REQUIRED, NORANGE, NULL, NULL, "receivers"},
    {"views", FT_REFV, FP(views), F_REQUIRED | F_NONEMPTY, NORANGE, NULL, NULL, "views"},
    {"allow_concurrent_push", FT_BOOL, FP(allow_concurrent_push), 0, NORANGE, NULL, NULL, NULL},
    {"session_timeout_seconds", FT_FLOAT, FP(session_timeout_seconds), 0, RANGE(0.1, 1e9), NULL,
     NULL, NULL},
    {"audit_interval_sec", FT_FLOAT, FP(audit_interval_sec), 0, RANGE(0, 1e9), NULL, NULL, NULL},
    {"sentinel_interval_sec", FT_FLOAT, FP(sentinel_interval_sec), 0, RANGE(0, 1e9), NULL, NULL,
     NULL},
    {"disabled", FT_BOOL, FP(disabled), 0, NORANGE, NULL, NULL, NULL},
};
static void fpipe_defaults(void *p)
{
    struct fu_cfg_fpipe *f = p;
    f->allow_concurrent_push = true;
    f->session_timeout_seconds = 30;
    f->audit_interval_sec = 43200;
    f->sentinel_interval_sec = 120;
}
static const struct fu_schema fpipe_schema = {"pipe", fpipe_fields, FU_COUNT(fpipe_fields),
                                              sizeof(struct fu_cfg_fpipe), fpipe_defaults};

#define FU(f) offsetof(struct fu_cfg_fusion, f)
static const struct fu_field fusion_block_fields[] = {
    {"host", FT_STR, FU(host), F_NONEMPTY, NORANGE, NULL, NULL, NULL},
    {"port", FT_INT, FU(port), 0, RANGE(1, 65535), NULL, NULL, NULL},
    {"session_cleanup_interval", FT_FLOAT, FU(session_cleanup_interval), 0, RANGE(0.05, 3600), NULL,
     NULL, NULL},
    {"max_body_bytes", FT_INT, FU(max_body_bytes), 0, RANGE(1024, 4294967296.0), NULL, NULL, NULL},
    {"management_api_key", FT_STR, FU(management_api_key), F_NULLABLE | F_SECRET | F_NONEMPTY,
     NORANGE, NULL, NULL, NULL},
};
static const struct fu_schema fusion_block_schema = {"fusion", fusion_block_fields,
                                                     FU_COUNT(fusion_block_fields), 0, NULL};
/* The config root is stored at offset 0 of struct fu_config's union. */
#define ROOT(f) (offsetof(struct fu_config, fusion) + FU(f))
static const struct fu_field journal_fields[] = {
    {"enabled", FT_BOOL, ROOT(journal_enabled), 0, NORANGE, NULL, NULL, NULL},
    {"fsync", FT_ENUM, ROOT(journal_fsync), 0, NORANGE, fsync_choices, NULL, NULL},
    {"group_commit_ms", FT_FLOAT, ROOT(journal_group_commit_ms), 0, RANGE(0, 10), NULL, NULL, NULL},
};
static const struct fu_schema journal_schema = {"journal", journal_fields, FU_COUNT(journal_fields),
                                                0, NULL};
static const struct fu_field snapshot_fields[] = {
    {"interval_sec", FT_FLOAT, ROOT(snapshot_interval_sec), 0, RANGE(1, 1e9), NULL, NULL, NULL},
    {"journal_mb", FT_INT, ROOT(snapshot_journal_mb), 0, RANGE(1, 1e7), NULL, NULL, NULL},
    {"keep", FT_INT, ROOT(snapshot_keep), 0, RANGE(1, 1000), NULL, NULL, NULL},
};
static const struct fu_schema snapshot_schema = {"snapshot", snapshot_fields,
                                                 FU_COUNT(snapshot_fields), 0, NULL};
static const struct fu_field fusion_root_fields[] = {
    {"logging", FT_OBJ, ROOT(logging), F_SHORTHAND, NORANGE, NULL, &fu_logging_schema, NULL},
    {"host", FT_STR, ROOT(host), F_NONEMPTY, NORANGE, NULL, NULL, NULL},
    {"port", FT_INT, ROOT(port), 0, RANGE(1, 65535), NULL, NULL, NULL},
    {"session_cleanup_interval", FT_FLOAT, ROOT(session_cleanup_interval), 0, RANGE(0.05, 3600),
     NULL, NULL, NULL},
    {"max_body_bytes", FT_INT, ROOT(max_body_bytes), 0, RANGE(1024, 4294967296.0), NULL, NULL,
     NULL},
    {"management_api_key", FT_STR, ROOT(management_api_key), F_NULLABLE | F_SECRET | F_NONEMPTY,
     NORANGE, NULL, NULL, NULL},
    {"fusion", FT_OBJ, offsetof(struct fu_config, fusion), F_ALIAS, NORANGE, NULL,
     &fusion_block_schema, NULL},
    {"journal", FT_OBJ, 0, 0, NORANGE, NULL, &journal_schema, NULL},
    {"snapshot", FT_OBJ, 0, 0, NORANGE, NULL, &snapshot_schema, NULL},
    {"receivers", FT_SECTION, ROOT(receivers), 0, NORANGE, NULL, &receiver_schema, NULL},
    {"views", FT_SECTION, ROOT(views), 0, NORANGE, NULL, &view_schema, NULL},
    {"pipes", FT_SECTION, ROOT(pipes), 0, NORANGE, NULL, &fpipe_schema, NULL},
};
static void fusion_defaults(void *p)
{
    struct fu_config *c = p;
    c->fusion.host = strdup("0.0.0.0");
    c->fusion.port = 8101;
    c->fusion.session_cleanup_interval = 5;
    c->fusion.max_body_bytes = 64 << 20;
    c->fusion.journal_enabled = true;
    c->fusion.journal_fsync = strdup("batch");
    c->fusion.snapshot_interval_sec = 3600;
    c->fusion.snapshot_journal_mb = 256;
    c->fusion.snapshot_keep = 2;
    c->fusion.logging.level = strdup("INFO");
    c->fusion.logging.format = strdup("text");
}
const struct fu_schema fu_fusion_schema = {"fusion config", fusion_root_fields,
                                           FU_COUNT(fusion_root_fields), sizeof(struct fu_config),
                                           fusion_defaults};

static void warn_at(struct fu_diags *d, const struct fu_loc *l, const char *fmt, const char *a,
                    const char *b)
{
    fu_diags_add(d, FU_SEV_WARNING, l->file, l->line, l->col, fmt, a, b);
}

void fu_fusion_check(const struct fu_config *cfg, struct fu_diags *d)
{
    const struct fu_cfg_fusion *f = &cfg->fusion;
    /* One API key must map to one pipe, or authentication would be ambiguous. */
    for (size_t i = 0; i < f->receivers.n; i++) {
        const struct fu_cfg_receiver *r = FU_CFG_AT(&f->receivers, struct fu_cfg_receiver, i);
        if (r->api_keys.n == 0 && !r->disabled)
            warn_at(d, &r->it.loc, "receiver '%s' has no api_keys%s; no agent can push to it",
                    r->it.id, "");
        for (size_t k = 0; k < r->api_keys.n; k++) {
            const struct fu_cfg_api_key *a = FU_CFG_AT(&r->api_keys, struct fu_cfg_api_key, k);
            if (!a->key || !a->pipe_id.id)
                continue;
            const struct fu_cfg_fpipe *p =
                (const void *)fu_cfg_find(&f->pipes, sizeof(*p), a->pipe_id.id);
            if (p && p->receiver.id && strcmp(p->receiver.id, r->it.id))
                fu_diags_add(d, FU_SEV_WARNING, a->pipe_id.loc.file, a->pipe_id.loc.line,
                             a->pipe_id.loc.col,
                             "pipe '%s' is bound to receiver '%s', not '%s'; this key "
                             "will not be accepted here",
                             p->it.id, p->receiver.id, r->it.id);
            for (size_t j = 0; j <= i; j++) {
                const struct fu_cfg_receiver *r2 =
                    FU_CFG_AT(&f->receivers, struct fu_cfg_receiver, j);
                size_t kend = j == i ? k : r2->api_keys.n;
                for (size_t k2 = 0; k2 < kend; k2++) {
                    const struct fu_cfg_api_key *b =
                        FU_CFG_AT(&r2->api_keys, struct fu_cfg_api_key, k2);
                    if (b->key && !strcmp(a->key, b->key) && b->pipe_id.id &&
                        strcmp(a->pipe_id.id, b->pipe_id.id))
                        fu_diags_add(d, FU_SEV_ERROR, a->pipe_id.loc.file, a->pipe_id.loc.line,
                                     a->pipe_id.loc.col,
                                     "this API key is already mapped to pipe '%s' (%s:%d); "
                                     "a key must map to exactly one pipe",
                                     b->pipe_id.id, b->pipe_id.loc.file, b->pipe_id.loc.line);
                }
            }
        }
    }
    /* Two enabled receivers on one port with different drivers or hosts cannot both bind. */
    for (size_t i = 0; i < f->receivers.n; i++) {
        const struct fu_cfg_receiver *a = FU_CFG_AT(&f->receivers, struct fu_cfg_receiver, i);
        for (size_t j = i + 1; j < f->receivers.n; j++) {
            const struct fu_cfg_receiver *b = FU_CFG_AT(&f->receivers, struct fu_cfg_receiver, j);
            if (!a->disabled && !b->disabled && a->port == b->port &&
                strcmp(a->bind_host, b->bind_host))
                fu_diags_add(d, FU_SEV_ERROR, b->it.loc.file, b->it.loc.line, b->it.loc.col,
                             "receiver '%s' uses port %lld, as receiver '%s' does, on another "
                             "bind_host; give it its own port",
                             b->it.id, (long long)b->port, a->it.id);
        }
    }
    for (size_t i = 0; i < f->pipes.n; i++) {
        const struct fu_cfg_fpipe *p = FU_CFG_AT(&f->pipes, struct fu_cfg_fpipe, i);
        bool has_key = false;
        for (size_t r = 0; r < f->receivers.n && !has_key; r++) {
            const struct fu_cfg_receiver *rc = FU_CFG_AT(&f->receivers, struct fu_cfg_receiver, r);
            for (size_t k = 0; k < rc->api_keys.n; k++) {
                const struct fu_cfg_api_key *a = FU_CFG_AT(&rc->api_keys, struct fu_cfg_api_key, k);
                if (a->pipe_id.id && !strcmp(a->pipe_id.id, p->it.id))
                    has_key = true;
            }
        }
        if (!has_key && !p->disabled)
            warn_at(d, &p->it.loc,
                    "no receiver api_key maps to pipe '%s'%s; agents cannot open sessions on it",
                    p->it.id, "");
        for (size_t v = 0; v < p->views.n; v++)
            for (size_t w = 0; w < v; w++)
                if (p->views.v[v].id && p->views.v[w].id &&
                    !strcmp(p->views.v[v].id, p->views.v[w].id))
                    fu_diags_add(d, FU_SEV_ERROR, p->views.v[v].loc.file, p->views.v[v].loc.line,
                                 p->views.v[v].loc.col, "view '%s' is listed twice in pipe '%s'",
                                 p->views.v[v].id, p->it.id);
    }
}
