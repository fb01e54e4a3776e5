/* Small filesystem helpers: whole-file reads, atomic writes, directory creation. */
#ifndef FU_FSUTIL_H
#define FU_FSUTIL_H

#include "common/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Reads the whole regular file into `out`. -EFBIG if larger than `max`, -EISDIR for a
 * directory, -EINVAL for anything else that is not a regular file (FIFOs, devices), other
 * -errno as open/read report them. */
int fu_read_file(const char *path, size_t max, struct fu_buf *out);
/* Writes via a temp file in the same directory, fsync, rename: readers see old or new. */
int fu_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode);
/* Copies the regular file `src` to `dst` as fu_write_file_atomic writes (temp file, fsync,
 * rename), streaming, so `dst` may be on another filesystem and the file larger than memory.
 * *bytes (may be NULL) gets the size copied. The caller fsyncs dst's directory. 0 or -errno;
 * on failure no temp file is left. */
int fu_copy_file_atomic(const char *src, const char *dst, mode_t mode, uint64_t *bytes);
/* 1 when `dir` is a directory holding nothing but "." and "..", 0 when it holds more, or
 * -errno (-ENOTDIR when it is not a directory). */
int fu_dir_is_empty(const char *dir);
/* fsync of a directory: makes the creations, renames and removals in it durable. 0 or -errno. */
int fu_fsync_dir(const char *dir);
/* mkdir -p with `mode` for the directories it creates. */
int fu_mkdirs(const char *path, mode_t mode);
/* Joins a and b with one '/', into a new string (caller frees); NULL on OOM. */
char *fu_path_join(const char *a, const char *b);
/* Whether a config file may be named so by a remote peer (Fusion's update_config and
 * report_config): a plain name (no directory, not hidden) ending in `.yaml` or `.yml`. */
bool fu_config_file_name_ok(const char *name);

#endif
