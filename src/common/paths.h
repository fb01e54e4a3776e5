/* Path rules shared by agents and Fusion (Fustor v1 §3.1): paths are relative to a source
 * root, start with '/', and the root is "/". Names are bytes: anything but '/' and NUL. */
#ifndef FU_PATHS_H
#define FU_PATHS_H

#include "common/buf.h"

#include <stddef.h>

#define FU_NAME_MAX 4096 /* longest single name accepted (Linux allows 255 bytes) */

/* Normalises `in` into `out`: adds the leading '/', folds repeated '/', drops "." components
 * and a trailing '/'. Returns 0, or -EINVAL with *why set when the path holds a NUL, a ".."
 * component, or a name longer than FU_NAME_MAX. */
int fu_path_normalize(const char *in, size_t len, struct fu_buf *out, const char **why);

#endif
