/* The fs source's parallel walk; see scan.h. Each worker takes a directory from a shared
 * stack, opens it (O_NOFOLLOW), stats it (fstat: its own row, its device, its loop key), lists
 * it with getdents64 and stats its entries with statx relative to the directory's fd. Found
 * subdirectories go back on the stack; rows collect in the worker's chunk until it is full or
 * the worker runs out of work. */
#include "agent/source_fs/scan.h"

#include "common/buf.h"
#include "common/crc32c.h"
#include "common/fsutil.h"
#include "common/le.h"
#include "common/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <xxhash.h>

#define MAX_LOGGED_ERRORS 20 /* per walk; the rest are only counted */

/* ------------------------------------------------------------ exclusion */

bool fu_scan_excluded(const struct fu_strv *exclude, const char *name, const char *relpath)
{
    if (!exclude)
        return false;
    for (size_t i = 0; i < exclude->n; i++) {
        const char *g = exclude->v[i];
        /* Names that are a literal, or a literal and one trailing '*' (as the clock probe's),
         * are compared without fnmatch: every entry of every walk meets them. */
        size_t lit = strcspn(g, "*?[\\/");
        if (!g[lit] || (g[lit] == '*' && !g[lit + 1])) {
            if (g[lit] ? !strncmp(name, g, lit) : !strcmp(name, g))
                return true;
            continue;
        }
        if (strchr(g, '/') ? fnmatch(g, relpath, FNM_PATHNAME | FNM_PERIOD) == 0
                           : fnmatch(g, name, FNM_PERIOD) == 0 || fnmatch(g, name, 0) == 0)
            return true;
    }
    return false;
}

/* ------------------------------------------------------------ directory-mtime cache */

struct dc_ent {
    char *path;
    uint64_t hash;
    double mtime;
    uint32_t gen; /* the walk that saw it last */
};

struct fu_dircache {
    pthread_mutex_t mu;
    struct dc_ent *v;
    size_t cap, n; /* open addressing, load <= 1/2 */
    uint32_t gen;  /* the walk under way (fu_dircache_begin) */
};

struct fu_dircache *fu_dircache_new(void)
{
    struct fu_dircache *c = calloc(1, sizeof(*c));
    if (c)
        pthread_mutex_init(&c->mu, NULL);
    return c;
}

void fu_dircache_free(struct fu_dircache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->cap; i++)
        free(c->v[i].path);
    free(c->v);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

size_t fu_dircache_size(struct fu_dircache *c)
{
    pthread_mutex_lock(&c->mu);
    size_t n = c->n;
    pthread_mutex_unlock(&c->mu);
    return n;
}

static struct dc_ent *dc_slot(struct dc_ent *v, size_t cap, const char *path, uint64_t h)
{
    for (size_t i = h & (cap - 1);; i = (i + 1) & (cap - 1))
        if (!v[i].path || (v[i].hash == h && !strcmp(v[i].path, path)))
            return &v[i];
}

/* Sets path's mtime, returning the one cached before (NAN when none). */
static double dc_swap(struct fu_dircache *c, const char *path, double mtime)
{
    uint64_t h = XXH3_64bits(path, strlen(path));
    double old = NAN;
    pthread_mutex_lock(&c->mu);
    if ((c->n + 1) * 2 > c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 256;
        struct dc_ent *v = calloc(cap, sizeof(*v));
        if (!v)
            goto out; /* out of memory: nothing cached, the audit lists everything */
        for (size_t i = 0; i < c->cap; i++)
            if (c->v[i].path)
                *dc_slot(v, cap, c->v[i].path, c->v[i].hash) = c->v[i];
        free(c->v);
        c->v = v;
        c->cap = cap;
    }
    struct dc_ent *e = dc_slot(c->v, c->cap, path, h);
    if (e->path) {
        old = e->mtime;
    } else if (!(e->path = strdup(path))) {
        goto out;
    } else {
        e->hash = h;
        c->n++;
    }
    e->mtime = mtime;
    e->gen = c->gen;
out:
    pthread_mutex_unlock(&c->mu);
    return old;
}

void fu_dircache_begin(struct fu_dircache *c)
{
    pthread_mutex_lock(&c->mu);
    c->gen++;
    pthread_mutex_unlock(&c->mu);
}

/* The file: magic, format, the token (its length, then its bytes), the entry count, the
 * entries (path length, path, mtime as IEEE bits), all little-endian, then a CRC-32C of
 * everything before it. */
static const char dc_magic[8] = "FUSTORD";
enum { DC_FORMAT = 1, DC_MAX_TOKEN = 256 };

static void put32(struct fu_buf *b, uint32_t v)
{
    unsigned char x[4];
    fu_put_le32(x, v);
    fu_buf_append(b, x, 4);
}

static void put64(struct fu_buf *b, uint64_t v)
{
    unsigned char x[8];
    fu_put_le64(x, v);
    fu_buf_append(b, x, 8);
}

int fu_dircache_save(struct fu_dircache *c, const char *path, const char *token)
{
    size_t tlen = strlen(token);
    if (tlen > DC_MAX_TOKEN)
        return -EINVAL;
    struct fu_buf b = FU_BUF_INIT;
    fu_buf_append(&b, dc_magic, sizeof(dc_magic));
    put32(&b, DC_FORMAT);
    put32(&b, (uint32_t)tlen);
    fu_buf_append(&b, token, tlen);
    pthread_mutex_lock(&c->mu);
    uint64_t n = 0;
    for (size_t i = 0; i < c->cap; i++)
        n += c->v[i].path && c->v[i].gen == c->gen;
    put64(&b, n);
    for (size_t i = 0; i < c->cap; i++) {
        const struct dc_ent *e = &c->v[i];
        if (!e->path || e->gen != c->gen)
            continue; /* not seen by the last walk: gone since */
        size_t len = strlen(e->path);
        uint64_t bits;
        memcpy(&bits, &e->mtime, 8);
        put32(&b, (uint32_t)len);
        fu_buf_append(&b, e->path, len);
        put64(&b, bits);
    }
    pthread_mutex_unlock(&c->mu);
    put32(&b, fu_crc32c(0, b.data, b.len));
    int rc = b.oom ? -ENOMEM : fu_write_file_atomic(path, b.data, b.len, 0600);
    fu_buf_free(&b);
    return rc;
}

int fu_dircache_load(const char *path, struct fu_dircache **out, char **token)
{
    *out = NULL;
    *token = NULL;
    struct fu_buf b = FU_BUF_INIT;
    int rc = fu_read_file(path, (size_t)1 << 34, &b);
    if (rc < 0) {
        fu_buf_free(&b);
        return rc;
    }
    const unsigned char *p = (const unsigned char *)b.data, *end = p + b.len;
    struct fu_dircache *c = NULL;
    rc = -EBADMSG;
    if (b.len < sizeof(dc_magic) + 20 || memcmp(p, dc_magic, sizeof(dc_magic)) ||
        fu_get_le32(end - 4) != fu_crc32c(0, p, b.len - 4))
        goto out;
    end -= 4;
    p += sizeof(dc_magic);
    if (fu_get_le32(p) != DC_FORMAT) {
        rc = -EPROTO;
        goto out;
    }
    uint32_t tlen = fu_get_le32(p + 4);
    p += 8;
    if (tlen > DC_MAX_TOKEN || (size_t)(end - p) < (size_t)tlen + 8)
        goto out;
    char *tok = strndup((const char *)p, tlen);
    uint64_t n = fu_get_le64(p + tlen);
    p += tlen + 8;
    if (!tok || !(c = fu_dircache_new())) {
        free(tok);
        rc = -ENOMEM;
        goto out;
    }
    char *key = NULL;
    for (uint64_t i = 0; i < n; i++) {
        if (end - p < 12)
            break;
        uint32_t len = fu_get_le32(p);
        if ((size_t)(end - p) < (size_t)len + 12)
            break;
        char *k = realloc(key, (size_t)len + 1);
        if (!k)
            break;
        key = k;
        memcpy(key, p + 4, len);
        key[len] = '\0';
        uint64_t bits = fu_get_le64(p + 4 + len);
        double mtime;
        memcpy(&mtime, &bits, 8);
        p += 12 + (size_t)len;
        dc_swap(c, key, mtime);
    }
    free(key);
    if (p != end || fu_dircache_size(c) != n) { /* short, or a duplicate: not ours */
        free(tok);
        fu_dircache_free(c);
        c = NULL;
        goto out;
    }
    *out = c;
    *token = tok;
    rc = 0;
out:
    fu_buf_free(&b);
    return rc;
}

/* ------------------------------------------------------------ the walk */

struct job {
    char *path; /* relative, leading '/' */
    char *parent;
    double parent_mtime;
    int depth;
};

struct walk {
    const struct fu_scan_opts *o;
    fu_scan_emit emit;
    void *ctx;
    struct fu_scan_stats *stats;
    int rootfd;
    uint64_t root_dev;
    bool leaf_ok; /* dirs_only: the root's filesystem counts subdirectories in link counts */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct job *stack;
    size_t n, cap;
    int active;
    bool stop;
    int rc;
    uint64_t *seen; /* (dev, ino) keys of directories walked: open addressing, 0 = empty */
    size_t seen_cap, seen_n;
    _Atomic unsigned logged;
};

struct worker {
    struct walk *w;
    struct fu_scan_entry *v;
    size_t *offs, *poffs; /* path offsets into arena, parent path offsets */
    size_t n;
    struct fu_buf arena;
    const char *last_parent; /* the parent path last copied into the arena, and where */
    size_t last_poff;
    struct fu_buf path; /* the entry being looked at: its directory's path, '/', its name */
};

static void walk_error(struct walk *w, const char *what, const char *path, int err)
{
    atomic_fetch_add(&w->stats->errors, 1);
    if (atomic_fetch_add(&w->logged, 1) < MAX_LOGGED_ERRORS)
        fu_warn("scan %s: %s %s: %s (skipped)", w->o->root, what, path, strerror(err));
}

static double ts(struct statx_timestamp t)
{
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

/* Records a directory's (dev, ino); false when the walk has been there already. */
static bool first_visit(struct walk *w, uint64_t dev, uint64_t ino)
{
    uint64_t key = XXH3_64bits_withSeed(&ino, sizeof(ino), dev) | 1;
    bool first = true;
    pthread_mutex_lock(&w->mu);
    if ((w->seen_n + 1) * 2 > w->seen_cap) {
        size_t cap = w->seen_cap ? w->seen_cap * 2 : 1024;
        uint64_t *s = calloc(cap, sizeof(*s));
        if (!s)
            goto out; /* out of memory: no guard, but bind-mount loops are rare */
        for (size_t i = 0; i < w->seen_cap; i++)
            if (w->seen[i]) {
                size_t j = w->seen[i] & (cap - 1);
                while (s[j])
                    j = (j + 1) & (cap - 1);
                s[j] = w->seen[i];
            }
        free(w->seen);
        w->seen = s;
        w->seen_cap = cap;
    }
    size_t i = key & (w->seen_cap - 1);
    while (w->seen[i] && w->seen[i] != key)
        i = (i + 1) & (w->seen_cap - 1);
    first = !w->seen[i];
    if (first) {
        w->seen[i] = key;
        w->seen_n++;
    }
out:
    pthread_mutex_unlock(&w->mu);
    return first;
}

static int flush(struct worker *k)
{
    if (!k->n)
        return 0;
    for (size_t i = 0; i < k->n; i++) {
        k->v[i].path = k->arena.data + k->offs[i];
        k->v[i].parent_path = k->arena.data + k->poffs[i];
    }
    int rc = k->arena.oom ? -ENOMEM : k->w->emit(k->w->ctx, k->v, k->n);
    k->n = 0;
    k->last_parent = NULL;
    fu_buf_reset(&k->arena);
    return rc;
}

static int add(struct worker *k, const char *path, size_t len, const char *parent,
               const struct fu_scan_entry *e)
{
    size_t i = k->n++;
    k->v[i] = *e;
    k->v[i].path_len = len;
    k->offs[i] = k->arena.len;
    fu_buf_append(&k->arena, path, len + 1);
    if (parent != k->last_parent) { /* a directory's entries share one copy */
        k->last_parent = parent;
        k->last_poff = k->arena.len;
        fu_buf_append(&k->arena, parent, strlen(parent) + 1);
    }
    k->poffs[i] = k->last_poff;
    return k->n == k->w->o->chunk ? flush(k) : 0;
}

static void push_job(struct walk *w, struct job j)
{
    pthread_mutex_lock(&w->mu);
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 256;
        struct job *s = realloc(w->stack, cap * sizeof(*s));
        if (!s) {
            pthread_mutex_unlock(&w->mu);
            walk_error(w, "cannot queue", j.path, ENOMEM);
            free(j.path);
            free(j.parent);
            return;
        }
        w->stack = s;
        w->cap = cap;
    }
    w->stack[w->n++] = j;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static char *join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    bool root = a == 1; /* "/" */
    char *p = malloc(a + b + 2);
    if (!p)
        return NULL;
    memcpy(p, dir, a);
    size_t at = root ? 1 : a;
    if (!root)
        p[at++] = '/';
    memcpy(p + at, name, b + 1);
    return p;
}

struct linux_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

static int list_dir(struct worker *k, struct job *j, int fd, double mtime, bool skipped)
{
    struct walk *w = k->w;
    const struct fu_scan_opts *o = w->o;
    char buf[32768];
    for (;;) {
        long got = syscall(SYS_getdents64, fd, buf, sizeof(buf));
        if (got == 0)
            return 0;
        if (got < 0) {
            walk_error(w, "cannot list", j->path, errno);
            return 0;
        }
        for (long off = 0; off < got;) {
            struct linux_dirent64 *d = (struct linux_dirent64 *)(buf + off);
            off += d->d_reclen;
            const char *name = d->d_name;
            if (name[0] == '.' && (!name[1] || (name[1] == '.' && !name[2])))
                continue;
            unsigned type = d->d_type;
            struct statx sx = {0};
            if (type == DT_REG && o->dirs_only)
                continue;
            if (type == DT_UNKNOWN || (type == DT_REG && !skipped)) {
                if (statx(fd, name, AT_SYMLINK_NOFOLLOW,
                          STATX_TYPE | STATX_SIZE | STATX_MTIME | STATX_CTIME, &sx) < 0) {
                    char *p = join(j->path, name);
                    walk_error(w, "cannot stat", p ? p : name, errno);
                    free(p);
                    continue;
                }
                type = S_ISDIR(sx.stx_mode) ? DT_DIR : S_ISREG(sx.stx_mode) ? DT_REG : DT_LNK;
            }
            if (type != DT_DIR && type != DT_REG)
                continue; /* symlinks, devices, sockets, fifos: not followed, not reported */
            size_t dlen = j->path[1] ? strlen(j->path) : 0;
            fu_buf_reset(&k->path);
            fu_buf_append(&k->path, j->path, dlen);
            fu_buf_putc(&k->path, '/');
            fu_buf_append(&k->path, name, strlen(name) + 1);
            if (k->path.oom) {
                walk_error(w, "cannot scan", j->path, ENOMEM);
                continue;
            }
            const char *p = k->path.data;
            size_t plen = k->path.len - 1;
            if (fu_scan_excluded(o->exclude, name, p))
                continue;
            if (type == DT_DIR) {
                if (!o->recursive && j->depth >= 1)
                    continue;
                char *sub = strdup(p), *parent = strdup(j->path);
                if (!sub || !parent) {
                    free(sub);
                    free(parent);
                    walk_error(w, "cannot scan", p, ENOMEM);
                    continue;
                }
                push_job(w, (struct job){sub, parent, mtime, j->depth + 1});
                continue;
            }
            if (skipped || o->dirs_only ||
                (o->file_pattern && fnmatch(o->file_pattern, name, 0) != 0))
                continue;
            struct fu_scan_entry e = {
                .size = sx.stx_size,
                .mtime = ts(sx.stx_mtime),
                .ctime = ts(sx.stx_ctime),
                .parent_mtime = mtime,
            };
            atomic_fetch_add(&w->stats->files, 1);
            int rc = add(k, p, plen, j->path, &e);
            if (rc < 0)
                return rc;
        }
    }
}

/* Opens a directory below the root without following a symlink anywhere on the way and
 * without leaving the root (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS): a directory
 * swapped for a symlink during the walk cannot lead it elsewhere. Kernels before 5.6 fall
 * back to openat(O_NOFOLLOW), which checks the last component only. */
static int open_beneath(int rootfd, const char *rel)
{
    struct open_how how = {
        .flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    int fd = (int)syscall(SYS_openat2, rootfd, rel, &how, sizeof(how));
    if (fd < 0 && errno == ENOSYS)
        fd = openat(rootfd, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    return fd;
}

static int do_dir(struct worker *k, struct job *j)
{
    struct walk *w = k->w;
    const struct fu_scan_opts *o = w->o;
    const char *rel = j->path[1] ? j->path + 1 : ".";
    k->last_parent = NULL; /* the last job's strings are gone, their addresses reused */
    if (o->before_dir) {
        int rc = o->before_dir(o->before_ctx, j->path);
        if (rc < 0)
            return rc;
    }
    int fd = open_beneath(w->rootfd, rel);
    struct statx sx;
    bool readable = fd >= 0;
    if (!readable) {
        int err = errno;
        /* Still a directory we know of: report it, but as not listed (an audit must not take
         * its silence for emptiness). */
        if (statx(w->rootfd, rel, AT_SYMLINK_NOFOLLOW, STATX_TYPE | STATX_MTIME | STATX_CTIME,
                  &sx) < 0 ||
            !S_ISDIR(sx.stx_mode)) {
            walk_error(w, "cannot open", j->path, err);
            return 0;
        }
        walk_error(w, "cannot open", j->path, err);
    } else if (statx(fd, "", AT_EMPTY_PATH,
                     STATX_TYPE | STATX_SIZE | STATX_MTIME | STATX_CTIME | STATX_INO, &sx) < 0) {
        walk_error(w, "cannot stat", j->path, errno);
        close(fd);
        return 0;
    }
    uint64_t dev = ((uint64_t)sx.stx_dev_major << 32) | sx.stx_dev_minor;
    if (!o->cross_filesystems && dev != w->root_dev && j->depth > 0) {
        atomic_fetch_add(&w->stats->skipped_dirs, 1);
        if (fd >= 0)
            close(fd);
        return 0; /* another filesystem mounted below the root */
    }
    if (readable && !first_visit(w, dev, sx.stx_ino)) {
        atomic_fetch_add(&w->stats->skipped_dirs, 1);
        close(fd);
        return 0; /* a loop through a bind mount */
    }
    double mtime = ts(sx.stx_mtime);
    bool skipped = !readable;
    if (o->cache && readable) {
        double old = dc_swap(o->cache, j->path, mtime);
        /* unchanged since the last walk: files not listed */
        skipped = !o->cache_fill && old == mtime;
    }
    atomic_fetch_add(&w->stats->dirs, 1);
    struct fu_scan_entry e = {
        .is_dir = true,
        .audit_skipped = skipped,
        .size = readable ? sx.stx_size : 0,
        .mtime = mtime,
        .ctime = ts(sx.stx_ctime),
        .parent_mtime = j->parent_mtime,
    };
    int rc = add(k, j->path, strlen(j->path), j->parent, &e);
    bool list = readable && (o->recursive || j->depth == 0);
    if (rc >= 0 && o->dirs_only) {
        /* Reported (and so watched) before it is listed. Its link count, read after that, is
         * 2 + its subdirectories where leaf_ok: at 2 there is nothing to list for, and one
         * created since is the watch's to report. */
        rc = flush(k);
        struct statx nl;
        if (rc >= 0 && list && w->leaf_ok && dev == w->root_dev &&
            statx(fd, "", AT_EMPTY_PATH, STATX_NLINK, &nl) == 0 && (nl.stx_mask & STATX_NLINK) &&
            nl.stx_nlink == 2) {
            list = false;
            atomic_fetch_add(&w->stats->leaves, 1);
        }
    }
    if (rc >= 0 && list)
        rc = list_dir(k, j, fd, mtime, skipped && o->cache && !o->cache_fill);
    if (fd >= 0)
        close(fd);
    return rc;
}

static void *worker_main(void *arg)
{
    struct worker *k = arg;
    struct walk *w = k->w;
    for (;;) {
        pthread_mutex_lock(&w->mu);
        if (!w->n && !w->stop) {
            pthread_mutex_unlock(&w->mu);
            int rc = flush(k); /* before waiting: nothing sits in a chunk */
            pthread_mutex_lock(&w->mu);
            if (rc < 0 && !w->stop) {
                w->stop = true;
                w->rc = rc;
                pthread_cond_broadcast(&w->cv);
            }
        }
        while (!w->n && w->active && !w->stop)
            pthread_cond_wait(&w->cv, &w->mu);
        if (w->stop || !w->n) {
            pthread_cond_broadcast(&w->cv);
            pthread_mutex_unlock(&w->mu);
            break;
        }
        struct job j = w->stack[--w->n];
        w->active++;
        pthread_mutex_unlock(&w->mu);
        int rc = do_dir(k, &j);
        free(j.path);
        free(j.parent);
        pthread_mutex_lock(&w->mu);
        w->active--;
        if (rc < 0 && !w->stop) {
            w->stop = true;
            w->rc = rc;
        }
        if (!w->n && !w->active)
            pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
    }
    int rc = w->stop ? 0 : flush(k);
    if (rc < 0) {
        pthread_mutex_lock(&w->mu);
        if (!w->rc)
            w->rc = rc;
        pthread_mutex_unlock(&w->mu);
    }
    return NULL;
}

int fu_scan(const struct fu_scan_opts *opts, fu_scan_emit emit, void *ctx,
            struct fu_scan_stats *stats)
{
    struct fu_scan_opts o = *opts;
    if (!o.chunk)
        o.chunk = 256;
    if (o.workers <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        o.workers = n > 0 ? (int)n : 1;
    }
    if (o.file_pattern && !strcmp(o.file_pattern, "*"))
        o.file_pattern = NULL;
    struct fu_scan_stats local = {0};
    struct walk w = {.o = &o, .emit = emit, .ctx = ctx, .stats = stats ? stats : &local};
    w.rootfd = open(o.root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (w.rootfd < 0)
        return -errno;
    struct stat st;
    if (fstat(w.rootfd, &st) < 0) {
        int err = -errno;
        close(w.rootfd);
        return err;
    }
    w.root_dev = ((uint64_t)major(st.st_dev) << 32) | minor(st.st_dev);
    struct statfs sf;
    /* ext2/3/4, XFS and tmpfs count a directory's subdirectories in its link count (ext4 says
     * 1 past 65000: not 2). NFS, CIFS, btrfs (always 1), FUSE and others are not trusted. */
    w.leaf_ok =
        o.dirs_only && fstatfs(w.rootfd, &sf) == 0 &&
        (sf.f_type == EXT4_SUPER_MAGIC || sf.f_type == XFS_SUPER_MAGIC || sf.f_type == TMPFS_MAGIC);
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);

    const char *start = o.subpath && *o.subpath ? o.subpath : "/";
    char *path = strdup(start), *parent = strdup(start);
    if (!path || !parent) {
        free(path);
        free(parent);
        close(w.rootfd);
        return -ENOMEM;
    }
    char *slash = strrchr(parent, '/');
    if (slash == parent) /* "/x" -> "/", "/" -> "" (the root has no parent) */
        parent[strcmp(start, "/") ? 1 : 0] = '\0';
    else if (slash)
        *slash = '\0';
    push_job(&w, (struct job){path, parent, 0, 0});

    struct worker *ks = calloc((size_t)o.workers, sizeof(*ks));
    pthread_t *tids = calloc((size_t)o.workers, sizeof(*tids));
    int started = 0;
    for (int i = 0; ks && tids && i < o.workers; i++) {
        ks[i].w = &w;
        ks[i].v = malloc(o.chunk * sizeof(*ks[i].v));
        ks[i].offs = malloc(o.chunk * sizeof(size_t));
        ks[i].poffs = malloc(o.chunk * sizeof(size_t));
        if (!ks[i].v || !ks[i].offs || !ks[i].poffs)
            break;
        if (pthread_create(&tids[i], NULL, worker_main, &ks[i]) != 0)
            break;
        started++;
    }
    if (!started && ks && ks[0].v && ks[0].offs && ks[0].poffs) {
        ks[0].w = &w;
        worker_main(&ks[0]); /* no thread could start: walk on this one */
    }
    for (int i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    for (int i = 0; ks && i < o.workers; i++) {
        free(ks[i].v);
        free(ks[i].offs);
        free(ks[i].poffs);
        fu_buf_free(&ks[i].arena);
        fu_buf_free(&ks[i].path);
    }
    int rc = (!ks || !tids || (!started && !(ks && ks[0].v))) ? -ENOMEM : w.rc;
    free(ks);
    free(tids);
    for (size_t i = 0; i < w.n; i++) { /* left over after a stop */
        free(w.stack[i].path);
        free(w.stack[i].parent);
    }
    free(w.stack);
    free(w.seen);
    pthread_cond_destroy(&w.cv);
    pthread_mutex_destroy(&w.mu);
    close(w.rootfd);
    return rc;
}
