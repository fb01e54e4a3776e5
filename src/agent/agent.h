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
/* Each pipe's role, phase, session, events sent, queue depth, watches against the kernel's
 * limit and last error, as a JSON object (for `status`). Thread-safe. */
void fu_agent_status(struct fu_agent *a, struct fu_jw *w);

#endif
