/* The fs source's tree walk, for snapshots, audits and on-demand scans (Fustor v1 §3.11): a
 * pool of workers lists directories with getdents64 and stats entries with statx, never
 * following symlinks, staying on the root's filesystem unless told otherwise, and guarding
 * against (dev, ino) loops (bind mounts). Paths are relative to the root, with a leading `/`;
 * the root itself is `/` (the path normalisation contract, §3.1).
 *
 * Entries go to the caller in chunks, from the worker threads, as they are found; a caller
 * that blocks (a full queue) slows the walk down: that is the backpressure.
 *
 * Per-entry errors (EACCES, an entry gone between listing and stat, ELOOP, names the
 * filesystem refuses) are counted, logged (the first ones of each walk), and skipped. */
#ifndef FU_AGENT_SCAN_H
#define FU_AGENT_SCAN_H

#include "common/strv.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct fu_scan_entry {
    const char *path; /* relative, leading '/', NUL-terminated */
    size_t path_len;
    bool is_dir;
    bool audit_skipped; /* audits: a directory whose mtime matched the cache */
    uint64_t size;
    double mtime, ctime;
    const char *parent_path; /* audits: the directory holding the entry ("" for the root) */
    double parent_mtime;
};

/* An audit's directory-mtime cache ("true silence"): relative directory path -> mtime. A
 * directory whose mtime equals its cached one is reported with audit_skipped and its files
 * are not listed (its subdirectories still are). The walk updates the cache. Thread-safe. */
struct fu_dircache;
struct fu_dircache *fu_dircache_new(void);
void fu_dircache_free(struct fu_dircache *c);
size_t fu_dircache_size(struct fu_dircache *c);
/* Starts a walk's generation: fu_dircache_save keeps only the directories a walk since saw
 * (those it did not see are gone). */
void fu_dircache_begin(struct fu_dircache *c);
/* Writes the directories the last walk saw, with `token` (at most 256 bytes: what the cache
 * is valid against), to `path` (temp file, fsync, rename). Returns 0 or -errno. */
int fu_dircache_save(struct fu_dircache *c, const char *path, const char *token);
/* Reads a saved cache and its token: 0, -ENOENT, -EBADMSG (damaged: CRC, short, duplicate
 * entries), -EPROTO (a newer format) or -ENOMEM. */
int fu_dircache_load(const char *path, struct fu_dircache **out, char **token);

/* Receives `n` entries found by one worker; return < 0 to stop the walk. Called concurrently
 * from several workers. */
typedef int (*fu_scan_emit)(void *ctx, const struct fu_scan_entry *v, size_t n);

struct fu_scan_opts {
    const char *root;              /* absolute path of the source */
    const char *subpath;           /* relative start below the root ("/" or NULL: all) */
    const char *file_pattern;      /* glob on file names; NULL or "*" = every file */
    const struct fu_strv *exclude; /* globs on names and on relative paths */
    int workers;                   /* <= 0: the number of online CPUs */
    bool cross_filesystems;        /* default: stay on the root's filesystem */
    bool recursive;                /* false: the start directory and its entries only */
    struct fu_dircache *cache;     /* audits (and snapshots that fill it); NULL for scans */
    bool cache_fill;               /* record directories' mtimes but list every one */
    bool dirs_only;                /* directories only: files neither stated nor reported;
                                      each directory is emitted before it is listed, and not
                                      listed at all where its link count shows no
                                      subdirectory (ext2/3/4, XFS, tmpfs) */
    size_t chunk;                  /* entries per emit call (default 256) */
    /* Called by a worker before it opens a directory, with its relative path, and may block:
     * a snapshot that starts while the watcher's walk is still under way waits there until
     * the directory is watched. A value < 0 stops the walk with it. NULL: none. */
    int (*before_dir)(void *ctx, const char *path);
    void *before_ctx;
};

struct fu_scan_stats {
    _Atomic uint64_t dirs, files, errors, skipped_dirs;
    _Atomic uint64_t leaves; /* dirs_only: directories not listed (no subdirectory) */
};

/* Walks the tree. Returns 0, -errno when the start cannot be opened, or the first negative
 * value `emit` returned. `stats` (optional) is updated live, for progress reports. */
int fu_scan(const struct fu_scan_opts *o, fu_scan_emit emit, void *ctx,
            struct fu_scan_stats *stats);

/* Whether a name or relative path is excluded (fnmatch, as shell globs; a pattern without a
 * '/' is matched against the name, one with a '/' against the relative path). */
bool fu_scan_excluded(const struct fu_strv *exclude, const char *name, const char *relpath);

#endif
