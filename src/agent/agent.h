/* The agent's runtime: one thread per active pipe (source -> sender), each holding a session
 * with Fusion (v1 §2): open it with task_id `agent_id:pipe_id`, keep it alive from a
 * heartbeat thread that never stops, follow the role Fusion gives (the leader snapshots), and
 * open a new one on 419. Started and stopped by the service loop (common/service.c). */
#ifndef FU_AGENT_AGENT_H
#define FU_AGENT_AGENT_H

#include "common/config.h"
#include "common/json.h"

#include <stddef.h>

struct fu_agent;

int fu_agent_start(struct fu_agent **out, const struct fu_config *cfg, char *err, size_t errlen);
void fu_agent_stop(struct fu_agent *a);
/* Applies a reloaded config (SIGHUP): removed and changed pipes stop, added and changed ones
 * start, pipes a stop_pipe command ended start again; the others run on untouched. A changed
 * source restarts only its own watcher and the pipes that read it. Returns 0, or -errno when
 * some pipe could not start (logged). Called from the service thread only. */
int fu_agent_reload(struct fu_agent *a, const struct fu_config *cfg,
                    const struct fu_config_diff *diff);
/* Each pipe's role, phase (with the progress of a walk), session, events sent, queue depth,
 * source, watches against the kernel's limit and last error, as a JSON object (for
 * `status`). Called by the service thread every 2 s, it also logs a progress line for walks
 * that have run for a while. */
void fu_agent_status(struct fu_agent *a, struct fu_jw *w);

#endif
