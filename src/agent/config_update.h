/* Config files changed from Fusion (v1's report_config and update_config commands, §2.10):
 * read one file of the agent's config dir to report it, or replace one after validating the
 * whole config as it would be with the new text, keeping the old file as `<name>.bak`. */
#ifndef FU_AGENT_CONFIG_UPDATE_H
#define FU_AGENT_CONFIG_UPDATE_H

#include "common/buf.h"
#include "common/diag.h"
#include "common/fsutil.h" /* fu_config_file_name_ok */
#include "common/strv.h"

#include <stdbool.h>
#include <stddef.h>

/* Reads dir/name into out. Returns 0 or -errno. */
int fu_cfgupd_read(const char *dir, const char *name, struct fu_buf *out);
/* Validates the config made of `files` (the loaded files, full paths) with dir/name holding
 * `yaml` instead (or added), `active_file` activating the pipes; on success backs up the
 * current dir/name as dir/name.bak and replaces it atomically (write, fsync, rename).
 * Returns 0; -EINVAL when the new config is invalid (diagnostics in d; nothing written);
 * or -errno when writing failed (the old file is left in place). */
int fu_cfgupd_apply(const char *dir, const struct fu_strv *files, const char *active_file,
                    const char *name, const char *yaml, size_t len, struct fu_diags *d);

#endif
