/* The agent's config schema (agent-config/, every .yaml file): globals, sources, senders and pipes,
 * as in seed 000 and Fustor v1 (reference §5.3), plus agent-specific semantic checks. */
#include "common/config_schema.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define RANGE(lo, hi) lo, hi
#define NORANGE 0, 0

extern const struct fu_schema fu_logging_schema;

static const char *const source_drivers[] = {"fs", NULL};
static const char *const sender_drivers[] = {"fusion", "http", NULL};
static const char *const startup_modes[] = {"snapshot", "message-only", NULL};
static const char *const watchers[] = {"inotify", "fanotify", NULL};
static const char *const api_versions[] = {"pipe", NULL};

#define CR(f) offsetof(struct fu_cfg_credential, f)
static const struct fu_field credential_fields[] = {
    {"user", FT_STR, CR(user), F_NULLABLE, NORANGE, NULL, NULL, NULL},
    {"passwd", FT_STR, CR(passwd), F_NULLABLE | F_SECRET, NORANGE, NULL, NULL, NULL},
    {"key", FT_STR, CR(key), F_NULLABLE | F_SECRET | F_NONEMPTY, NORANGE, NULL, NULL, NULL},
};
static const struct fu_schema credential_schema = {"credential", credential_fields,
                                                   FU_COUNT(credential_fields), 0, NULL};

#define SO(f) offsetof(struct fu_cfg_source, f)
static const struct fu_field source_params_fields[] = {
    {"throttle_interval_sec", FT_FLOAT, SO(throttle_interval_sec), 0, RANGE(0, 3600), NULL, NULL,
     NULL},
    {"min_monitoring_window_days", FT_FLOAT, SO(min_monitoring_window_days), 0, RANGE(0, 36500),
     NULL, NULL, NULL},
    {"max_scan_workers", FT_INT, SO(max_scan_workers), 0, RANGE(1, 256), NULL, NULL, NULL},
    {"file_pattern", FT_STR, SO(file_pattern), F_NONEMPTY, NORANGE, NULL, NULL, NULL},
    {"startup_mode", FT_ENUM, SO(startup_mode), F_NULLABLE, NORANGE, startup_modes, NULL, NULL},
    {"max_sync_delay_seconds", FT_FLOAT, SO(max_sync_delay_seconds), 0, RANGE(0.01, 3600), NULL,
     NULL, NULL},
    {"exclude", FT_STRV, SO(exclude), 0, NORANGE, NULL, NULL, NULL},
    {"one_filesystem", FT_BOOL, SO(one_filesystem), 0, NORANGE, NULL, NULL, NULL},
    {"watcher", FT_ENUM, SO(watcher), F_NULLABLE, NORANGE, watchers, NULL, NULL},
};
static const struct fu_schema source_params_schema = {"driver_params", source_params_fields,
                                                      FU_COUNT(source_params_fields), 0, NULL};
static const struct fu_field source_fields[] = {
    {"driver", FT_ENUM, SO(driver), F_REQUIRED, NORANGE, source_drivers, NULL, NULL},
    {"uri", FT_STR, SO(uri), F_REQUIRED | F_NONEMPTY, NORANGE, NULL, NULL, NULL},
    {"credential", FT_OBJ, SO(credential), F_NULLABLE, NORANGE, NULL, &credential_schema, NULL},
    {"max_queue_size", FT_INT, SO(max_queue_size), 0, RANGE(1, 1e9), NULL, NULL, NULL},
    {"max_retries", FT_INT, SO(max_retries), 0, RANGE(0, 1e9), NULL, NULL, NULL},
    {"retry_delay_sec", FT_FLOAT, SO(retry_delay_sec), 0, RANGE(0, 86400), NULL, NULL, NULL},
    {"disabled", FT_BOOL, SO(disabled), 0, NORANGE, NULL, NULL, NULL},
    {"driver_params", FT_OBJ, 0, F_NULLABLE, NORANGE, NULL, &source_params_schema, NULL},
};
static void source_defaults(void *p)
{
    struct fu_cfg_source *s = p;
    s->max_queue_size = 1000;
    s->max_retries = 10;
    s->retry_delay_sec = 5;
    s->throttle_interval_sec = 5;
    s->min_monitoring_window_days = 30;
    s->max_scan_workers = 4;
    s->file_pattern = strdup("*");
    s->max_sync_delay_seconds = 1;
    s->one_filesystem = true;
}
static const struct fu_schema source_schema = {"source", source_fields, FU_COUNT(source_fields),
                                               sizeof(struct fu_cfg_source), source_defaults};

#define SE(f) offsetof(struct fu_cfg_sender, f)
static const struct fu_field sender_params_fields[] = {
    {"timeout", FT_FLOAT, SE(timeout), 0, RANGE(0.1, 3600), NULL, NULL, NULL},
    {"api_version", FT_ENUM, SE(api_version), 0, NORANGE, api_versions, NULL, NULL},
};
static const struct fu_schema sender_params_schema = {"driver_params", sender_params_fields,
                                                      FU_COUNT(sender_params_fields), 0, NULL};
static const struct fu_field sender_fields[] = {
    {"driver", FT_ENUM, SE(driver), F_REQUIRED, NORANGE, sender_drivers, NULL, NULL},
    {"uri", FT_STRV, SE(uri), F_REQUIRED | F_NONEMPTY | F_ONE_OK, NORANGE, NULL, NULL, NULL},
    {"credential", FT_OBJ, SE(credential), F_NULLABLE, NORANGE, NULL, &credential_schema, NULL},
    {"batch_size", FT_INT, SE(batch_size), 0, RANGE(1, 1000000), NULL, NULL, NULL},
    {"max_retries", FT_INT, SE(max_retries), 0, RANGE(0, 1e9), NULL, NULL, NULL},
    {"retry_delay_sec", FT_FLOAT, SE(retry_delay_sec), 0, RANGE(0, 86400), NULL, NULL, NULL},
    {"timeout_sec", FT_FLOAT, SE(timeout_sec), 0, RANGE(0.1, 3600), NULL, NULL, NULL},
    {"disabled", FT_BOOL, SE(disabled), 0, NORANGE, NULL, NULL, NULL},
    {"driver_params", FT_OBJ, 0, F_NULLABLE, NORANGE, NULL, &sender_params_schema, NULL},
};
static void sender_defaults(void *p)
{
    struct fu_cfg_sender *s = p;
    s->batch_size = 1000;
    s->max_retries = 10;
    s->retry_delay_sec = 5;
    s->timeout_sec = 30;
    s->timeout = 30;
    s->api_version = strdup("pipe");
}
static const struct fu_schema sender_schema = {"sender", sender_fields, FU_COUNT(sender_fields),
                                               sizeof(struct fu_cfg_sender), sender_defaults};

#define FM(f) offsetof(struct fu_cfg_field_map, f)
static const struct fu_field field_map_fields[] = {
    {"to", FT_STR, FM(to), F_REQUIRED | F_NONEMPTY, NORANGE, NULL, NULL, NULL},
    {"source", FT_STRV, FM(source), F_NONEMPTY, NORANGE, NULL, NULL, NULL},
    {"hardcoded_value", FT_ANY, FM(hardcoded_value), F_NULLABLE, NORANGE, NULL, NULL, NULL},
};
static const struct fu_schema field_map_schema = {"field mapping", field_map_fields,
                                                  FU_COUNT(field_map_fields),
                                                  sizeof(struct fu_cfg_field_map), NULL};
_Static_assert(offsetof(struct fu_cfg_field_map, loc) == 0, "F_ITEM_LOC: the loc comes first");

#define AP(f) offsetof(struct fu_cfg_apipe, f)
static const struct fu_field apipe_fields[] = {
    {"source", FT_REF, AP(source), F_REQUIRED, NORANGE, NULL, NULL, "sources"},
    {"sender", FT_REF, AP(sender), F_REQUIRED, NORANGE, NULL, NULL, "senders"},
    {"audit_interval_sec", FT_FLOAT, AP(audit_interval_sec), 0, RANGE(0, 1e9), NULL, NULL, NULL},
    {"sentinel_interval_sec", FT_FLOAT, AP(sentinel_interval_sec), 0, RANGE(0, 1e9), NULL, NULL,
     NULL},
    {"session_timeout_seconds", FT_FLOAT, AP(session_timeout_seconds), F_NULLABLE, RANGE(0.1, 1e9),
     NULL, NULL, NULL},
    {"error_retry_interval", FT_FLOAT, AP(error_retry_interval), 0, RANGE(0, 86400), NULL, NULL,
     NULL},
    {"max_consecutive_errors", FT_INT, AP(max_consecutive_errors), 0, RANGE(1, 1e9), NULL, NULL,
     NULL},
    {"backoff_multiplier", FT_FLOAT, AP(backoff_multiplier), 0, RANGE(1, 100), NULL, NULL, NULL},
    {"max_backoff_seconds", FT_FLOAT, AP(max_backoff_seconds), 0, RANGE(0, 86400), NULL, NULL,
     NULL},
    {"batch_size", FT_INT, AP(batch_size), 0, RANGE(1, 1000000), NULL, NULL, NULL},
    {"spool_max_mb", FT_FLOAT, AP(spool_max_mb), 0, RANGE(0, 1e6), NULL, NULL, NULL},
    {"disabled", FT_BOOL, AP(disabled), 0, NORANGE, NULL, NULL, NULL},
    {"fields_mapping", FT_LIST, AP(fields_mapping), F_ITEM_LOC, NORANGE, NULL, &field_map_schema,
     NULL},
};
static void apipe_defaults(void *p)
{
    struct fu_cfg_apipe *a = p;
    a->audit_interval_sec = 43200;
    a->sentinel_interval_sec = 300;
    a->session_timeout_seconds = __builtin_nan("");
    a->error_retry_interval = 5;
    a->max_consecutive_errors = 5;
    a->backoff_multiplier = 2;
    a->max_backoff_seconds = 60;
    a->batch_size = 100;
    a->spool_max_mb = 1024;
}
static const struct fu_schema apipe_schema = {"pipe", apipe_fields, FU_COUNT(apipe_fields),
                                              sizeof(struct fu_cfg_apipe), apipe_defaults};

#define AG(f) (offsetof(struct fu_config, agent) + offsetof(struct fu_cfg_agent, f))
static const struct fu_field agent_root_fields[] = {
    {"agent_id", FT_STR, AG(agent_id), F_NULLABLE | F_NONEMPTY, NORANGE, NULL, NULL, NULL},
    {"fs_scan_workers", FT_INT, AG(fs_scan_workers), 0, RANGE(1, 256), NULL, NULL, NULL},
    {"logging", FT_OBJ, AG(logging), F_SHORTHAND, NORANGE, NULL, &fu_logging_schema, NULL},
    {"sources", FT_SECTION, AG(sources), 0, NORANGE, NULL, &source_schema, NULL},
    {"senders", FT_SECTION, AG(senders), 0, NORANGE, NULL, &sender_schema, NULL},
    {"pipes", FT_SECTION, AG(pipes), 0, NORANGE, NULL, &apipe_schema, NULL},
};
static void agent_defaults(void *p)
{
    struct fu_config *c = p;
    c->agent.fs_scan_workers = 4;
    c->agent.logging.level = strdup("INFO");
    c->agent.logging.format = strdup("text");
}
const struct fu_schema fu_agent_schema = {"agent config", agent_root_fields,
                                          FU_COUNT(agent_root_fields), sizeof(struct fu_config),
                                          agent_defaults};

static void at(struct fu_diags *d, enum fu_sev sev, const struct fu_loc *l, const char *fmt,
               const char *a, const char *b)
{
    fu_diags_add(d, sev, l->file, l->line, l->col, fmt, a, b);
}

/* http(s)://host[:port][/path]; a <PLACEHOLDER> host (as in seed 000) is only a warning. */
static void check_sender_uri(const struct fu_cfg_sender *s, const char *u, struct fu_diags *d)
{
    const char *rest = !strncmp(u, "http://", 7)    ? u + 7
                       : !strncmp(u, "https://", 8) ? u + 8
                                                    : NULL;
    if (!rest) {
        at(d, FU_SEV_ERROR, &s->it.loc,
           "senders.%s.uri: expected an http:// or https:// URL, got '%s'", s->it.id, u);
        return;
    }
    /* The host: an [IPv6] literal, or everything up to ':', '/', '?' or '#'. */
    size_t hl;
    if (rest[0] == '[') {
        const char *close = strchr(rest, ']');
        hl = close ? (size_t)(close - rest) + 1 : 0;
    } else {
        hl = strcspn(rest, ":/?#");
    }
    if (hl == 0 || (rest[0] == '[' && hl <= 2)) {
        at(d, FU_SEV_ERROR, &s->it.loc, "senders.%s.uri: no host in '%s'", s->it.id, u);
        return;
    }
    if (rest[0] == '<' && rest[hl - 1] == '>')
        at(d, FU_SEV_WARNING, &s->it.loc,
           "senders.%s.uri: host '%s' is a placeholder; set the Fusion server's address", s->it.id,
           u);
    if (rest[hl] && !strchr(":/?#", rest[hl])) {
        at(d, FU_SEV_ERROR, &s->it.loc, "senders.%s.uri: unexpected text after the host in '%s'",
           s->it.id, u);
        return;
    }
    if (rest[hl] == ':') {
        char *end;
        long port = strtol(rest + hl + 1, &end, 10);
        if (end == rest + hl + 1 || (*end && !strchr("/?#", *end)) || port < 1 || port > 65535)
            at(d, FU_SEV_ERROR, &s->it.loc, "senders.%s.uri: bad port in '%s' (expected 1-65535)",
               s->it.id, u);
    }
}

/* The fields of the rows the fs source sends (Fustor v1's FS row): what a mapping's
 * "field:type" can read. The agent's fieldmap.c knows the same list. */
static const char *const row_fields[] = {
    "path",         "file_name",   "size",         "modified_time", "created_time",
    "is_directory", "parent_path", "parent_mtime", "audit_skipped", "is_atomic_write"};

/* As Fustor v1: the field ends at the first ':', the type is all that follows. */
static bool type_suffix_ok(const char *spec)
{
    static const char *const types[] = {"string", "str",   "integer", "int",
                                        "number", "float", "boolean", "bool"};
    const char *c = strchr(spec, ':');
    if (!c)
        return true;
    for (size_t i = 0; i < FU_COUNT(types); i++)
        if (!strcmp(c + 1, types[i]))
            return true;
    return false;
}

static bool row_field_known(const char *spec)
{
    size_t n = strcspn(spec, ":");
    for (size_t i = 0; i < FU_COUNT(row_fields); i++)
        if (strlen(row_fields[i]) == n && !strncmp(spec, row_fields[i], n))
            return true;
    return false;
}

#define MAX_TO_DEPTH 32 /* keys in a dotted target; Fusion reads rows at most 64 deep */

/* One pipe's fields_mapping. Fustor v1 lets a later entry silently overwrite an earlier one
 * with the same target, and logs a warning on every row when a target is both a value and
 * an object ('x' and 'x.y'); both are refused here, once, with the entries' places. */
static void check_fields_mapping(const struct fu_cfg_apipe *p, struct fu_diags *d)
{
    for (size_t m = 0; m < p->fields_mapping.n; m++) {
        const struct fu_cfg_field_map *fm =
            FU_CFG_AT(&p->fields_mapping, struct fu_cfg_field_map, m);
        const struct fu_loc *l = fm->loc.file ? &fm->loc : &p->it.loc;
        if (!fm->to)
            continue; /* missing or empty: reported while parsing */
        if (!fm->source.n && !fm->hardcoded_value)
            fu_diags_add(d, FU_SEV_ERROR, l->file, l->line, l->col,
                         "pipes.%s.fields_mapping.%zu: mapping to '%s' needs 'source' or "
                         "'hardcoded_value'",
                         p->it.id, m, fm->to);
        if (fm->source.n && fm->hardcoded_value)
            fu_diags_add(d, FU_SEV_WARNING, l->file, l->line, l->col,
                         "pipes.%s.fields_mapping.%zu: mapping to '%s' has both 'source' and "
                         "'hardcoded_value'; the hardcoded value is sent",
                         p->it.id, m, fm->to);
        for (size_t k = 0; k < fm->source.n; k++)
            if (!type_suffix_ok(fm->source.v[k]))
                fu_diags_add(d, FU_SEV_ERROR, l->file, l->line, l->col,
                             "pipes.%s.fields_mapping.%zu: '%s': the type after ':' must be one "
                             "of string, str, integer, int, number, float, boolean, bool",
                             p->it.id, m, fm->source.v[k]);
        if (fm->source.n && !fm->hardcoded_value && !row_field_known(fm->source.v[0]))
            fu_diags_add(d, FU_SEV_WARNING, l->file, l->line, l->col,
                         "pipes.%s.fields_mapping.%zu: no row has the field '%.*s', so '%s' is "
                         "never sent; the fields are path, file_name, size, modified_time, "
                         "created_time, is_directory, parent_path, parent_mtime, audit_skipped "
                         "and is_atomic_write",
                         p->it.id, m, (int)strcspn(fm->source.v[0], ":"), fm->source.v[0], fm->to);
        size_t depth = 1;
        bool empty_key = fm->to[0] == '.' || fm->to[strlen(fm->to) - 1] == '.';
        for (const char *c = fm->to; *c; c++)
            if (*c == '.') {
                depth++;
                empty_key |= c[1] == '.';
            }
        if (empty_key)
            fu_diags_add(d, FU_SEV_ERROR, l->file, l->line, l->col,
                         "pipes.%s.fields_mapping.%zu: 'to: %s' has an empty key (a leading, "
                         "trailing or doubled '.')",
                         p->it.id, m, fm->to);
        else if (depth > MAX_TO_DEPTH)
            fu_diags_add(d, FU_SEV_ERROR, l->file, l->line, l->col,
                         "pipes.%s.fields_mapping.%zu: 'to: %s' nests %zu keys deep; at most %d",
                         p->it.id, m, fm->to, depth, MAX_TO_DEPTH);
        for (size_t j = 0; j < m; j++) {
            const struct fu_cfg_field_map *o =
                FU_CFG_AT(&p->fields_mapping, struct fu_cfg_field_map, j);
            if (!o->to)
                continue;
            size_t a = strlen(fm->to), b = strlen(o->to);
            if (a == b && !memcmp(fm->to, o->to, a)) {
                fu_diags_add(d, FU_SEV_ERROR, l->file, l->line, l->col,
                             "pipes.%s.fields_mapping.%zu: mapping %zu (line %d) already writes "
                             "'%s'; each target can be written by one mapping only",
                             p->it.id, m, j, o->loc.line, fm->to);
                break;
            }
            /* the shorter is a whole-key prefix of the longer: 'x' and 'x.y' */
            const char *s = a < b ? fm->to : o->to, *t = a < b ? o->to : fm->to;
            size_t sl = a < b ? a : b;
            if (!memcmp(s, t, sl) && t[sl] == '.') {
                fu_diags_add(d, FU_SEV_ERROR, l->file, l->line, l->col,
                             "pipes.%s.fields_mapping.%zu: 'to: %s' conflicts with 'to: %s' of "
                             "mapping %zu (line %d): '%s' cannot be both a value and an object",
                             p->it.id, m, fm->to, o->to, j, o->loc.line, s);
                break;
            }
        }
    }
}

void fu_agent_check(const struct fu_config *cfg, struct fu_diags *d)
{
    const struct fu_cfg_agent *a = &cfg->agent;
    for (size_t i = 0; i < a->sources.n; i++) {
        const struct fu_cfg_source *s = FU_CFG_AT(&a->sources, struct fu_cfg_source, i);
        if (!s->uri)
            continue;
        struct stat st;
        if (s->uri[0] != '/')
            at(d, FU_SEV_ERROR, &s->it.loc, "sources.%s.uri: expected an absolute path, got '%s'",
               s->it.id, s->uri);
        else if (stat(s->uri, &st) < 0)
            at(d, FU_SEV_WARNING, &s->it.loc,
               "sources.%s.uri: '%s' does not exist on this machine (yet)", s->it.id, s->uri);
        else if (!S_ISDIR(st.st_mode))
            at(d, FU_SEV_ERROR, &s->it.loc, "sources.%s.uri: '%s' is not a directory", s->it.id,
               s->uri);
    }
    for (size_t i = 0; i < a->senders.n; i++) {
        const struct fu_cfg_sender *s = FU_CFG_AT(&a->senders, struct fu_cfg_sender, i);
        for (size_t k = 0; k < s->uri.n; k++)
            check_sender_uri(s, s->uri.v[k], d);
        if (!s->credential.key && !s->disabled)
            at(d, FU_SEV_WARNING, &s->it.loc,
               "sender '%s' has no credential.key%s; Fusion will refuse its sessions", s->it.id,
               "");
    }
    for (size_t i = 0; i < a->pipes.n; i++) {
        const struct fu_cfg_apipe *p = FU_CFG_AT(&a->pipes, struct fu_cfg_apipe, i);
        /* Fustor v1 refuses two pipes over the same <source, sender> pair. */
        for (size_t j = 0; j < i; j++) {
            const struct fu_cfg_apipe *q = FU_CFG_AT(&a->pipes, struct fu_cfg_apipe, j);
            if (p->source.id && q->source.id && p->sender.id && q->sender.id &&
                !strcmp(p->source.id, q->source.id) && !strcmp(p->sender.id, q->sender.id))
                fu_diags_add(d, FU_SEV_ERROR, p->it.loc.file, p->it.loc.line, p->it.loc.col,
                             "pipe '%s' uses the same source and sender as pipe '%s' (%s:%d)",
                             p->it.id, q->it.id, q->it.loc.file, q->it.loc.line);
        }
        check_fields_mapping(p, d);
    }
}
