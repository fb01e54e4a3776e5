/* Path normalisation; see paths.h. Unlike os.path.normpath in v1, ".." is refused rather than
 * resolved: a path that climbs is a bug or an attack, never a file an agent saw. */
#include "common/paths.h"

#include <errno.h>
#include <string.h>

int fu_path_normalize(const char *in, size_t len, struct fu_buf *out, const char **why)
{
    fu_buf_reset(out);
    if (memchr(in, '\0', len)) {
        *why = "path contains a NUL byte";
        return -EINVAL;
    }
    size_t i = 0;
    while (i < len) {
        while (i < len && in[i] == '/')
            i++;
        size_t start = i;
        while (i < len && in[i] != '/')
            i++;
        size_t n = i - start;
        if (n == 0 || (n == 1 && in[start] == '.'))
            continue;
        if (n == 2 && in[start] == '.' && in[start + 1] == '.') {
            *why = "path contains a '..' component";
            return -EINVAL;
        }
        if (n > FU_NAME_MAX) {
            *why = "path contains a name longer than 4096 bytes";
            return -EINVAL;
        }
        fu_buf_putc(out, '/');
        fu_buf_append(out, in + start, n);
    }
    if (out->len == 0)
        fu_buf_putc(out, '/');
    if (out->oom) {
        *why = "out of memory";
        return -ENOMEM;
    }
    return 0;
}
