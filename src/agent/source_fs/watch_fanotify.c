/* Realtime watching with fanotify; see watch_fanotify.h. Events are read in FAN_REPORT_DFID_NAME
 * mode: each names a directory by (fsid, file handle) and an entry by name. A handle becomes a
 * path with open_by_handle_at() and readlink("/proc/self/fd/N"); the answer (a path below the
 * root, or "not ours") is cached per handle until any directory on a marked filesystem is moved
 * or removed. Entries are stated relative to the directory's descriptor, never by path, so a
 * symlink swapped in on the way cannot lead elsewhere. */
#include "agent/source_fs/watch_fanotify.h"

#include "agent/source_fs/scan.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/sets.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>
#include <xxhash.h>

/* Older UAPI headers; the values are the kernel's. */
#ifndef FAN_RENAME
#define FAN_RENAME 0x10000000
#endif
#ifndef FAN_EVENT_INFO_TYPE_OLD_DFID_NAME
#define FAN_EVENT_INFO_TYPE_OLD_DFID_NAME 10
#define FAN_EVENT_INFO_TYPE_NEW_DFID_NAME 12
#endif

/* FAN_EVENT_ON_CHILD is not asked for: on a filesystem mark the kernel reports the events of
 * every file anyway, with its parent and name, because the group reports directory ids. */
#define MASK_COMMON                                                                                \
    (FAN_CREATE | FAN_DELETE | FAN_CLOSE_WRITE | FAN_MODIFY | FAN_ATTRIB | FAN_DELETE_SELF |       \
     FAN_MOVE_SELF | FAN_ONDIR)
/* Linux 5.17+ reports a rename as one FAN_RENAME event carrying both entries; older kernels as
 * a FAN_MOVED_FROM and a FAN_MOVED_TO that need no pairing here (a delete and an upsert).
 * Never both: each rename would be reported twice. */
#define MASK_RENAME (MASK_COMMON | FAN_RENAME)
#define MASK_MOVES (MASK_COMMON | FAN_MOVED_FROM | FAN_MOVED_TO)

#define KEY_MAX (8 + 8 + MAX_HANDLE_SZ) /* fsid, handle type and size, handle */
#define CACHE_SLOTS 1024                /* directories resolved; a power of two */
#define MAX_LOGGED 20                   /* unexpected errors logged per watcher */
/* Buffers read per fu_fanwatch_read: a busy filesystem cannot hold the caller in it. */
#define MAX_READS 32

/* A filesystem marked: the root's, or (cross_filesystems) one mounted below it. */
struct mark {
    char *path; /* owned: where to open a descriptor for open_by_handle_at */
    dev_t dev;
    unsigned char fsid[8];
    int fd; /* during a read: that descriptor; -1 = not opened yet, -2 = cannot be */
};

/* handle -> path below the root, or "not ours". Direct-mapped: a colliding handle replaces
 * the entry. An entry counts only while its gen is the watcher's; clearing is gen++. */
struct cent {
    uint64_t gen, hash;
    unsigned char key[KEY_MAX];
    size_t keylen;
    bool outside; /* outside the root, or at or below an excluded directory */
    char *rel;    /* owned; inside: relative, leading '/' */
};

struct fu_fanwatch {
    int fd;
    char *root;     /* owned, as the caller gave it: opened again at each read */
    char *root_abs; /* owned: the root as the kernel prints paths; refreshed at each read */
    size_t root_abs_len;
    unsigned char root_key[KEY_MAX]; /* the root's handle: still the same directory? */
    size_t root_key_len;
    struct fu_strv exclude;
    double throttle;
    bool cross;
    struct mark *marks; /* owned; [0] is the root's filesystem */
    size_t nmarks, failed;
    struct cent *cache; /* owned, CACHE_SLOTS */
    uint64_t gen;
    struct fu_pathmap modified; /* path -> a: when its last FAN_MODIFY row went out */
    unsigned logged;
    /* during a read */
    fu_watch_emit emit;
    void *ctx;
    int rc;
    size_t emitted;
    bool check_root; /* a directory moved or went: is the root still where it was? */
};

/* One info record of type DFID, DFID_NAME, OLD_DFID_NAME or NEW_DFID_NAME; points into the
 * read buffer. */
struct fid {
    unsigned char fsid[8];
    int type;
    unsigned int len;
    const unsigned char *bytes;
    const char *name; /* NULL (DFID), or the entry's name; "." = the directory itself */
};

/* ------------------------------------------------------------ handles */

static size_t make_key(unsigned char *key, const unsigned char *fsid, int type, unsigned int len,
                       const unsigned char *bytes)
{
    uint32_t t = (uint32_t)type;
    memcpy(key, fsid, 8);
    memcpy(key + 8, &t, 4);
    memcpy(key + 12, &len, 4);
    memcpy(key + 16, bytes, len);
    return 16 + len;
}

static void fsid_of(const struct statfs *sf, unsigned char *out)
{
    memcpy(out, &sf->f_fsid, 8);
}

/* The key of an open directory, as events would name it. */
static int fd_key(int fd, unsigned char *key, size_t *len)
{
    union {
        struct file_handle fh;
        unsigned char room[sizeof(struct file_handle) + MAX_HANDLE_SZ];
    } u;
    u.fh.handle_bytes = MAX_HANDLE_SZ;
    int mnt;
    struct statfs sf;
    if (name_to_handle_at(fd, "", &u.fh, &mnt, AT_EMPTY_PATH) < 0 || fstatfs(fd, &sf) < 0)
        return -errno;
    unsigned char fsid[8];
    fsid_of(&sf, fsid);
    *len = make_key(key, fsid, u.fh.handle_type, u.fh.handle_bytes, u.fh.f_handle);
    return 0;
}

/* Whether a filesystem's handles can be opened again: it encodes them (it may encode ids that
 * fanotify can report but nobody can open) and decodes them. */
static int handles_work(int fd)
{
    union {
        struct file_handle fh;
        unsigned char room[sizeof(struct file_handle) + MAX_HANDLE_SZ];
    } u;
    u.fh.handle_bytes = MAX_HANDLE_SZ;
    int mnt;
    if (name_to_handle_at(fd, "", &u.fh, &mnt, AT_EMPTY_PATH) < 0)
        return errno == EOVERFLOW ? -EOPNOTSUPP : -errno;
    int back = open_by_handle_at(fd, &u.fh, O_PATH | O_CLOEXEC);
    if (back < 0)
        return -EOPNOTSUPP;
    close(back);
    return 0;
}

/* The path of an open descriptor as the kernel prints it; -1 on failure or truncation. */
static ssize_t fd_path(int fd, char *out, size_t cap)
{
    char link[32];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, out, cap);
    if (n <= 0 || (size_t)n >= cap)
        return -1;
    out[n] = '\0';
    return n;
}

/* ------------------------------------------------------------ paths */

/* The part of an absolute path below the root (leading '/', the root itself "/"), or NULL. */
static const char *relative(const struct fu_fanwatch *w, const char *abs)
{
    size_t n = w->root_abs_len;
    if (n == 1)
        return abs; /* the root is "/" */
    if (strncmp(abs, w->root_abs, n))
        return NULL;
    if (!abs[n])
        return "/";
    return abs[n] == '/' ? abs + n : NULL;
}

/* Whether a directory (relative path) or one above it is excluded: the scan never enters
 * them, so what happens inside is not reported either. */
static bool under_excluded(const struct fu_fanwatch *w, const char *rel)
{
    if (!w->exclude.n || !rel[1])
        return false;
    char *p = strdup(rel);
    if (!p)
        return false;
    bool excluded = false;
    for (char *name = p + 1; !excluded;) {
        char *slash = strchr(name, '/');
        if (slash)
            *slash = '\0';
        excluded = fu_scan_excluded(&w->exclude, name, p);
        if (!slash)
            break;
        *slash = '/';
        name = slash + 1;
    }
    free(p);
    return excluded;
}

static struct mark *find_mark(struct fu_fanwatch *w, const unsigned char *fsid)
{
    for (size_t i = 0; i < w->nmarks; i++)
        if (!memcmp(w->marks[i].fsid, fsid, 8))
            return &w->marks[i];
    return NULL;
}

/* A descriptor on the mark's filesystem for open_by_handle_at (not O_PATH: the kernel wants
 * a real file there). Opened once per read and closed at its end: holding one between reads
 * would keep the filesystem from being unmounted and delay the root's FAN_DELETE_SELF. */
static int mark_fd(struct mark *m)
{
    if (m->fd != -1)
        return m->fd;
    int fd = open(m->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct stat st;
    if (fd >= 0 && (fstat(fd, &st) < 0 || st.st_dev != m->dev)) {
        close(fd); /* unmounted: something else is there now */
        fd = -1;
    }
    m->fd = fd >= 0 ? fd : -2;
    return fd;
}

static void log_once(struct fu_fanwatch *w, const char *what, int err)
{
    if (w->logged++ < MAX_LOGGED)
        fu_warn("fanotify watch %s: %s: %s", w->root, what, strerror(err));
}

/* Resolves an event's directory. Returns 1 with its relative path appended to `rel` (and,
 * when `want_fd`, an O_PATH descriptor of it in *dirfd, for the caller to close), 0 when the
 * event is not ours (outside the root, excluded, gone), or -ENOMEM. */
static int resolve(struct fu_fanwatch *w, const struct fid *f, bool want_fd, struct fu_buf *rel,
                   int *dirfd)
{
    *dirfd = -1;
    struct mark *m = find_mark(w, f->fsid);
    if (!m)
        return 0;
    unsigned char key[KEY_MAX];
    size_t klen = make_key(key, f->fsid, f->type, f->len, f->bytes);
    uint64_t h = XXH3_64bits(key, klen);
    struct cent *c = &w->cache[h & (CACHE_SLOTS - 1)];
    bool hit = c->gen == w->gen && c->hash == h && c->keylen == klen && !memcmp(c->key, key, klen);
    if (hit && (c->outside || !want_fd)) {
        if (c->outside)
            return 0;
        fu_buf_puts(rel, c->rel);
        return rel->oom ? -ENOMEM : 1;
    }
    int mfd = mark_fd(m);
    if (mfd < 0)
        return 0;
    union {
        struct file_handle fh;
        unsigned char room[sizeof(struct file_handle) + MAX_HANDLE_SZ];
    } u;
    u.fh.handle_bytes = f->len;
    u.fh.handle_type = f->type;
    memcpy(u.fh.f_handle, f->bytes, f->len);
    int fd = open_by_handle_at(mfd, &u.fh, O_PATH | O_CLOEXEC);
    if (fd < 0) {
        /* ESTALE: the directory was removed before this event was read. Its entries were
         * removed before it, and its own delete, an event in its parent further on in the
         * queue, covers them all: nothing is lost by skipping. */
        if (errno != ESTALE && errno != ENOENT)
            log_once(w, "cannot open a directory by its handle", errno);
        return 0;
    }
    const char *r = NULL;
    char abs[PATH_MAX];
    if (hit) {
        r = c->rel;
    } else {
        struct statx dir, there;
        if (fd_path(fd, abs, sizeof(abs)) < 0 ||
            statx(fd, "", AT_EMPTY_PATH, STATX_NLINK | STATX_INO, &dir) < 0 || !dir.stx_nlink) {
            close(fd); /* removed meanwhile (its path would end in " (deleted)") */
            return 0;
        }
        r = relative(w, abs);
        bool outside = !r || under_excluded(w, r);
        /* Inside by its printed path: check that this path leads to it from the root. It does
         * not when the directory moved since readlink() (its move event follows), or when it
         * lies beyond the reach of the root's mount (a bind mount of a subdirectory prints
         * such paths from the filesystem's top). Not cached then. */
        if (!outside && (statx(w->marks[0].fd, r[1] ? r + 1 : ".", AT_SYMLINK_NOFOLLOW, STATX_INO,
                               &there) < 0 ||
                         there.stx_ino != dir.stx_ino || there.stx_dev_major != dir.stx_dev_major ||
                         there.stx_dev_minor != dir.stx_dev_minor)) {
            close(fd);
            return 0;
        }
        char *copy = outside ? NULL : strdup(r);
        if (outside || copy) {
            free(c->rel);
            *c = (struct cent){.gen = w->gen, .hash = h, .keylen = klen, .outside = outside};
            memcpy(c->key, key, klen);
            c->rel = copy;
        }
        if (outside) {
            close(fd);
            return 0;
        }
    }
    fu_buf_puts(rel, r);
    if (rel->oom) {
        close(fd);
        return -ENOMEM;
    }
    if (want_fd)
        *dirfd = fd;
    else
        close(fd);
    return 1;
}

/* ------------------------------------------------------------ opening */

/* Marks every other filesystem mounted below the root (from /proc/self/mountinfo). Those
 * that cannot be marked are counted and logged, not fatal: the root's own mark works. */
static void mark_below(struct fu_fanwatch *w, uint64_t mask)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f) {
        log_once(w, "cannot list the mounts below the root", errno);
        return;
    }
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        /* "id parent major:minor root mountpoint options ...": the fifth field, with space,
         * tab, newline and backslash written as \ooo */
        char *mp = line;
        for (int i = 0; i < 4 && mp; i++) {
            mp = strchr(mp, ' ');
            if (mp)
                mp++;
        }
        if (!mp)
            continue;
        char *end = strchr(mp, ' ');
        if (end)
            *end = '\0';
        char *o = mp;
        for (char *s = mp; *s; s++) {
            if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
                s[3] >= '0' && s[3] <= '7') {
                *o++ = (char)((s[1] - '0') << 6 | (s[2] - '0') << 3 | (s[3] - '0'));
                s += 3;
            } else {
                *o++ = *s;
            }
        }
        *o = '\0';
        const char *rel = relative(w, mp);
        if (!rel || !rel[1] || under_excluded(w, rel))
            continue;
        int fd = open(mp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        struct stat st;
        struct statfs sf;
        if (fd < 0 || fstat(fd, &st) < 0 || fstatfs(fd, &sf) < 0) {
            if (fd >= 0)
                close(fd);
            continue; /* gone, or hidden under a later mount */
        }
        unsigned char fsid[8];
        fsid_of(&sf, fsid);
        bool known = false;
        for (size_t i = 0; i < w->nmarks; i++)
            known |= w->marks[i].dev == st.st_dev;
        if (known) { /* the same filesystem again (a bind mount, or mounted twice) */
            close(fd);
            continue;
        }
        int err = 0;
        if (find_mark(w, fsid))
            err = EEXIST; /* events could not tell the two apart */
        else if (fanotify_mark(w->fd, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, mask, fd, NULL) < 0)
            err = errno; /* ENODEV: FUSE or no fsid; EXDEV: a btrfs subvolume; EPERM */
        else if ((err = -handles_work(fd)) != 0)
            fanotify_mark(w->fd, FAN_MARK_REMOVE | FAN_MARK_FILESYSTEM, mask, fd, NULL);
        close(fd);
        if (err) {
            w->failed++;
            fu_warn("fanotify watch %s: cannot watch the filesystem mounted at %s (%s): its "
                    "changes wait for the audit",
                    w->root, mp, err == EEXIST ? "its fsid is another's" : strerror(err));
            continue;
        }
        struct mark *v = realloc(w->marks, (w->nmarks + 1) * sizeof(*v));
        char *path = strdup(mp);
        if (!v || !path) {
            free(path);
            if (v)
                w->marks = v;
            w->failed++;
            continue;
        }
        w->marks = v;
        w->marks[w->nmarks++] = (struct mark){.path = path, .dev = st.st_dev, .fd = -1};
        memcpy(w->marks[w->nmarks - 1].fsid, fsid, 8);
    }
    free(line);
    fclose(f);
}

int fu_fanwatch_open(struct fu_fanwatch **out, const char *root, const struct fu_strv *exclude,
                     double throttle_sec, bool cross_filesystems)
{
    struct fu_fanwatch *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->fd = -1;
    w->gen = 1;
    w->throttle = throttle_sec;
    w->cross = cross_filesystems;
    int rc = 0;
    int rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0) {
        rc = -errno;
        goto fail;
    }
    w->root = strdup(root);
    w->cache = calloc(CACHE_SLOTS, sizeof(*w->cache));
    w->marks = calloc(1, sizeof(*w->marks));
    if (w->marks) {
        w->nmarks = 1;
        w->marks[0] = (struct mark){.path = strdup(root), .fd = -1};
    }
    for (size_t i = 0; exclude && i < exclude->n; i++)
        if (fu_strv_push(&w->exclude, exclude->v[i]) < 0)
            rc = -ENOMEM;
    if (!w->root || !w->cache || !w->marks || !w->marks[0].path || rc < 0) {
        rc = -ENOMEM;
        goto fail;
    }
    char abs[PATH_MAX];
    struct stat st;
    struct statfs sf;
    errno = 0;
    if (fd_path(rootfd, abs, sizeof(abs)) < 0 || abs[0] != '/' || fstat(rootfd, &st) < 0 ||
        fstatfs(rootfd, &sf) < 0) {
        rc = errno ? -errno : -ENAMETOOLONG;
        goto fail;
    }
    if (!(w->root_abs = strdup(abs))) {
        rc = -ENOMEM;
        goto fail;
    }
    w->root_abs_len = strlen(abs);
    w->marks[0].dev = st.st_dev;
    fsid_of(&sf, w->marks[0].fsid);

    w->fd = fanotify_init(FAN_CLASS_NOTIF | FAN_REPORT_DFID_NAME | FAN_CLOEXEC | FAN_NONBLOCK,
                          O_RDONLY | O_LARGEFILE);
    if (w->fd < 0) {
        rc = -errno;
        goto fail;
    }
    uint64_t mask = MASK_RENAME;
    int marked = fanotify_mark(w->fd, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, mask, rootfd, NULL);
    if (marked < 0 && errno == EINVAL) {
        mask = MASK_MOVES; /* before Linux 5.17 */
        marked = fanotify_mark(w->fd, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, mask, rootfd, NULL);
    }
    if (marked < 0) {
        rc = -errno; /* ENODEV: FUSE, or no fsid; EXDEV: a btrfs subvolume; EPERM */
        goto fail;
    }
    if ((rc = handles_work(rootfd)) < 0 || (rc = fd_key(rootfd, w->root_key, &w->root_key_len)))
        goto fail;
    if (cross_filesystems)
        mark_below(w, mask);
    close(rootfd);
    *out = w;
    return 0;
fail:
    if (rootfd >= 0)
        close(rootfd);
    fu_fanwatch_close(w);
    return rc;
}

void fu_fanwatch_close(struct fu_fanwatch *w)
{
    if (!w)
        return;
    if (w->fd >= 0)
        close(w->fd);
    for (size_t i = 0; i < w->nmarks; i++)
        free(w->marks[i].path);
    free(w->marks);
    for (size_t i = 0; w->cache && i < CACHE_SLOTS; i++)
        free(w->cache[i].rel);
    free(w->cache);
    free(w->root);
    free(w->root_abs);
    fu_strv_free(&w->exclude);
    fu_pathmap_free(&w->modified);
    free(w);
}

int fu_fanwatch_fd(const struct fu_fanwatch *w)
{
    return w->fd;
}

size_t fu_fanwatch_count(const struct fu_fanwatch *w)
{
    return w->nmarks;
}

size_t fu_fanwatch_failed(const struct fu_fanwatch *w)
{
    return w->failed;
}

/* ------------------------------------------------------------ rows */

static int emit_row(struct fu_fanwatch *w, const struct fu_watch_row *r)
{
    if (w->rc < 0)
        return w->rc;
    int rc = w->emit(w->ctx, r);
    if (rc < 0)
        w->rc = rc;
    else
        w->emitted++;
    return rc;
}

static double ts(struct statx_timestamp t)
{
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

static void forget_modified(struct fu_fanwatch *w, const struct fu_buf *path)
{
    uint32_t i = fu_pathmap_find(&w->modified, path->data, path->len);
    if (i != FU_SET_NONE)
        fu_pathmap_del(&w->modified, i);
}

static int emit_delete(struct fu_fanwatch *w, const struct fu_buf *path, bool is_dir)
{
    forget_modified(w, path);
    struct fu_watch_row r = {
        .op = FU_WATCH_DELETE, .is_dir = is_dir, .path = path->data, .path_len = path->len};
    return emit_row(w, &r);
}

/* An upsert with the attributes in `sx`; nothing for what is neither a file nor a directory
 * (symlinks, fifos, sockets, devices: the scan does not report them either). */
static int emit_upsert(struct fu_fanwatch *w, const struct fu_buf *path, const struct statx *sx,
                       bool atomic)
{
    if (!S_ISREG(sx->stx_mode) && !S_ISDIR(sx->stx_mode))
        return 0;
    struct fu_watch_row r = {
        .op = FU_WATCH_UPSERT,
        .atomic = atomic,
        .is_dir = S_ISDIR(sx->stx_mode),
        .path = path->data,
        .path_len = path->len,
        .size = sx->stx_size,
        .mtime = ts(sx->stx_mtime),
        .ctime = ts(sx->stx_ctime),
    };
    return emit_row(w, &r);
}

/* An entry's attributes, relative to its directory's descriptor, never following a symlink;
 * false when it is gone already (its delete event follows). */
static bool stat_entry(int dirfd, const char *name, struct statx *sx)
{
    unsigned want = STATX_TYPE | STATX_SIZE | STATX_MTIME | STATX_CTIME;
    return name ? statx(dirfd, name, AT_SYMLINK_NOFOLLOW, want, sx) == 0
                : statx(dirfd, "", AT_EMPTY_PATH, want, sx) == 0;
}

static int new_dir_entries(void *ctx, const struct fu_scan_entry *v, size_t n)
{
    struct fu_fanwatch *w = ctx;
    for (size_t i = 0; i < n; i++) {
        struct fu_watch_row r = fu_watch_row_of(&v[i]);
        if (emit_row(w, &r) < 0)
            return w->rc;
    }
    return 0;
}

/* A directory created or moved in: it and what is below it (one worker, since `emit` is not
 * for concurrent calls). Nothing needs watching first: the filesystem mark covers it already,
 * so what is created inside during the walk is reported by its own event too. */
static int new_dir(struct fu_fanwatch *w, const char *path)
{
    struct fu_scan_opts o = {.root = w->root,
                             .subpath = path,
                             .exclude = &w->exclude,
                             .recursive = true,
                             .workers = 1,
                             .cross_filesystems = w->cross};
    int rc = fu_scan(&o, new_dir_entries, w, NULL);
    return rc == -ENOENT || rc == -ENOTDIR ? 0 : rc;
}

/* An entry that is there now, after a create, a move in or a change. */
static int upsert_entry(struct fu_fanwatch *w, const struct fu_buf *path, const struct statx *sx,
                        uint64_t mask, double now)
{
    if (mask & (FAN_CREATE | FAN_MOVED_TO | FAN_RENAME)) {
        if (S_ISDIR(sx->stx_mode))
            return new_dir(w, path->data);
        forget_modified(w, path); /* a new file at this path: a new throttle period */
        if ((mask & FAN_MODIFY) && !(mask & (FAN_CLOSE_WRITE | FAN_ATTRIB))) {
            /* written since, not closed yet: as if that FAN_MODIFY row went out now */
            bool created;
            uint32_t i = fu_pathmap_put(&w->modified, path->data, path->len, &created);
            if (i != FU_SET_NONE)
                w->modified.ents[i].a = now;
        }
        return emit_upsert(w, path, sx, true);
    }
    if (mask & (FAN_CLOSE_WRITE | FAN_ATTRIB)) {
        forget_modified(w, path); /* the next write starts a new throttle period */
        return emit_upsert(w, path, sx, true);
    }
    bool created;
    uint32_t i = fu_pathmap_put(&w->modified, path->data, path->len, &created);
    if (i == FU_SET_NONE || created || now - w->modified.ents[i].a >= w->throttle) {
        if (i != FU_SET_NONE)
            w->modified.ents[i].a = now;
        return emit_upsert(w, path, sx, false);
    }
    return 0;
}

/* ------------------------------------------------------------ events */

/* Appends "/name" to a directory's relative path, and says whether the result is excluded. */
static bool join_name(struct fu_fanwatch *w, struct fu_buf *path, const char *name)
{
    if (path->len > 1)
        fu_buf_putc(path, '/');
    fu_buf_puts(path, name);
    return !path->oom && fu_scan_excluded(&w->exclude, name, path->data);
}

/* An event on an entry of a directory. The kernel merges the events of one process on one
 * entry while they wait in the queue (FAN_CREATE|FAN_MODIFY|FAN_CLOSE_WRITE for one written
 * file), losing their order; so the entry's state now decides: a delete (or move away) in the
 * mask is reported as a delete, and the entry, if it is there now and was also created, moved
 * in or (without a delete) changed, as an upsert. An entry deleted and made again by one
 * process thus comes out as a delete and an upsert, whatever the order was. */
static int on_entry(struct fu_fanwatch *w, uint64_t mask, const struct fid *dir, double now)
{
    bool gone = mask & (FAN_DELETE | FAN_MOVED_FROM);
    bool added = mask & (FAN_CREATE | FAN_MOVED_TO);
    bool changed = mask & (FAN_CLOSE_WRITE | FAN_ATTRIB | FAN_MODIFY);
    if (!gone && !added && !changed)
        return 0;
    struct fu_buf path = FU_BUF_INIT;
    int dirfd = -1;
    int rc = resolve(w, dir, added || changed, &path, &dirfd);
    if (rc <= 0)
        goto out;
    rc = 0;
    if (join_name(w, &path, dir->name) || path.oom) {
        rc = path.oom ? -ENOMEM : 0;
        goto out;
    }
    if (gone)
        rc = emit_delete(w, &path, mask & FAN_ONDIR);
    struct statx sx;
    if (rc >= 0 && (added || (changed && !gone)) && stat_entry(dirfd, dir->name, &sx))
        rc = upsert_entry(w, &path, &sx, mask, now);
out:
    if (dirfd >= 0)
        close(dirfd);
    fu_buf_free(&path);
    return rc;
}

/* FAN_RENAME: the old entry is deleted if it was ours, the new one upserted (a directory with
 * its contents) if it is ours; so a move across the root's edge is a delete or an upsert. */
static int on_rename(struct fu_fanwatch *w, uint64_t mask, const struct fid *old,
                     const struct fid *new, double now)
{
    struct fu_buf path = FU_BUF_INIT;
    int dirfd = -1;
    int rc = resolve(w, old, false, &path, &dirfd);
    if (rc > 0 && !join_name(w, &path, old->name))
        rc = path.oom ? -ENOMEM : emit_delete(w, &path, mask & FAN_ONDIR);
    fu_buf_reset(&path);
    if (rc >= 0)
        rc = resolve(w, new, true, &path, &dirfd);
    if (rc > 0) {
        bool excluded = join_name(w, &path, new->name);
        struct statx sx;
        if (path.oom)
            rc = -ENOMEM;
        else if (!excluded && stat_entry(dirfd, new->name, &sx))
            rc = upsert_entry(w, &path, &sx, FAN_RENAME, now);
    }
    if (dirfd >= 0)
        close(dirfd);
    fu_buf_free(&path);
    return rc < 0 ? rc : 0;
}

/* An event on a directory itself (its name is "."): the root removed or moved away, or a
 * directory's attributes changed. Files report their own attribute changes to their parent. */
static int on_self(struct fu_fanwatch *w, uint64_t mask, const struct fid *d)
{
    if (mask & (FAN_DELETE_SELF | FAN_MOVE_SELF)) {
        unsigned char key[KEY_MAX];
        size_t klen = make_key(key, d->fsid, d->type, d->len, d->bytes);
        if (klen == w->root_key_len && !memcmp(key, w->root_key, klen))
            return -ESTALE;
    }
    if (!(mask & FAN_ATTRIB) || !(mask & FAN_ONDIR))
        return 0;
    struct fu_buf path = FU_BUF_INIT;
    int dirfd = -1;
    int rc = resolve(w, d, true, &path, &dirfd);
    struct statx sx;
    /* The root's own attributes are not reported (the inotify watcher has no parent watch
     * to report them either). */
    if (rc > 0)
        rc = path.len > 1 && stat_entry(dirfd, NULL, &sx) ? emit_upsert(w, &path, &sx, true) : 0;
    if (dirfd >= 0)
        close(dirfd);
    fu_buf_free(&path);
    return rc;
}

/* Reads one info record's file handle (and name). Every length is checked against the
 * record's own length, which the caller checked against the event's. */
static bool parse_fid(const unsigned char *p, size_t len, bool named, struct fid *f)
{
    /* struct fanotify_event_info_fid (header, fsid), then a struct file_handle (handle_bytes,
     * handle_type, f_handle[handle_bytes]), then for the _NAME types the entry's name,
     * NUL-terminated, padded. */
    size_t at = sizeof(struct fanotify_event_info_fid);
    struct file_handle fh;
    if (len < at + sizeof(fh))
        return false;
    memcpy(f->fsid, p + offsetof(struct fanotify_event_info_fid, fsid), 8);
    memcpy(&fh, p + at, sizeof(fh));
    at += sizeof(fh);
    if (!fh.handle_bytes || fh.handle_bytes > MAX_HANDLE_SZ || fh.handle_bytes > len - at)
        return false;
    f->type = fh.handle_type;
    f->len = fh.handle_bytes;
    f->bytes = p + at;
    at += fh.handle_bytes;
    f->name = NULL;
    if (named) {
        if (at >= len || !memchr(p + at, '\0', len - at) || !p[at])
            return false;
        f->name = (const char *)p + at;
    }
    return true;
}

/* One event (its metadata already checked). Returns 0, -ESTALE, -EPROTO (a malformed record:
 * treated as lost events), or a row's error. */
static int on_event(struct fu_fanwatch *w, const struct fanotify_event_metadata *md,
                    const unsigned char *ev, double now)
{
    struct fid dir = {0}, old = {0}, new = {0};
    bool has_dir = false, has_old = false, has_new = false;
    for (size_t at = md->metadata_len; at < md->event_len;) {
        struct fanotify_event_info_header h;
        if (md->event_len - at < sizeof(h))
            return -EPROTO;
        memcpy(&h, ev + at, sizeof(h));
        if (h.len < sizeof(h) || h.len > md->event_len - at)
            return -EPROTO;
        bool ok = true;
        switch (h.info_type) {
        case FAN_EVENT_INFO_TYPE_DFID_NAME:
        case FAN_EVENT_INFO_TYPE_DFID:
            ok = has_dir = parse_fid(ev + at, h.len, h.info_type != FAN_EVENT_INFO_TYPE_DFID, &dir);
            break;
        case FAN_EVENT_INFO_TYPE_OLD_DFID_NAME:
            ok = has_old = parse_fid(ev + at, h.len, true, &old);
            break;
        case FAN_EVENT_INFO_TYPE_NEW_DFID_NAME:
            ok = has_new = parse_fid(ev + at, h.len, true, &new);
            break;
        default: /* FAN_EVENT_INFO_TYPE_FID (not asked for), pidfd, error, newer types */
            break;
        }
        if (!ok)
            return -EPROTO;
        at += h.len;
    }
    uint64_t mask = md->mask;
    bool moves_dir = (mask & FAN_ONDIR) && (mask & (FAN_DELETE | FAN_MOVED_FROM | FAN_MOVED_TO |
                                                    FAN_RENAME | FAN_DELETE_SELF | FAN_MOVE_SELF));
    int rc = 0;
    if ((mask & FAN_RENAME) && has_old && has_new)
        rc = on_rename(w, mask, &old, &new, now);
    else if (has_dir && (!dir.name || !strcmp(dir.name, ".")))
        rc = on_self(w, mask, &dir);
    else if (has_dir)
        rc = on_entry(w, mask, &dir, now);
    if (moves_dir) {
        /* A directory moved or removed: paths cached for it and what is below it are stale,
         * and so are the "outside" answers for what moved in. Rare enough to drop them all. */
        w->gen++;
        w->check_root = true;
    }
    return rc;
}

/* Opens the root for this read (marks[0].fd) and checks it is still the directory the
 * watcher was opened on: removed, moved away or replaced -> -ESTALE. */
static int open_root(struct fu_fanwatch *w)
{
    int fd = open(w->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        if (errno != ENOENT && errno != ENOTDIR && errno != ESTALE)
            log_once(w, "cannot open the root", errno);
        return -ESTALE;
    }
    unsigned char key[KEY_MAX];
    size_t klen;
    char abs[PATH_MAX];
    if (fd_key(fd, key, &klen) < 0 || klen != w->root_key_len || memcmp(key, w->root_key, klen) ||
        fd_path(fd, abs, sizeof(abs)) < 0) {
        close(fd);
        return -ESTALE;
    }
    if (strcmp(abs, w->root_abs)) { /* the same directory elsewhere: the caller's path goes
                                     * through a symlink that was changed */
        char *p = strdup(abs);
        if (!p) {
            close(fd);
            return -ENOMEM;
        }
        free(w->root_abs);
        w->root_abs = p;
        w->root_abs_len = strlen(p);
        w->gen++;
    }
    w->marks[0].fd = fd;
    return 0;
}

static void close_marks(struct fu_fanwatch *w)
{
    for (size_t i = 0; i < w->nmarks; i++) {
        if (w->marks[i].fd >= 0)
            close(w->marks[i].fd);
        w->marks[i].fd = -1;
    }
}

int fu_fanwatch_read(struct fu_fanwatch *w, double now, fu_watch_emit emit, void *ctx)
{
    /* 8-aligned, though every record is copied out before use: records are padded to 4
     * bytes only, so the u64 mask of the next event may sit unaligned. */
    _Alignas(8) unsigned char buf[65536];
    w->emit = emit;
    w->ctx = ctx;
    w->rc = 0;
    w->emitted = 0;
    w->check_root = false;
    int rc = open_root(w);
    if (rc < 0)
        return rc; /* the caller reopens: what is queued does not matter any more */
    bool overflow = false;
    for (int reads = 0; reads < MAX_READS; reads++) {
        ssize_t got = read(w->fd, buf, sizeof(buf));
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break; /* EAGAIN: all read (after MAX_READS, the descriptor stays readable) */
        for (size_t off = 0; off < (size_t)got;) {
            struct fanotify_event_metadata md;
            if ((size_t)got - off < sizeof(md)) {
                overflow = true; /* a truncated event: cannot happen; count it as lost */
                break;
            }
            memcpy(&md, buf + off, sizeof(md));
            if (md.event_len < sizeof(md) || md.event_len > (size_t)got - off ||
                md.metadata_len < sizeof(md) || md.metadata_len > md.event_len ||
                md.vers != FANOTIFY_METADATA_VERSION) {
                overflow = true;
                if (w->logged++ < MAX_LOGGED)
                    fu_warn("fanotify watch %s: a malformed event (version %u, %u bytes)", w->root,
                            md.vers, md.event_len);
                break;
            }
            if (md.fd >= 0)
                close(md.fd); /* FAN_NOFD in this mode; a descriptor would be a leak */
            const unsigned char *ev = buf + off;
            off += md.event_len;
            if (md.mask & FAN_Q_OVERFLOW) {
                overflow = true;
                continue;
            }
            int erc = on_event(w, &md, ev, now);
            if (erc == -EPROTO) {
                overflow = true;
                continue;
            }
            if (erc < 0 && !w->rc)
                w->rc = erc;
            if (w->rc < 0) {
                close_marks(w);
                return w->rc;
            }
        }
    }
    if (w->check_root) { /* a directory moved or went: the root, or a parent of it? */
        close_marks(w);
        rc = open_root(w);
        if (rc < 0)
            return rc;
    }
    close_marks(w);
    if (overflow) {
        w->gen++; /* the lost events may have moved directories */
        fu_warn("fanotify watch %s: the kernel's event queue overflowed (it holds the events "
                "of the whole filesystem; raise fs.fanotify.max_queued_events): events were "
                "lost, a rescan follows",
                w->root);
        return -EOVERFLOW;
    }
    return (int)(w->emitted > INT_MAX ? INT_MAX : w->emitted);
}
