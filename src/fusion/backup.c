/* Backup and restore of Fusion's views (see backup.h). A backup runs in the running process,
 * on the service's main loop, asked for by the CLI (service.c); a restore runs in the CLI
 * while Fusion is stopped. Both copy files, never link them: DIR may be on another
 * filesystem. */
#include "fusion/backup.h"

#include "common/fsutil.h"
#include "common/json.h"
#include "common/log.h"
#include "fusion/fusion.h"
#include "fusion/snapshot.h"
#include "fusion/view_fs/state_io.h"
#include "version.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MANIFEST "MANIFEST.json"
#define MAX_MANIFEST (16u << 20)
#define MAX_VIEW_ID 128

/* As the config's ids: letters, digits, '.', '_', '-', starting with a letter or digit; so
 * never "", ".", ".." nor anything holding a '/'. */
static bool view_id_ok(const char *s, size_t len)
{
    if (len == 0 || len > MAX_VIEW_ID || !isalnum((unsigned char)s[0]))
        return false;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("._-", s[i]))
            return false;
    return true;
}

/* "<view>/snapshot-<16 hex>.fsnap" for (view, pos), into out. */
static void rel_file(char *out, size_t n, const char *view, uint64_t pos)
{
    snprintf(out, n, "%s/snapshot-%016" PRIx64 ".fsnap", view, pos);
}

static void iso_now(char *out, size_t n, double t)
{
    time_t s = (time_t)t;
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------ backup */

/* A view backed up: where its copy went and what it holds. */
struct taken {
    const char *view_id; /* borrowed */
    char *subdir;        /* dir/<view>, owned; NULL until created */
    char *copy;          /* the copied file, owned; NULL until written */
    struct fu_snapshot_info info;
    uint64_t entries, bytes;
    bool copy_failed;
};

/* fu_view_snapshot_then's hook: copies the new snapshot into the view's backup directory. */
static int copy_snapshot(void *ctx, const char *path, const struct fu_snapshot_info *info,
                         uint64_t entries)
{
    struct taken *t = ctx;
    const char *name = strrchr(path, '/');
    t->info = *info;
    t->entries = entries;
    t->copy = fu_path_join(t->subdir, name ? name + 1 : path);
    int rc = t->copy ? fu_copy_file_atomic(path, t->copy, 0640, &t->bytes) : -ENOMEM;
    if (!rc)
        rc = fu_fsync_dir(t->subdir);
    if (rc) {
        free(t->copy);
        t->copy = NULL;
        t->copy_failed = true;
    }
    return rc;
}

static void manifest_json(struct fu_buf *out, const struct taken *t, size_t n, double now)
{
    char ts[40];
    iso_now(ts, sizeof(ts), now);
    struct fu_jw w;
    fu_jw_init(&w, out);
    fu_jw_obj_begin(&w);
    fu_jw_ckey(&w, "fustor_backup");
    fu_jw_int(&w, FU_BACKUP_FORMAT);
    fu_jw_ckey(&w, "fustor_version");
    fu_jw_cstr(&w, FU_VERSION " (" FU_GIT_REV ")");
    fu_jw_ckey(&w, "created_at");
    fu_jw_cstr(&w, ts);
    fu_jw_ckey(&w, "snapshot_format");
    fu_jw_int(&w, FU_SNAPSHOT_FORMAT);
    fu_jw_ckey(&w, "state_format");
    fu_jw_int(&w, FU_STATE_FORMAT);
    fu_jw_ckey(&w, "views");
    fu_jw_arr_begin(&w);
    for (size_t i = 0; i < n; i++) {
        char file[MAX_VIEW_ID + 48];
        rel_file(file, sizeof(file), t[i].view_id, t[i].info.position);
        fu_jw_obj_begin(&w);
        fu_jw_ckey(&w, "view_id");
        fu_jw_cstr(&w, t[i].view_id);
        fu_jw_ckey(&w, "file");
        fu_jw_cstr(&w, file);
        fu_jw_ckey(&w, "position");
        fu_jw_uint(&w, t[i].info.position);
        fu_jw_ckey(&w, "entries");
        fu_jw_uint(&w, t[i].entries);
        fu_jw_ckey(&w, "bytes");
        fu_jw_uint(&w, t[i].bytes);
        fu_jw_ckey(&w, "created_at");
        fu_jw_double(&w, t[i].info.created_at);
        fu_jw_obj_end(&w);
    }
    fu_jw_arr_end(&w);
    fu_jw_obj_end(&w);
    fu_buf_putc(out, '\n');
}

/* Whether `dir` may receive a backup: absent (then created, *created set) or empty. */
static int prepare_dir(const char *dir, bool *created, char *err, size_t errlen)
{
    *created = false;
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) {
            snprintf(err, errlen, "%s exists and is not a directory", dir);
            return -ENOTDIR;
        }
        int e = fu_dir_is_empty(dir);
        if (e < 0) {
            snprintf(err, errlen, "cannot list %s: %s", dir, strerror(-e));
            return e;
        }
        if (!e) {
            snprintf(err, errlen,
                     "%s is not empty: a backup goes into a new or empty directory (nothing "
                     "was written)",
                     dir);
            return -ENOTEMPTY;
        }
        return 0;
    }
    if (errno != ENOENT) {
        int e = -errno;
        snprintf(err, errlen, "cannot use %s: %s", dir, strerror(-e));
        return e;
    }
    int rc = fu_mkdirs(dir, 0750);
    if (rc < 0) {
        snprintf(err, errlen, "cannot create %s: %s", dir, strerror(-rc));
        return rc;
    }
    *created = true;
    char *parent = strdup(dir);
    char *slash = parent ? strrchr(parent, '/') : NULL;
    if (slash) {
        slash[slash == parent] = '\0';
        fu_fsync_dir(parent);
    }
    free(parent);
    return 0;
}

int fu_backup_take(struct fu_view *const *views, size_t n, const char *dir, struct fu_buf *manifest,
                   char *err, size_t errlen)
{
    if (!n) {
        snprintf(err, errlen, "there is no view to back up (no enabled view in the config)");
        return -ENOENT;
    }
    for (size_t i = 0; i < n; i++) {
        if (!views[i]->journal) {
            snprintf(err, errlen,
                     "view %s has no storage (journal.enabled is false in the Fusion config): "
                     "there is nothing durable to back up",
                     views[i]->id);
            return -ENOTSUP;
        }
    }
    if (dir[0] != '/') {
        snprintf(err, errlen, "the backup directory must be an absolute path, got '%s'", dir);
        return -EINVAL;
    }
    bool created;
    int rc = prepare_dir(dir, &created, err, errlen);
    if (rc < 0)
        return rc;
    struct taken *t = calloc(n, sizeof(*t));
    char *mpath = fu_path_join(dir, MANIFEST);
    if (!t || !mpath) {
        snprintf(err, errlen, "out of memory");
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n && !rc; i++) {
        struct fu_view *v = views[i];
        t[i].view_id = v->id;
        t[i].subdir = fu_path_join(dir, v->id);
        if (!t[i].subdir) {
            snprintf(err, errlen, "out of memory");
            rc = -ENOMEM;
            break;
        }
        if (mkdir(t[i].subdir, 0750) < 0) {
            rc = -errno;
            snprintf(err, errlen, "view %s: cannot create %s: %s", v->id, t[i].subdir,
                     strerror(-rc));
            free(t[i].subdir);
            t[i].subdir = NULL;
            break;
        }
        struct fu_snapshot_info info;
        rc = fu_view_snapshot_then(v, &info, copy_snapshot, &t[i]);
        if (rc < 0 && t[i].copy_failed)
            snprintf(err, errlen, "view %s: cannot copy its snapshot into %s: %s", v->id,
                     t[i].subdir, strerror(-rc));
        else if (rc < 0)
            snprintf(err, errlen, "view %s: cannot take a snapshot: %s (see the log)", v->id,
                     strerror(-rc));
    }
    if (!rc && (rc = fu_fsync_dir(dir)) < 0)
        snprintf(err, errlen, "cannot sync %s: %s", dir, strerror(-rc));
    if (!rc) {
        fu_buf_reset(manifest);
        manifest_json(manifest, t, n, wall_now());
        rc = manifest->oom ? -ENOMEM
                           : fu_write_file_atomic(mpath, manifest->data, manifest->len, 0640);
        if (!rc)
            rc = fu_fsync_dir(dir);
        if (rc < 0)
            snprintf(err, errlen, "cannot write %s: %s", mpath, strerror(-rc));
    }
    if (!rc) {
        for (size_t i = 0; i < n; i++)
            fu_info("backup: view %s: snapshot at journal position %" PRIu64 " (%" PRIu64
                    " entries, %" PRIu64 " bytes) copied into %s",
                    t[i].view_id, t[i].info.position, t[i].entries, t[i].bytes, t[i].subdir);
    }
out:
    if (rc < 0) { /* leave nothing behind: a half backup only misleads */
        if (mpath)
            unlink(mpath);
        for (size_t i = 0; t && i < n; i++) {
            if (t[i].copy)
                unlink(t[i].copy);
            if (t[i].subdir)
                rmdir(t[i].subdir);
        }
        if (created)
            rmdir(dir);
    }
    for (size_t i = 0; t && i < n; i++) {
        free(t[i].subdir);
        free(t[i].copy);
    }
    free(t);
    free(mpath);
    return rc;
}

/* ------------------------------------------------------------ manifest */

static bool key_is(const struct fu_jr *r, const char *k)
{
    return r->str_len == strlen(k) && !memcmp(r->str, k, r->str_len);
}

/* A non-negative integer value, or false. */
static bool get_count(const struct fu_jr *r, enum fu_json_tok t, uint64_t *out)
{
    if (t != FU_JSON_INT || r->i64 < 0)
        return false;
    *out = (uint64_t)r->i64;
    return true;
}

static const char *tok_name(enum fu_json_tok t)
{
    switch (t) {
    case FU_JSON_OBJ_BEGIN:
        return "an object";
    case FU_JSON_ARR_BEGIN:
        return "an array";
    case FU_JSON_STRING:
        return "a string";
    case FU_JSON_INT:
    case FU_JSON_DOUBLE:
        return "a number";
    case FU_JSON_TRUE:
    case FU_JSON_FALSE:
        return "a boolean";
    case FU_JSON_NULL:
        return "null";
    default:
        return "nothing";
    }
}

/* Parses views[i] (its OBJ_BEGIN just read). 0 or -EINVAL with err. */
static int parse_view(struct fu_jr *r, size_t i, struct fu_backup_view *v, char *err, size_t errlen)
{
    enum fu_json_tok t;
    bool have_pos = false;
    while ((t = fu_jr_next(r)) == FU_JSON_KEY) {
        char key[32];
        snprintf(key, sizeof(key), "%.*s", (int)(r->str_len < 31 ? r->str_len : 31), r->str);
        bool k_id = key_is(r, "view_id"), k_file = key_is(r, "file");
        bool k_pos = key_is(r, "position"), k_ent = key_is(r, "entries");
        bool k_bytes = key_is(r, "bytes"), k_created = key_is(r, "created_at");
        t = fu_jr_next(r);
        if (t == FU_JSON_ERROR)
            break;
        const char *want = NULL;
        if (k_id || k_file) {
            if (t != FU_JSON_STRING) {
                want = "a string";
            } else if (memchr(r->str, '\0', r->str_len)) {
                snprintf(err, errlen, "views[%zu].%s must be a string without NUL bytes", i, key);
                return -EINVAL;
            } else {
                char **slot = k_id ? &v->view_id : &v->file;
                free(*slot);
                *slot = strndup(r->str, r->str_len);
                if (!*slot) {
                    snprintf(err, errlen, "out of memory");
                    return -ENOMEM;
                }
            }
        } else if (k_pos || k_ent || k_bytes) {
            uint64_t *slot = k_pos ? &v->position : k_ent ? &v->entries : &v->bytes;
            if (!get_count(r, t, slot))
                want = "a non-negative integer";
            have_pos |= k_pos;
        } else if (k_created) {
            if (t == FU_JSON_INT)
                v->created_at = (double)r->i64;
            else if (t == FU_JSON_DOUBLE)
                v->created_at = r->dbl;
            else
                want = "a number";
        } else if (t == FU_JSON_OBJ_BEGIN || t == FU_JSON_ARR_BEGIN) {
            fu_jr_skip(r); /* a later Fusion's field */
        }
        if (want) {
            snprintf(err, errlen, "views[%zu].%s must be %s, not %s", i, key, want, tok_name(t));
            return -EINVAL;
        }
    }
    if (t != FU_JSON_OBJ_END)
        return -EINVAL; /* a JSON error: reported by the caller */
    if (!v->view_id || !v->file || !have_pos) {
        snprintf(err, errlen, "views[%zu] lacks %s", i,
                 !v->view_id ? "view_id"
                 : !v->file  ? "file"
                             : "position");
        return -EINVAL;
    }
    if (!view_id_ok(v->view_id, strlen(v->view_id))) {
        snprintf(err, errlen,
                 "views[%zu].view_id is not a view id (1-%d letters, digits, '.', '_' or '-', "
                 "starting with a letter or digit)",
                 i, MAX_VIEW_ID);
        return -EINVAL;
    }
    char want[MAX_VIEW_ID + 48];
    rel_file(want, sizeof(want), v->view_id, v->position);
    if (strcmp(v->file, want)) {
        snprintf(err, errlen, "views[%zu] (view %s): file must be \"%s\" for position %" PRIu64, i,
                 v->view_id, want, v->position);
        return -EINVAL;
    }
    return 0;
}

int fu_backup_manifest_parse(const char *text, size_t len, struct fu_backup_manifest *m, char *err,
                             size_t errlen)
{
    memset(m, 0, sizeof(*m));
    m->format = m->snapshot_format = m->state_format = -1;
    struct fu_jr r;
    fu_jr_init(&r, text, len);
    int rc = 0;
    bool have_views = false;
    size_t cap = 0;
    enum fu_json_tok t = fu_jr_next(&r);
    if (t != FU_JSON_OBJ_BEGIN) {
        if (t != FU_JSON_ERROR)
            snprintf(err, errlen, "expected a JSON object, found %s", tok_name(t));
        rc = -EINVAL;
    }
    while (!rc && (t = fu_jr_next(&r)) == FU_JSON_KEY) {
        char key[32];
        snprintf(key, sizeof(key), "%.*s", (int)(r.str_len < 31 ? r.str_len : 31), r.str);
        bool k_fmt = key_is(&r, "fustor_backup"), k_ver = key_is(&r, "fustor_version");
        bool k_snap = key_is(&r, "snapshot_format"), k_state = key_is(&r, "state_format");
        bool k_views = key_is(&r, "views");
        t = fu_jr_next(&r);
        if (t == FU_JSON_ERROR) {
            rc = -EINVAL;
            break;
        }
        if (k_fmt || k_snap || k_state) {
            int64_t *slot = k_fmt ? &m->format : k_snap ? &m->snapshot_format : &m->state_format;
            if (t != FU_JSON_INT || r.i64 < 0) {
                snprintf(err, errlen, "%s must be a non-negative integer, not %s", key,
                         tok_name(t));
                rc = -EINVAL;
            } else {
                *slot = r.i64;
            }
        } else if (k_ver) {
            if (t == FU_JSON_STRING && !memchr(r.str, '\0', r.str_len)) {
                free(m->fustor_version);
                m->fustor_version = strndup(r.str, r.str_len);
            } else if (t != FU_JSON_NULL) {
                snprintf(err, errlen, "fustor_version must be a string, not %s", tok_name(t));
                rc = -EINVAL;
            }
        } else if (k_views) {
            if (have_views)
                snprintf(err, errlen, "views is given twice");
            else if (t != FU_JSON_ARR_BEGIN)
                snprintf(err, errlen, "views must be an array of objects, not %s", tok_name(t));
            if (have_views || t != FU_JSON_ARR_BEGIN) {
                rc = -EINVAL;
                break;
            }
            have_views = true;
            while (!rc && (t = fu_jr_next(&r)) != FU_JSON_ARR_END) {
                if (t == FU_JSON_ERROR) {
                    rc = -EINVAL;
                    break;
                }
                if (t != FU_JSON_OBJ_BEGIN) {
                    snprintf(err, errlen, "views[%zu] must be an object, not %s", m->nviews,
                             tok_name(t));
                    rc = -EINVAL;
                    break;
                }
                if (m->nviews == cap) {
                    cap = cap ? cap * 2 : 8;
                    struct fu_backup_view *nv = realloc(m->views, cap * sizeof(*nv));
                    if (!nv) {
                        snprintf(err, errlen, "out of memory");
                        rc = -ENOMEM;
                        break;
                    }
                    m->views = nv;
                }
                struct fu_backup_view *v = &m->views[m->nviews++];
                memset(v, 0, sizeof(*v));
                rc = parse_view(&r, m->nviews - 1, v, err, errlen);
                for (size_t k = 0; !rc && k + 1 < m->nviews; k++) {
                    if (!strcmp(m->views[k].view_id, v->view_id)) {
                        snprintf(err, errlen, "view %s is listed twice", v->view_id);
                        rc = -EINVAL;
                    }
                }
            }
        } else if (t == FU_JSON_OBJ_BEGIN || t == FU_JSON_ARR_BEGIN) {
            fu_jr_skip(&r); /* a later Fusion's field */
        }
    }
    if (!rc && t == FU_JSON_OBJ_END && fu_jr_next(&r) != FU_JSON_EOF)
        t = FU_JSON_ERROR;
    if (r.err_msg) {
        snprintf(err, errlen, "not valid JSON: %s at byte %zu", r.err_msg, r.err_off);
        rc = -EINVAL;
    } else if (!rc && t != FU_JSON_OBJ_END && t != FU_JSON_EOF) {
        snprintf(err, errlen, "not valid JSON");
        rc = -EINVAL;
    } else if (!rc) {
        const char *missing = m->format < 0            ? "fustor_backup"
                              : m->snapshot_format < 0 ? "snapshot_format"
                              : m->state_format < 0    ? "state_format"
                              : !have_views            ? "views"
                                                       : NULL;
        if (missing) {
            snprintf(err, errlen, "%s is missing", missing);
            rc = -EINVAL;
        } else if (!m->nviews) {
            snprintf(err, errlen, "views is empty: the backup holds no view");
            rc = -EINVAL;
        }
    }
    fu_jr_free(&r);
    if (rc)
        fu_backup_manifest_free(m);
    return rc;
}

void fu_backup_manifest_free(struct fu_backup_manifest *m)
{
    for (size_t i = 0; i < m->nviews; i++) {
        free(m->views[i].view_id);
        free(m->views[i].file);
    }
    free(m->views);
    free(m->fustor_version);
    memset(m, 0, sizeof(*m));
}

/* ------------------------------------------------------------ restore */

/* Checks a view's snapshot in the backup: it reads (header, CRCs, format), covers the
 * manifest's position, and its state loads. *entries = the entries it holds. */
static int check_snapshot(const char *dir, const struct fu_backup_view *bv, uint64_t *entries,
                          uint64_t *bytes, char *err, size_t errlen)
{
    char *path = fu_path_join(dir, bv->file);
    if (!path) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    struct fu_buf state = FU_BUF_INIT;
    struct fu_snapshot_info info;
    char why[1024];
    int rc = fu_snapshot_read(path, FU_STATE_FORMAT, &state, &info, why, sizeof(why));
    if (rc == -EPROTO) {
        snprintf(err, errlen, "view %s: %s", bv->view_id, why);
    } else if (rc < 0) {
        snprintf(err, errlen, "view %s: %s: the backup is damaged or incomplete", bv->view_id, why);
    } else if (info.position != bv->position) {
        snprintf(err, errlen,
                 "view %s: %s covers journal position %" PRIu64 ", the manifest says %" PRIu64
                 ": the backup is inconsistent",
                 bv->view_id, path, info.position, bv->position);
        rc = -EINVAL;
    }
    if (!rc) {
        struct fu_tree tree;
        struct fu_fs fs;
        if (fu_tree_init(&tree) < 0 || fu_fs_init(&fs, &tree, 1, 3600) < 0) {
            fu_tree_free(&tree);
            snprintf(err, errlen, "out of memory");
            rc = -ENOMEM;
        } else {
            rc = fu_state_read(&tree, &fs, state.data, state.len);
            if (rc < 0)
                snprintf(err, errlen,
                         "view %s: the state in %s does not load (%s): the backup "
                         "is damaged",
                         bv->view_id, path, strerror(-rc));
            *entries = fu_tree_count(&tree);
            *bytes = info.file_bytes;
            fu_fs_free(&fs);
            fu_tree_free(&tree);
        }
    }
    fu_buf_free(&state);
    free(path);
    return rc;
}

/* Removes a directory holding only files (a restore's temp directory left by a crash). */
static void remove_flat_dir(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char *p = fu_path_join(path, e->d_name);
        if (p)
            unlink(p);
        free(p);
    }
    closedir(d);
    rmdir(path);
}

/* Puts one view in place: a fresh directory with the backup's snapshot alone, built aside
 * and renamed in, the old one renamed <view>.before-restore-<stamp>. */
static int restore_view(const char *views_dir, const char *dir, const struct fu_backup_view *bv,
                        uint64_t entries, const char *stamp, struct fu_strv *done, char *err,
                        size_t errlen)
{
    char name[MAX_VIEW_ID + 64];
    snprintf(name, sizeof(name), ".%s.restore-tmp", bv->view_id);
    char *tmp = fu_path_join(views_dir, name);
    char *target = fu_path_join(views_dir, bv->view_id);
    char *src = fu_path_join(dir, bv->file);
    const char *base = strrchr(bv->file, '/') + 1; /* the manifest check made sure of the '/' */
    char *dst = tmp ? fu_path_join(tmp, base) : NULL;
    char *aside = NULL;
    int rc = 0;
    if (!tmp || !target || !src || !dst) {
        snprintf(err, errlen, "out of memory");
        rc = -ENOMEM;
        goto out;
    }
    remove_flat_dir(tmp);
    if (mkdir(tmp, 0750) < 0) {
        rc = -errno;
        snprintf(err, errlen, "view %s: cannot create %s: %s", bv->view_id, tmp, strerror(-rc));
        goto out;
    }
    rc = fu_copy_file_atomic(src, dst, 0640, NULL);
    if (!rc)
        rc = fu_fsync_dir(tmp);
    if (rc < 0) {
        snprintf(err, errlen, "view %s: cannot copy %s into %s: %s", bv->view_id, src, tmp,
                 strerror(-rc));
        remove_flat_dir(tmp);
        goto out;
    }
    struct stat st;
    if (lstat(target, &st) == 0) {
        struct fu_buf a = FU_BUF_INIT;
        for (int k = 1; k < 1000; k++) {
            fu_buf_reset(&a);
            fu_buf_printf(&a, "%s.before-restore-%s", target, stamp);
            if (k > 1)
                fu_buf_printf(&a, "-%d", k);
            if (a.oom || lstat(fu_buf_str(&a), &st) < 0)
                break;
        }
        aside = fu_buf_detach(&a);
        if (!aside || rename(target, aside) < 0) {
            rc = aside ? -errno : -ENOMEM;
            snprintf(err, errlen, "view %s: cannot move %s aside: %s", bv->view_id, target,
                     strerror(-rc));
            remove_flat_dir(tmp);
            goto out;
        }
    }
    if (rename(tmp, target) < 0) {
        rc = -errno;
        snprintf(err, errlen, "view %s: cannot rename %s to %s: %s", bv->view_id, tmp, target,
                 strerror(-rc));
        if (aside)
            rename(aside, target);
        remove_flat_dir(tmp);
        goto out;
    }
    fu_fsync_dir(views_dir);
    struct fu_buf line = FU_BUF_INIT;
    fu_buf_printf(&line,
                  "view %s: restored the snapshot at journal position %" PRIu64 " (%" PRIu64
                  " entries) into %s",
                  bv->view_id, bv->position, entries, target);
    fu_strv_push(done, fu_buf_str(&line));
    fu_buf_reset(&line);
    if (aside)
        fu_buf_printf(&line,
                      "view %s: its previous data is kept in %s (remove it once the "
                      "restored view is checked)",
                      bv->view_id, aside);
    else
        fu_buf_printf(&line, "view %s: had no data directory before", bv->view_id);
    fu_strv_push(done, fu_buf_str(&line));
    fu_buf_free(&line);
out:
    free(aside);
    free(dst);
    free(src);
    free(target);
    free(tmp);
    return rc;
}

/* Lines for the view directories in views_dir the backup does not hold. */
static void note_left_alone(const char *views_dir, const struct fu_backup_manifest *m,
                            struct fu_strv *done)
{
    DIR *d = opendir(views_dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || strstr(e->d_name, ".before-restore-"))
            continue;
        bool in = false;
        for (size_t i = 0; i < m->nviews && !in; i++)
            in = !strcmp(m->views[i].view_id, e->d_name);
        struct stat st;
        char *p = fu_path_join(views_dir, e->d_name);
        bool is_dir = p && stat(p, &st) == 0 && S_ISDIR(st.st_mode);
        free(p);
        if (in || !is_dir)
            continue;
        struct fu_buf line = FU_BUF_INIT;
        fu_buf_printf(&line, "view %s: not in the backup: its data directory is left as it is",
                      e->d_name);
        fu_strv_push(done, fu_buf_str(&line));
        fu_buf_free(&line);
    }
    closedir(d);
}

int fu_backup_restore(const char *home, const char *dir, struct fu_strv *done, char *err,
                      size_t errlen)
{
    struct stat st;
    if (stat(dir, &st) < 0) {
        int e = -errno;
        snprintf(err, errlen, "cannot use the backup directory %s: %s", dir, strerror(-e));
        return e;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s is not a directory: give the directory `backup` wrote", dir);
        return -ENOTDIR;
    }
    char *mpath = fu_path_join(dir, MANIFEST);
    char *views_dir = fu_path_join(home, "data/views");
    struct fu_buf text = FU_BUF_INIT;
    struct fu_backup_manifest m = {0};
    uint64_t *entries = NULL;
    int rc = mpath && views_dir ? fu_read_file(mpath, MAX_MANIFEST, &text) : -ENOMEM;
    if (rc == -ENOENT) {
        snprintf(err, errlen,
                 "%s has no " MANIFEST ": it is not a Fustor backup, or an incomplete one (a "
                 "backup writes its manifest last)",
                 dir);
    } else if (rc == -EFBIG) {
        snprintf(err, errlen, "%s is larger than %u MiB: not a backup manifest", mpath,
                 MAX_MANIFEST >> 20);
    } else if (rc == -EISDIR || rc == -EINVAL) {
        snprintf(err, errlen, "%s is not a regular file", mpath);
    } else if (rc < 0) {
        snprintf(err, errlen, "cannot read %s: %s", mpath ? mpath : MANIFEST, strerror(-rc));
    }
    if (rc < 0)
        goto out;
    char why[1024] = "";
    rc = fu_backup_manifest_parse(fu_buf_str(&text), text.len, &m, why, sizeof(why));
    if (rc < 0) {
        snprintf(err, errlen, "%s: %s", mpath, why);
        goto out;
    }
    const char *by = m.fustor_version ? m.fustor_version : "an unknown version";
    if (m.format > FU_BACKUP_FORMAT) {
        snprintf(err, errlen,
                 "%s is of backup format %" PRId64 " (written by Fusion %s); this Fusion (%s) "
                 "reads backup format %d and older: restore it with a Fusion as new as the one "
                 "that made it",
                 mpath, m.format, by, FU_VERSION, FU_BACKUP_FORMAT);
        rc = -EPROTO;
        goto out;
    }
    if (m.snapshot_format > FU_SNAPSHOT_FORMAT || m.state_format > FU_STATE_FORMAT) {
        snprintf(err, errlen,
                 "the backup in %s holds snapshots of format %" PRId64 " (state format %" PRId64
                 "), written by Fusion %s; this Fusion (%s) reads snapshot format %d (state "
                 "format %d) and older: restore it with a Fusion as new as the one that made it",
                 dir, m.snapshot_format, m.state_format, by, FU_VERSION, FU_SNAPSHOT_FORMAT,
                 FU_STATE_FORMAT);
        rc = -EPROTO;
        goto out;
    }
    entries = calloc(m.nviews, sizeof(*entries));
    if (!entries) {
        snprintf(err, errlen, "out of memory");
        rc = -ENOMEM;
        goto out;
    }
    /* Everything is checked before anything is touched. */
    for (size_t i = 0; i < m.nviews && !rc; i++) {
        uint64_t bytes;
        rc = check_snapshot(dir, &m.views[i], &entries[i], &bytes, err, errlen);
    }
    if (rc < 0)
        goto out;
    rc = fu_mkdirs(views_dir, 0750);
    if (rc < 0) {
        snprintf(err, errlen, "cannot create %s: %s", views_dir, strerror(-rc));
        goto out;
    }
    char stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%S", &tm);
    for (size_t i = 0; i < m.nviews && !rc; i++)
        rc = restore_view(views_dir, dir, &m.views[i], entries[i], stamp, done, err, errlen);
    if (rc < 0)
        goto out;
    note_left_alone(views_dir, &m, done);
    struct fu_buf line = FU_BUF_INIT;
    fu_buf_printf(&line,
                  "restore complete: %zu view%s from %s. At its next start Fusion loads them "
                  "under a new incarnation, so each pipe's leader reconciles its view with a "
                  "full audit",
                  m.nviews, m.nviews == 1 ? "" : "s", dir);
    fu_strv_push(done, fu_buf_str(&line));
    fu_buf_free(&line);
out:
    free(entries);
    fu_backup_manifest_free(&m);
    fu_buf_free(&text);
    free(views_dir);
    free(mpath);
    return rc;
}

/* ------------------------------------------------------------ purge */

/* Files and bytes of a directory holding only files. */
static void dir_usage(const char *path, size_t *files, uint64_t *bytes)
{
    *files = 0;
    *bytes = 0;
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *e;
    struct stat st;
    while ((e = readdir(d)))
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode)) {
            (*files)++;
            *bytes += (uint64_t)st.st_size;
        }
    closedir(d);
}

int fu_backup_purge(const char *home, const struct fu_strv *configured, const struct fu_strv *names,
                    struct fu_strv *done, char *err, size_t errlen)
{
    char *views_dir = fu_path_join(home, "data/views");
    if (!views_dir)
        return -ENOMEM;
    int rc = 0;
    struct fu_buf line = FU_BUF_INIT;
    if (!names->n) { /* a list of what could go */
        DIR *d = opendir(views_dir);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            char *path = e->d_name[0] != '.' ? fu_path_join(views_dir, e->d_name) : NULL;
            struct stat st;
            if (path && stat(path, &st) == 0 && S_ISDIR(st.st_mode) &&
                !fu_strv_has(configured, e->d_name)) {
                size_t files;
                uint64_t bytes;
                dir_usage(path, &files, &bytes);
                fu_buf_reset(&line);
                fu_buf_printf(&line,
                              "%s: no configured view uses it (%zu files, %" PRIu64
                              " bytes); `purge %s` deletes it",
                              path, files, bytes, e->d_name);
                fu_strv_push(done, fu_buf_str(&line));
            }
            free(path);
        }
        if (d)
            closedir(d);
        goto out;
    }
    /* Every name is checked before anything goes. */
    for (size_t i = 0; i < names->n && !rc; i++) {
        const char *n = names->v[i];
        char *path = fu_path_join(views_dir, n);
        struct stat st;
        if (!view_id_ok(n, strlen(n)) && !strstr(n, ".before-restore-")) {
            snprintf(err, errlen, "'%s' is not a view's data directory name", n);
            rc = -EINVAL;
        } else if (fu_strv_has(configured, n)) {
            snprintf(err, errlen,
                     "view %s is in the config: remove it from the config and reload first; "
                     "nothing was deleted",
                     n);
            rc = -EBUSY;
        } else if (!path || stat(path, &st) < 0 || !S_ISDIR(st.st_mode)) {
            snprintf(err, errlen, "%s/%s: no such data directory; nothing was deleted", views_dir,
                     n);
            rc = -ENOENT;
        }
        free(path);
    }
    for (size_t i = 0; i < names->n && !rc; i++) {
        const char *n = names->v[i];
        char *path = fu_path_join(views_dir, n), *lock = path ? fu_path_join(path, "lock") : NULL;
        int fd = lock ? open(lock, O_RDWR | O_CLOEXEC) : -1;
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
        if (fd >= 0 && fcntl(fd, F_OFD_SETLK, &fl) < 0) {
            snprintf(err, errlen,
                     "view %s is open in the running Fusion: reload it with the view removed "
                     "from the config first",
                     n);
            rc = -EBUSY;
        } else {
            /* Renamed first: a crash halfway leaves a hidden directory, never half a view. */
            char gone[MAX_VIEW_ID + 64];
            snprintf(gone, sizeof(gone), ".purge-%.*s-%ld", MAX_VIEW_ID, n, (long)getpid());
            char *tmp = fu_path_join(views_dir, gone);
            size_t files;
            uint64_t bytes;
            dir_usage(path, &files, &bytes);
            if (!tmp || rename(path, tmp) < 0) {
                rc = tmp ? -errno : -ENOMEM;
                snprintf(err, errlen, "cannot remove %s: %s", path, strerror(-rc));
            } else {
                remove_flat_dir(tmp);
                fu_fsync_dir(views_dir);
                fu_buf_reset(&line);
                fu_buf_printf(&line, "%s deleted (%zu files, %" PRIu64 " bytes)", path, files,
                              bytes);
                fu_strv_push(done, fu_buf_str(&line));
            }
            free(tmp);
        }
        if (fd >= 0)
            close(fd);
        free(lock);
        free(path);
    }
out:
    fu_buf_free(&line);
    free(views_dir);
    return rc;
}

/* ------------------------------------------------------------ hooks */

/* Runs on the service's main loop, where a reload also runs, so the views cannot change
 * meanwhile; the shape lock says so for any other caller. */
static int backup_hook(void *rt, const char *dir, struct fu_buf *manifest, char *err, size_t errlen)
{
    struct fu_fusion *f = rt;
    pthread_rwlock_rdlock(&f->shape);
    int rc = fu_backup_take(f->views, f->nviews, dir, manifest, err, errlen);
    pthread_rwlock_unlock(&f->shape);
    return rc;
}

const struct fu_app_backup fu_fusion_backup_hooks = {
    .backup = backup_hook,
    .restore = fu_backup_restore,
    .purge = fu_backup_purge,
};
